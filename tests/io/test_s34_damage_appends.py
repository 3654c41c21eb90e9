"""Appends onto damaged partial chunks, and the compressed partial chunk an interrupted
append rewrote.

An append rewrites the partial last chunk of each array it extends, with its stored
rows: one missing or damaged is refused before the append writes anything (its record
included), by ``to_zarr(append_dim=...)`` and by a batch of ``write_batches``. While an
append is interrupted, a compressed partial chunk is accepted when it is the one listed
or the one the append wrote (whose crc32c it noted first), never an older copy."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd

ROWS = 70
VALUES = "blocks/0/values"
GRADIENT = "blocks/0/gradients/positions/values"
POINTER = "blocks/0/gradients/positions/row_pointer"
ZSTD = {"metatensor_dask.compressor": "zstd"}


def _labels(names: list[str], values: np.ndarray) -> metatensor.Labels:
    return metatensor.Labels(names, np.asarray(values, dtype=np.int32).reshape(-1, len(names)))


def _tensor(seed: int, n: int, first: int = 0) -> metatensor.TensorMap:
    """A block of ``n`` samples (systems from ``first``) with a positions gradient of
    one or two rows per sample."""
    rng = np.random.default_rng(seed)
    systems = first + np.arange(n)
    block = metatensor.TensorBlock(
        rng.normal(size=(n, 8)),
        _labels(["system"], systems),
        [],
        _labels(["n"], np.arange(8)),
    )
    sample = np.repeat(np.arange(n), 1 + np.arange(n) % 2)
    gradient = metatensor.TensorBlock(
        rng.normal(size=(len(sample), 3, 8)),
        _labels(["sample", "atom"], np.stack([sample, np.arange(len(sample))], 1)),
        [_labels(["xyz"], np.arange(3))],
        block.properties,
    )
    block.add_gradient("positions", gradient)
    return metatensor.TensorMap(_labels(["k"], [0]), [block])


def _files(path: Path) -> dict[str, str]:
    """The hash of every file under ``path`` (but the lock's), by its relative name."""
    return {
        str(p.relative_to(path)): hashlib.blake2b(p.read_bytes()).hexdigest()
        for p in path.rglob("*")
        if p.is_file() and not p.name.startswith(".lock")
    }


def _cut(chunk: Path) -> None:
    os.truncate(chunk, chunk.stat().st_size // 2)


def _poke(chunk: Path) -> None:
    with open(chunk, "r+b") as file:
        file.seek(8)
        file.write(b"\x7f")


DAMAGES = {"cut": _cut, "missing": Path.unlink, "poked": _poke}


@pytest.mark.parametrize(
    ("array", "damage"),
    [(VALUES, "cut"), (VALUES, "missing"), (GRADIENT, "cut"), (POINTER, "poked")],
)
def test_an_append_onto_a_damaged_partial_chunk_writes_nothing(tmp_path, array, damage):
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(_tensor(1, 100)).to_zarr(path, chunks=ROWS)
    chunk = (
        path / array / ("c.1" if array == POINTER else "c.1.0.0" if array == GRADIENT else "c.1.0")
    )
    DAMAGES[damage](chunk)
    before = _files(path)
    appended = mtd.from_metatensor(_tensor(2, 90, first=100))
    with pytest.raises(mtd.DamagedStoreError, match=rf"'c\.1[.0]*' of the array '{array}'"):
        appended.to_zarr(path, append_dim="samples")
    assert _files(path) == before


def _batch(items: list[int]) -> metatensor.TensorMap:
    if items[0] >= 8:
        raise RuntimeError("the batch failed")
    return _tensor(items[0], 10 * len(items), first=10 * items[0])


def test_a_batch_onto_a_damaged_compressed_partial_chunk_writes_nothing(tmp_path):
    """The partial chunks of every array a batch extends are read before any is
    written (a compressed one is rewritten through zarr)."""
    path = tmp_path / "t.zarr"
    items = list(range(12))
    with dask.config.set(ZSTD), pytest.raises(mtd.MetatensorDaskError, match="the batch failed"):
        mtd.write_batches(_batch, items, path, batch_size=4, chunks=ROWS, quiet=True)
    _cut(path / GRADIENT / "c.1.0.0")
    before = _files(path)

    def resumed(batch: list[int]) -> metatensor.TensorMap:
        return _tensor(batch[0], 10 * len(batch), first=10 * batch[0])

    with pytest.raises(mtd.MetatensorDaskError, match=rf"damaged: .* the array '{GRADIENT}'"):
        mtd.write_batches(resumed, items, path, batch_size=4, resume=True, quiet=True)
    assert _files(path) == before


def test_a_compressed_run_leaves_no_notes(tmp_path):
    """The crc32c its batches noted before rewriting compressed partial chunks are
    deleted once the run is complete."""
    path = tmp_path / "t.zarr"
    with dask.config.set(ZSTD):
        mtd.write_batches(_batch, list(range(8)), path, batch_size=3, chunks=ROWS, quiet=True)
    assert not (path / ".progress").exists()
    joined = metatensor.join([_batch([0, 1, 2]), _batch([3, 4, 5]), _batch([6, 7])], "samples")
    read = mtd.to_metatensor(mtd.open_zarr(path)).block(0)
    np.testing.assert_array_equal(read.values, joined.block(0).values)
    gradient = read.gradient("positions").values
    np.testing.assert_array_equal(gradient, joined.block(0).gradient("positions").values)


def _failing_once_stored(tensor: metatensor.TensorMap, marker: Path) -> mtd.TensorMap:
    """``tensor``'s values in chunks of 30 rows (those that fill the partial chunk of
    the store it is appended to), all but the first failing to compute once the first
    is stored (its ``marker`` written, or after 20 s)."""

    def fail(chunk: np.ndarray, block_info=None) -> np.ndarray:
        if block_info[0]["chunk-location"][0] > 0:
            for _ in range(2_000):
                if marker.exists():
                    break
                time.sleep(0.01)
            raise RuntimeError("the source failed")
        return chunk

    theirs = mtd.from_metatensor(tensor)
    block = theirs.block(0)
    values = block.values.rechunk((30, 8)).map_blocks(fail, dtype=block.values.dtype)
    failed = mtd.TensorBlock(values, block.samples, block.components, block.properties)
    failed.add_gradient("positions", block.gradient("positions"))
    return mtd.TensorMap(theirs.keys, [failed])


#: Compressed chunks, alone or in shards of 2.
COMPRESSED = {"zstd": ZSTD, "sharded-zstd": {**ZSTD, "metatensor_dask.shard-chunks": 2}}


@pytest.fixture(params=list(COMPRESSED))
def interrupted(request, tmp_path) -> tuple[Path, metatensor.TensorMap, Path, bytes]:
    """A compressed store appended to once, then by an append interrupted once it
    rewrote the partial last values chunk (shard); what the store reads, that chunk's
    file and an older copy of it (from before the first append)."""
    path = tmp_path / "t.zarr"
    shards = request.param.startswith("sharded")
    chunk = path / VALUES / ("c.0.0" if shards else "c.1.0")
    with dask.config.set(COMPRESSED[request.param]):
        mtd.from_metatensor(_tensor(1, 100)).to_zarr(path, chunks=ROWS)
        older = chunk.read_bytes()
        mtd.from_metatensor(_tensor(2, 10, first=100)).to_zarr(path, append_dim="samples")
        listed = chunk.read_bytes()
        expected = mtd.to_metatensor(mtd.open_zarr(path))
        marker = path / ".progress" / f"blocks%2F0%2Fvalues%2F{0 if shards else 1}"
        appended = _failing_once_stored(_tensor(3, 50, first=200), marker)
        # a task per chunk (not one for the small chunks together), two at once
        one_each = {"metatensor_dask.chunk-size": "1KiB", "num_workers": 2}
        with dask.config.set(one_each, scheduler="threads"), pytest.raises(RuntimeError):
            appended.to_zarr(path, append_dim="samples")
    assert (path / ".progress/append.json").exists()
    assert chunk.read_bytes() != listed  # rewritten by the interrupted append
    return path, expected, chunk, older


def test_a_compressed_partial_chunk_an_interrupted_append_rewrote_is_read_and_discarded(
    interrupted,
):
    path, expected, _, _ = interrupted
    assert metatensor.equal(mtd.to_metatensor(mtd.open_zarr(path)), expected)
    (problem,) = mtd.verify(path).problems
    assert "an append to" in problem and "was interrupted" in problem
    assert mtd.discard_append(path)
    assert metatensor.equal(mtd.to_metatensor(mtd.open_zarr(path)), expected)


def test_an_older_compressed_partial_chunk_put_back_is_not_discarded(interrupted):
    """Listed by the discard, its zeros would read as the rows the first append stored."""
    path, _, chunk, older = interrupted
    chunk.write_bytes(older)
    with pytest.raises(mtd.DamagedStoreError, match="is not the chunk the store lists"):
        mtd.discard_append(path)
    with pytest.raises(mtd.DamagedStoreError, match="is not the chunk the store lists"):
        mtd.to_metatensor(mtd.open_zarr(path))
