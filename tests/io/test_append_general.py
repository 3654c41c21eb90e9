"""Appends, ``write_batches`` and ``convert --append`` in cases the other tests do not
make: the store read back equals metatensor's ``join(..., axis="samples",
different_keys="union")`` of the (renumbered) batches, or the call is refused before
anything is written."""

from __future__ import annotations

import metatensor
import numpy as np
import pytest
from ingest_support import store_files
from test_zarr_append import shifted

import metatensor_dask as mtd
from metatensor_dask.execution.cli import main
from metatensor_dask.testing import assert_equal_to_metatensor


def _labels(names: list[str], values) -> metatensor.Labels:
    return metatensor.Labels(names, np.asarray(values, dtype=np.int32).reshape(-1, len(names)))


def _block(seed: int, systems, dtype=np.float64) -> metatensor.TensorBlock:
    """A block of one sample per system of ``systems``, a component, three properties and
    a positions gradient of 0 to 3 rows per sample."""
    rng = np.random.default_rng(seed)
    systems = np.asarray(systems)
    n = len(systems)
    samples = _labels(["system", "atom"], np.stack([systems, np.arange(n) % 2], axis=1))
    components = [_labels(["c"], np.arange(3))]
    properties = _labels(["p"], np.arange(3))
    block = metatensor.TensorBlock(
        rng.normal(size=(n, 3, 3)).astype(dtype), samples, components, properties
    )
    per_sample = rng.integers(0, 4, size=n)
    sample = np.repeat(np.arange(n), per_sample)
    atom = np.concatenate([np.arange(k) for k in per_sample]) if n else sample
    gradient_samples = _labels(
        ["sample", "system", "atom"], np.stack([sample, systems[sample], atom], axis=1)
    )
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.normal(size=(len(sample), 3, 3, 3)).astype(dtype),
            gradient_samples,
            [_labels(["xyz"], np.arange(3)), *components],
            properties,
        ),
    )
    return block


def _tensor(blocks: dict[int, metatensor.TensorBlock]) -> metatensor.TensorMap:
    return metatensor.TensorMap(_labels(["k"], list(blocks)), list(blocks.values()))


def _join(batches: list[metatensor.TensorMap]) -> metatensor.TensorMap:
    return metatensor.join(batches, axis="samples", different_keys="union")


def test_big_endian_batches_append(tmp_path):
    """Values in big-endian byte order are the stored dtype: they are appended (as
    little-endian bytes, as a plain write stores them), to keys stored or new."""
    path = tmp_path / "t.zarr"
    batches = [
        _tensor({0: _block(0, [0, 1])}),
        _tensor({0: _block(1, [2, 3, 4]), 1: _block(2, [2])}),
    ]
    mtd.from_metatensor(batches[0]).to_zarr(path, append_dim="samples")
    swapped = metatensor.TensorMap(
        batches[1].keys,
        [_swapped(block) for block in batches[1].blocks()],
    )
    assert swapped.block(0).values.dtype == np.dtype(">f8")
    mtd.from_metatensor(swapped).to_zarr(path, append_dim="samples")
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), _join(batches))


def _swapped(block: metatensor.TensorBlock) -> metatensor.TensorBlock:
    """``block`` with its values and gradients in big-endian byte order."""
    new = metatensor.TensorBlock(
        block.values.astype(">f8"), block.samples, block.components, block.properties
    )
    for parameter, gradient in block.gradients():
        new.add_gradient(parameter, _swapped(gradient))
    return new


def test_next_after_negative_systems(tmp_path):
    """``"next"`` is one past the largest stored system, also when it is negative."""
    path = tmp_path / "t.zarr"
    first = _tensor({0: _block(0, [-10, -9, -8])})
    second = _tensor({0: _block(1, [-10, -9, -8])})
    for batch in (first, second):
        mtd.from_metatensor(batch).to_zarr(path, append_dim="samples", renumber={"system": "next"})
    expected = _join([first, shifted(second, -7)])
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), expected)


def _files(tmp_path, tensors: list[metatensor.TensorMap]) -> list[str]:
    paths = []
    for i, tensor in enumerate(tensors):
        paths.append(str(tmp_path / f"{i}.mts"))
        metatensor.save(paths[-1], tensor)
    return paths


def test_convert_sources_with_other_keys(tmp_path):
    """Keys only in later files, a block without rows: the files, each numbered past
    the ones before, after the systems stored."""
    stored = _tensor({0: _block(0, [0, 1])})
    files = [
        _tensor({1: _block(1, [0, 1, 2]), 0: _block(2, [])}),
        _tensor({2: _block(3, [0]), 0: _block(4, [0, 1])}),
    ]
    out = tmp_path / "all.zarr"
    mtd.from_metatensor(stored).to_zarr(out)
    common = ["--append", "--renumber", "system", "-q"]
    assert main(["convert", *_files(tmp_path, files), str(out), *common]) == 0
    expected = [stored, shifted(files[0], 2), shifted(files[1], 5)]
    assert_equal_to_metatensor(mtd.open_zarr(out).compute(), _join(expected))


@pytest.mark.parametrize(
    ("last", "renumber", "message"),
    [
        # a dtype the store has not: refused when its turn came, after the others
        (_tensor({0: _block(5, [0], np.float32)}), True, "has the dtype float32"),
        # the same samples as the file before it
        (_tensor({1: _block(1, [0, 1, 2])}), False, "can not be appended together"),
        # other properties than the file before it, for a key the store has not
        (
            _tensor({1: metatensor.slice_block(_block(6, [7]), "properties", _labels(["p"], [1]))}),
            True,
            "can not be appended together",
        ),
    ],
)
def test_convert_refuses_all_sources_before_writing(tmp_path, capsys, last, renumber, message):
    """One source that can not be appended: the call fails before anything is written,
    the sources before it too."""
    out = tmp_path / "all.zarr"
    mtd.from_metatensor(_tensor({0: _block(0, [0, 1])})).to_zarr(out)
    before = store_files(out)
    first = _tensor({1: _block(1, [0, 1, 2]), 0: _block(2, [10])})
    common = ["--append", "-q", *(["--renumber", "system"] if renumber else [])]
    assert main(["convert", *_files(tmp_path, [first, last]), str(out), *common]) == 1
    assert message in capsys.readouterr().err
    assert store_files(out) == before


def _damaged_copy(tmp_path, tensor: metatensor.TensorMap, name: str) -> str:
    """``tensor`` saved by metatensor, one byte of its last block's values flipped: the
    file opens (its labels are intact), its CRC-32 fails when the values are read."""
    path = tmp_path / name
    metatensor.save(str(path), tensor)
    raw = bytearray(path.read_bytes())
    start = raw.find(tensor.block(len(tensor) - 1).values.tobytes())
    assert start > 0
    raw[start + 3] ^= 0x10
    path.write_bytes(bytes(raw))
    return str(path)


@pytest.mark.parametrize("exists", [True, False])
def test_convert_with_a_damaged_source_writes_nothing(tmp_path, capsys, exists):
    """One file among many with damaged values: the command fails naming it, before
    anything is written (the store is not left locked with an append to finish that
    only the damaged file could finish), and the good files append afterwards."""
    out = tmp_path / "all.zarr"
    stored = _tensor({0: _block(0, [0, 1])})
    if exists:
        mtd.from_metatensor(stored).to_zarr(out)
    before = store_files(out) if exists else None
    good = _files(tmp_path, [_tensor({0: _block(1, [0, 1, 2])}), _tensor({1: _block(2, [0])})])
    damaged = _damaged_copy(tmp_path, _tensor({0: _block(3, [0]), 2: _block(4, [0, 1])}), "d.mts")
    common = ["--append", "--renumber", "system", "-q"]
    assert main(["convert", good[0], damaged, good[1], str(out), *common]) == 1
    assert f"'{damaged}' is damaged" in capsys.readouterr().err
    assert (store_files(out) if out.exists() else None) == before
    assert main(["convert", *good, str(out), *common]) == 0
    offset = 2 if exists else 0
    expected = [stored] if exists else []
    expected += [
        shifted(metatensor.load(good[0]), offset),
        shifted(metatensor.load(good[1]), offset + 3),
    ]
    assert_equal_to_metatensor(mtd.open_zarr(out).compute(), _join(expected))
