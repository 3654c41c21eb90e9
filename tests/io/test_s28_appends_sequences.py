"""Sequences of appends of maps of many tiny blocks, read by groups: each append mixes
stored and new keys in any order (some stored keys absent), with blocks and gradients
of no row, from an opened store, a loaded ``.mts`` file computed on, and the store
itself; the store reads as metatensor's join of the renumbered batches (values,
gradients and key order) after each, and as a whole write of the same data."""

from __future__ import annotations

import dask
import metatensor
import numpy as np
from ingest_support import renumbered
from zarr.storage import MemoryStore

import metatensor_dask as mtd
from metatensor_dask import _graph
from metatensor_dask.testing import assert_equal_to_metatensor

XYZ = metatensor.Labels(["xyz"], np.arange(3, dtype=np.int32).reshape(-1, 1))
SETTINGS = {"metatensor_dask.shard-chunks": 2, "metatensor_dask.compressor": "zstd"}


def _block(rng: np.random.Generator, properties: int, first: int) -> metatensor.TensorBlock:
    """0 to 4 samples from ``first`` (float32), and position gradients of 0 to 2 rows
    per sample (none at all for some blocks)."""
    n = int(rng.integers(0, 5))
    samples = metatensor.Labels(["system"], np.arange(first, first + n, dtype=np.int32)[:, None])
    labels = metatensor.Labels(["p"], np.arange(properties, dtype=np.int32)[:, None])
    block = metatensor.TensorBlock(
        rng.standard_normal((n, properties)).astype(np.float32), samples, [], labels
    )
    counts = rng.integers(0, 3, n) if rng.random() < 0.7 else np.zeros(n, int)
    rows = [(i, j) for i in range(n) for j in range(int(counts[i]))]
    gradient_samples = metatensor.Labels(
        ["sample", "atom"], np.array(rows, np.int32).reshape(-1, 2)
    )
    values = rng.standard_normal((len(rows), 3, properties)).astype(np.float32)
    block.add_gradient("positions", metatensor.TensorBlock(values, gradient_samples, [XYZ], labels))
    return block


def _batch(rng: np.random.Generator, keys: list[int]) -> metatensor.TensorMap:
    blocks = [_block(rng, 1 + key % 3, 0) for key in keys]
    labels = metatensor.Labels(["k"], np.array(keys, np.int32).reshape(-1, 1))
    return metatensor.TensorMap(labels, blocks)


def _keys(rng: np.random.Generator, stored: list[int], new: int) -> list[int]:
    """Most of the ``stored`` keys and ``new`` others, in a random order."""
    kept = [key for key in stored if rng.random() < 0.8]
    fresh = [max(stored, default=-1) + 1 + i for i in range(new)]
    return [int(key) for key in rng.permutation(kept + fresh)]


def _next(batches: list[metatensor.TensorMap]) -> int:
    found = [int(s) for b in batches for block in b for s in block.samples.column("system")]
    return max(found, default=-1) + 1


def _check(path, batches: list[metatensor.TensorMap]) -> metatensor.TensorMap:
    joined = metatensor.join(batches, axis="samples", different_keys="union")
    stored = mtd.open_zarr(path)
    assert_equal_to_metatensor(stored, joined)
    order = list(dict.fromkeys(int(e[0]) for b in batches for e in b.keys))
    assert [int(e[0]) for e in stored.keys] == order
    return joined


def test_appends_of_tiny_blocks_read_as_the_join_of_their_batches(tmp_path):
    rng = np.random.default_rng(7)
    path = tmp_path / "t.zarr"
    first = _batch(rng, _keys(rng, [], 20))
    with dask.config.set(SETTINGS):
        # 3 rows a chunk: the appended rows cross the ends of stored chunks
        mtd.from_metatensor(first).to_zarr(path, chunks=3)
        batches = [first]
        stored = [int(e[0]) for e in first.keys]

        # from an opened store (read by groups)
        opened = _batch(rng, _keys(rng, stored, 5))
        mtd.from_metatensor(opened).to_zarr(tmp_path / "source.zarr")
        source = mtd.open_zarr(tmp_path / "source.zarr")
        assert all(_graph.item_of(block.values) is not None for block in source.blocks())
        source.to_zarr(path, append_dim="samples", renumber={"system": "next"})
        batches.append(renumbered(opened, _next(batches)))
        stored = [int(e[0]) for e in _check(path, batches).keys]

        # computed from a loaded .mts file, never computed, discarded, then appended
        loaded = _batch(rng, _keys(rng, stored, 5))
        metatensor.save(tmp_path / "source.mts", loaded)
        doubled = mtd.multiply(mtd.load(tmp_path / "source.mts"), 2.0)
        doubled.to_zarr(path, append_dim="samples", renumber={"system": 1000}, compute=False)
        assert mtd.discard_append(path)
        _check(path, batches)
        assert mtd.verify(path).ok
        pending = doubled.to_zarr(
            path, append_dim="samples", renumber={"system": 1000}, compute=False
        )
        pending.compute()
        batches.append(renumbered(metatensor.multiply(loaded, 2.0), 1000))
        joined = _check(path, batches)

        # the store itself, computed on
        itself = mtd.add(mtd.open_zarr(path), 1.0)
        itself.to_zarr(path, append_dim="samples", renumber={"system": "next"})
        batches.append(renumbered(metatensor.add(joined, 1.0), _next(batches)))
        joined = _check(path, batches)

    report = mtd.verify(path)
    assert report.ok, report.problems
    whole = MemoryStore()
    mtd.from_metatensor(joined).to_zarr(whole, chunks=3)
    assert_equal_to_metatensor(mtd.open_zarr(whole), mtd.to_metatensor(mtd.open_zarr(path)))
