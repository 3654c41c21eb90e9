"""``.mts`` files and Zarr stores keep the exact bits of special floating-point values:
NaN payloads (quiet and signalling, either sign), -0.0, subnormals, infinities and the
largest finite numbers, in values and gradients, with every compressor and with
sharding; ``verify`` accepts the stores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd

# bit patterns, by item size: NaN payloads, negative NaNs, -0.0, subnormals, ±inf, max
PATTERNS = {
    8: (
        np.uint64,
        [
            0x7FF8000000000123,
            0x7FF0000000000001,
            0xFFF8000000000000,
            0xFFFFFFFFFFFFFFFF,
            0x8000000000000000,
            0x0000000000000001,
            0x800FFFFFFFFFFFFF,
            0x7FF0000000000000,
            0xFFF0000000000000,
            0x7FEFFFFFFFFFFFFF,
        ],
    ),
    4: (
        np.uint32,
        [
            0x7FC00123,
            0x7F800001,
            0xFFC00000,
            0xFFFFFFFF,
            0x80000000,
            0x00000001,
            0x807FFFFF,
            0x7F800000,
            0xFF800000,
            0x7F7FFFFF,
        ],
    ),
    2: (np.uint16, [0x7E01, 0x7C01, 0xFE00, 0x8000, 0x0001, 0x7C00, 0xFC00, 0x7BFF]),
}


def _patterned(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An array of ``dtype`` whose bits are drawn from :data:`PATTERNS` (ordinary
    numbers in about a third of the places); complex parts are drawn apart."""
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        parts = _patterned(rng, (*shape, 2), np.dtype(f"f{dtype.itemsize // 2}"))
        return parts.view(dtype).reshape(shape)
    unsigned, patterns = PATTERNS[dtype.itemsize]
    raw = rng.choice(np.array(patterns, dtype=unsigned), size=shape)
    ordinary = rng.random(shape) < 0.3
    raw[ordinary] = rng.uniform(-1, 1, int(ordinary.sum())).astype(dtype).view(unsigned)
    return raw.view(dtype)


def _labels(names: list[str], rows: Any) -> metatensor.Labels:
    return metatensor.Labels(names, np.asarray(rows, dtype=np.int32).reshape(-1, len(names)))


def _reference(dtype: Any) -> metatensor.TensorMap:
    """Blocks of 7, 0 and 5 samples with a ``positions`` gradient of two rows per
    sample, every array of special bit patterns."""
    rng = np.random.default_rng(11)
    components = [metatensor.Labels.range("o3_mu", 3)]
    blocks = []
    for n in (7, 0, 5):
        block = metatensor.TensorBlock(
            _patterned(rng, (n, 3, 4), dtype),
            _labels(["system", "atom"], [[i // 2, i % 2] for i in range(n)]),
            components,
            metatensor.Labels.range("n", 4),
        )
        rows = [[s, s // 2, a] for s in range(n) for a in range(2)]
        block.add_gradient(
            "positions",
            metatensor.TensorBlock(
                _patterned(rng, (len(rows), 3, 3, 4), dtype),
                _labels(["sample", "system", "atom"], rows),
                [metatensor.Labels.range("xyz", 3), *components],
                block.properties,
            ),
        )
        blocks.append(block)
    return metatensor.TensorMap(_labels(["k"], [[0], [1], [2]]), blocks)


def _bytes(array: Any) -> bytes:
    return np.ascontiguousarray(np.asarray(array)).tobytes()


def _assert_same_bits(tensor: Any, reference: metatensor.TensorMap) -> None:
    """Every values and gradient array of ``tensor`` (either library) holds the bytes
    of ``reference``'s, in its dtype."""
    for key, expected in reference.items():
        block = tensor.block(key)
        assert np.asarray(block.values).dtype == expected.values.dtype
        assert _bytes(block.values) == _bytes(expected.values), key.print()
        for parameter, gradient in expected.gradients():
            assert _bytes(block.gradient(parameter).values) == _bytes(gradient.values)


DTYPES = [np.float64, np.float32, np.float16, np.complex128, np.complex64]


@pytest.mark.parametrize("dtype", DTYPES)
def test_mts_files_keep_the_bits(tmp_path: Path, dtype: Any) -> None:
    reference = _reference(dtype)
    ours = tmp_path / "ours.mts"
    theirs = tmp_path / "theirs.mts"
    mtd.save(ours, mtd.from_metatensor(reference))
    metatensor.save(theirs, reference)
    assert ours.read_bytes() == theirs.read_bytes()
    _assert_same_bits(metatensor.load(ours), reference)
    _assert_same_bits(mtd.to_metatensor(mtd.load(theirs)), reference)


COMPRESSORS = [
    None,
    "zstd",
    "gzip",
    "blosc",
    "numcodecs.lz4",
    {"name": "blosc", "configuration": {"cname": "lz4", "shuffle": "bitshuffle", "typesize": 8}},
]


# zarr warns that numcodecs' codecs are not in the Zarr 3 specification
@pytest.mark.filterwarnings("ignore:Numcodecs codecs are not in the Zarr version 3")
@pytest.mark.parametrize("shards", [None, 2])
@pytest.mark.parametrize("compressor", COMPRESSORS, ids=str)
def test_zarr_stores_keep_the_bits(tmp_path: Path, compressor: Any, shards: int | None) -> None:
    reference = _reference(np.float64)
    # read back from the .mts file: the store is written from arrays of several chunks
    path = tmp_path / "tensor.mts"
    metatensor.save(path, reference)
    settings = {
        "metatensor_dask.compressor": compressor,
        "metatensor_dask.shard-chunks": shards,
        "metatensor_dask.checksum": shards is None,
        "metatensor_dask.chunk-size": "256B",
    }
    with dask.config.set(settings):
        mtd.to_zarr(mtd.load(path), tmp_path / "store.zarr")
    verification = mtd.verify(tmp_path / "store.zarr")
    assert verification.ok, verification.problems
    assert verification.regions > 6
    stored = mtd.open_zarr(tmp_path / "store.zarr")
    _assert_same_bits(mtd.to_metatensor(stored), reference)
    mtd.save(tmp_path / "again.mts", stored)
    assert (tmp_path / "again.mts").read_bytes() == path.read_bytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.complex128, np.complex64])
def test_zarr_stores_of_other_dtypes_keep_the_bits(tmp_path: Path, dtype: Any) -> None:
    reference = _reference(dtype)
    with dask.config.set({"metatensor_dask.compressor": "zstd"}):
        mtd.to_zarr(mtd.from_metatensor(reference), tmp_path / "store.zarr")
    assert mtd.verify(tmp_path / "store.zarr").ok
    _assert_same_bits(mtd.to_metatensor(mtd.open_zarr(tmp_path / "store.zarr")), reference)
