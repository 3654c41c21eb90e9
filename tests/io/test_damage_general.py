"""Damaged stores met by the paths other suites do not take. Each case is refused,
naming the store, the array and the remedy, and ``verify`` reports it; an append onto a
damaged store leaves the damage as it was: nothing lost or damaged is stored again as
valid data."""

from __future__ import annotations

import json
from pathlib import Path

import dask
import metatensor
import numpy as np
import pytest
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd

CODECS = {
    "default": {},
    "zstd": {"metatensor_dask.compressor": "zstd"},
    "gzip-no-checksum": {"metatensor_dask.compressor": "gzip", "metatensor_dask.checksum": False},
    "sharded": {"metatensor_dask.shard-chunks": 2},
    "sharded-zstd": {"metatensor_dask.shard-chunks": 2, "metatensor_dask.compressor": "zstd"},
}


def _tensor(seed: int, n_samples: int, dtype) -> metatensor.TensorMap:
    return make_metatensor(
        seed=seed, dtype=dtype, n_samples=(n_samples, 4), n_properties=(2, 3), nested=False
    )


def _append(tensor: metatensor.TensorMap, path: Path) -> None:
    mtd.from_metatensor(tensor).to_zarr(
        path, append_dim="samples", renumber={"system": "next"}, chunks=3
    )


def _last_chunk(path: Path, array: str) -> Path:
    """The file holding the last stored rows of ``array`` (a chunk or a shard)."""
    files = sorted((path / array).glob("c.*"), key=lambda p: int(p.name.split(".")[1]))
    return files[-1]


def _lose(chunk: Path) -> None:
    chunk.unlink()


def _zero(chunk: Path) -> None:
    chunk.write_bytes(bytes(chunk.stat().st_size))


def _cut(chunk: Path) -> None:
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])


DAMAGES = {"lost": _lose, "zeroed": _zero, "cut": _cut}
ARRAYS = ["blocks/0/values", "blocks/0/gradients/positions/values"]
DTYPES = [np.float64, np.float32, np.int32]


def _dtypes(c: int, a: int, d: int) -> list:
    """The dtypes of the case of codecs ``c``, array ``a`` and damage ``d``. float64 and
    float32 maps have the same rows (only the bytes damaged differ) and turn with the
    codecs and damages; int32 maps have one gradient row less, whose last chunk is then
    full but for shards (the append starts a new chunk): int32 for every gradient case,
    beside a float, and in turn for the values."""
    if ARRAYS[a].startswith("blocks/0/gradients"):
        return [DTYPES[(c + d) % 2], np.int32]
    return [DTYPES[(c + d) % len(DTYPES)]]


def _damaged_appends() -> list:
    """Every damage of every array with every codec, each dtype meeting each codec,
    array and damage (half the full product, see :func:`_dtypes`)."""
    cases = []
    for c, codecs in enumerate(sorted(CODECS)):
        for a, array in enumerate(ARRAYS):
            for d, (name, damage) in enumerate(DAMAGES.items()):
                for dtype in _dtypes(c, a, d):
                    case_id = f"{codecs}-{dtype.__name__}-{array}-{name}"
                    cases.append(pytest.param(codecs, dtype, array, damage, id=case_id))
    return cases


@pytest.mark.parametrize(("codecs", "dtype", "array", "damage"), _damaged_appends())
def test_an_append_onto_a_damaged_partial_chunk_is_refused(tmp_path, codecs, dtype, array, damage):
    path = tmp_path / "t.zarr"
    with dask.config.set(CODECS[codecs]):
        # 8 samples in chunks of 3: the last values chunk (and shard) is partial
        mtd.from_metatensor(_tensor(1, 8, dtype)).to_zarr(path, chunks=3)
    chunk = _last_chunk(path, array)
    damage(chunk)
    left = chunk.read_bytes() if chunk.exists() else None
    root = (path / "zarr.json").read_bytes()
    partial = _rows(path, array) % _chunk_rows(path, array) != 0
    with dask.config.set(CODECS[codecs]):
        if partial:  # the append reads the stored rows of the chunk it starts in
            with pytest.raises(mtd.DamagedStoreError, match=f"the array '{array}'.*convert"):
                _append(_tensor(2, 5, dtype), path)
        else:  # the append starts a new chunk, and leaves the damaged one as it is
            _append(_tensor(2, 5, dtype), path)
    # the lost or damaged rows were not stored again (as zeros, or merged with the new
    # ones): the chunk is as it was, and reading and verify refuse it
    assert (chunk.read_bytes() if chunk.exists() else None) == left
    if partial:
        assert (path / "zarr.json").read_bytes() == root
    with pytest.raises(mtd.DamagedStoreError, match=f"'{array}'"):
        mtd.to_metatensor(mtd.open_zarr(path))
    assert not mtd.verify(path).ok


def _document(path: Path, array: str) -> dict:
    return json.loads((path / array / "zarr.json").read_text())


def _rows(path: Path, array: str) -> int:
    return _document(path, array)["shape"][0]


def _chunk_rows(path: Path, array: str) -> int:
    """Rows per stored file: per shard when sharded, else per chunk."""
    return _document(path, array)["chunk_grid"]["configuration"]["chunk_shape"][0]


@pytest.mark.parametrize("cut", [3, "half"])
def test_a_gzip_chunk_cut_short_without_checksum_is_damage(tmp_path, cut):
    path = tmp_path / "t.zarr"
    settings = {"metatensor_dask.compressor": "gzip", "metatensor_dask.checksum": False}
    with dask.config.set(settings):
        mtd.from_metatensor(_tensor(1, 8, np.float64)).to_zarr(path, chunks=3)
    chunk = path / "blocks/0/values/c.1.0.0"
    data = chunk.read_bytes()
    chunk.write_bytes(data[: len(data) // 2 if cut == "half" else -cut])
    match = r"rows 3:6 of the array 'blocks/0/values' can not be decoded \(EOFError"
    with pytest.raises(mtd.DamagedStoreError, match=match):
        mtd.to_metatensor(mtd.open_zarr(path))
    with pytest.raises(mtd.DamagedStoreError, match=match):
        mtd.sum_over_samples(mtd.open_zarr(path), "atom").compute()
    report = mtd.verify(path)  # a report, never an exception
    assert any("'blocks/0/values' can not be decoded (EOFError" in p for p in report.problems)
