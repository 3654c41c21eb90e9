"""Damage built from outside, read the ways a user reads: never other numbers without
an error."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd


def _labels(names: list[str], values: np.ndarray) -> metatensor.Labels:
    return metatensor.Labels(
        names, np.asarray(values, dtype=np.int32).reshape(len(values), len(names))
    )


def _tensor(n_samples: int = 12) -> metatensor.TensorMap:
    """One block of ``n_samples`` rows with a positions gradient of two rows a sample."""
    rng = np.random.default_rng(0)
    samples = _labels(["system"], np.arange(n_samples))
    properties = _labels(["n"], np.arange(3))
    block = metatensor.TensorBlock(rng.random((n_samples, 3)), samples, [], properties)
    rows = np.stack([np.repeat(np.arange(n_samples), 2), np.tile([0, 1], n_samples)], axis=1)
    gradient = metatensor.TensorBlock(
        rng.random((2 * n_samples, 3, 3)),
        _labels(["sample", "atom"], rows),
        [_labels(["xyz"], np.arange(3))],
        properties,
    )
    block.add_gradient("positions", gradient)
    return metatensor.TensorMap(_labels(["key"], np.arange(1)), [block])


def _no_properties(block: metatensor.TensorBlock) -> metatensor.TensorBlock:
    """``block`` without its properties (its values and gradients have no entries)."""
    properties = _labels(["n"], np.arange(0))
    empty = metatensor.TensorBlock(block.values[:, :0], block.samples, [], properties)
    for parameter, gradient in block.gradients():
        empty.add_gradient(
            parameter,
            metatensor.TensorBlock(
                gradient.values[..., :0], gradient.samples, gradient.components, properties
            ),
        )
    return empty


def _flip_last_byte(path: Path, member: str) -> None:
    """Flips a bit of the last data byte of ``member`` of the ZIP archive ``path``."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    data = bytearray(path.read_bytes())
    offset = info.header_offset
    name_length, extra_length = np.frombuffer(data[offset + 26 : offset + 30], "<u2")
    data[offset + 30 + int(name_length) + int(extra_length) + info.file_size - 1] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def damaged_mts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mts") / "damaged.mts"
    metatensor.save(str(path), _tensor())
    _flip_last_byte(path, "blocks/0/values.npy")
    _flip_last_byte(path, "blocks/0/gradients/positions/values.npy")
    return path


BARE = {
    "compute": lambda array: array.compute(),
    "asarray": np.asarray,
    "dask.compute": lambda array: dask.compute(array)[0],
    "persist": lambda array: array.persist().compute(),
}


@pytest.mark.parametrize("read", BARE.values(), ids=BARE.keys())
@pytest.mark.parametrize("array", ["values", "gradient"])
def test_an_array_of_a_damaged_member_computed_alone_is_refused(damaged_mts, array, read):
    block = mtd.load(damaged_mts, chunks=4).block(0)
    values = block.values if array == "values" else block.gradient("positions").values
    assert values.npartitions > 1
    with pytest.raises(mtd.DamagedFileError, match="Invalid checksum"):
        read(values)


def test_an_array_derived_by_an_operation_and_computed_alone_is_refused(damaged_mts):
    tensor = mtd.multiply(mtd.load(damaged_mts, chunks=4), 2.0)
    with pytest.raises(mtd.DamagedFileError, match=r"blocks/0/values\.npy"):
        tensor.block(0).values.compute()


def test_arrays_of_a_sound_file_computed_alone_are_its_values(tmp_path):
    expected = _tensor()
    path = tmp_path / "sound.mts"
    metatensor.save(str(path), expected)
    block = mtd.load(path, chunks=5).block(0)
    np.testing.assert_array_equal(block.values.compute(), expected.block(0).values)
    gradient = block.gradient("positions").values
    np.testing.assert_array_equal(
        np.asarray(gradient), expected.block(0).gradient("positions").values
    )
    # a part of a member is read without its check (which would read the rest)
    np.testing.assert_array_equal(
        gradient[:2].compute(), expected.block(0).gradient("positions").values[:2]
    )


def _member_data(path: Path, member: str) -> slice:
    """Where the bytes of ``member`` of the ZIP archive ``path`` are."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    data = path.read_bytes()
    offset = info.header_offset
    name_length, extra_length = np.frombuffer(data[offset + 26 : offset + 30], "<u2")
    start = offset + 30 + int(name_length) + int(extra_length)
    return slice(start, start + info.file_size)


def test_swapped_members_of_no_entries_are_damage(tmp_path):
    # two gradients of no properties: their members are their `.npy` headers alone, of
    # one size, whose shapes name other components
    tensor = _tensor()
    empty = _no_properties(tensor.block(0))
    strain = [_labels(["a"], np.arange(3)), _labels(["b"], np.arange(3))]
    empty.add_gradient(
        "strain",
        metatensor.TensorBlock(
            np.zeros((2, 3, 3, 0)), _labels(["sample"], np.arange(2)), strain, empty.properties
        ),
    )
    path = tmp_path / "swapped.mts"
    metatensor.save(str(path), metatensor.TensorMap(tensor.keys, [empty]))
    first = _member_data(path, "blocks/0/gradients/positions/values.npy")
    second = _member_data(path, "blocks/0/gradients/strain/values.npy")
    data = bytearray(path.read_bytes())
    assert first.stop - first.start == second.stop - second.start
    data[first], data[second] = data[second], data[first]
    path.write_bytes(bytes(data))
    with pytest.raises(mtd.DamagedFileError, match="Invalid checksum"):
        mtd.load(path)


def _with_empty_block() -> metatensor.TensorMap:
    """Two blocks, the second of no properties (its arrays have no entries)."""
    block = _tensor().block(0)
    keys = _labels(["key"], np.arange(2))
    return metatensor.TensorMap(keys, [block.copy(), _no_properties(block)])


@pytest.mark.parametrize("array", ["blocks/1/values", "blocks/0/samples"])
def test_an_array_document_without_data_type_is_damage(tmp_path, array):
    path = tmp_path / "store"
    mtd.from_metatensor(_with_empty_block()).to_zarr(path, chunks=4)
    root = json.loads((path / "zarr.json").read_text())
    del root["consolidated_metadata"]["metadata"][array]["data_type"]
    (path / "zarr.json").write_text(json.dumps(root))
    with pytest.raises(mtd.DamagedStoreError, match=f"'{array}' names no data type"):
        mtd.to_metatensor(mtd.open_zarr(path))
    assert any("names no data type" in problem for problem in mtd.verify(path).problems)
