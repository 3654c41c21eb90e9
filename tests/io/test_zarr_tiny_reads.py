"""Maps opened from Zarr stores of many tiny blocks read them by groups: one task reads
the chunk files of many blocks, checking each chunk as a read of it alone does."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import dask
import metatensor
import numpy as np
import pytest
from dask.task_spec import Task
from older_formats import drop_chunk_tables
from store_support import CountingStore
from zarr.storage import LocalStore

import metatensor_dask as mtd
from metatensor_dask._collection import GroupItem
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes

CODECS = {
    "default": {},
    "zstd": {"metatensor_dask.compressor": "zstd"},
    "sharded": {"metatensor_dask.shard-chunks": 2},
    "sharded-zstd": {"metatensor_dask.shard-chunks": 2, "metatensor_dask.compressor": "zstd"},
}
NOT_LISTED = "is not the chunk the store lists: swapped with another, or an older copy put back"


def _labels(names: list[str], rows) -> metatensor.Labels:
    values = np.asarray(rows, dtype=np.int32).reshape(-1, len(names))
    return metatensor.Labels(names, values)


def _block(rng, samples: int, properties: int, dtype) -> metatensor.TensorBlock:
    """A block of ``samples`` rows, components ``(3,)``, with a ``positions``
    gradient of two rows per sample."""
    block = metatensor.TensorBlock(
        rng.normal(size=(samples, 3, properties)).astype(dtype),
        _labels(["s"], np.arange(samples)),
        [_labels(["c"], range(3))],
        _labels(["p"], range(properties)),
    )
    rows = [[s, a] for s in range(samples) for a in (0, 1)]
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.normal(size=(2 * samples, 3, 3, properties)).astype(dtype),
            _labels(["sample", "atom"], rows),
            [_labels(["xyz"], range(3)), _labels(["c"], range(3))],
            _labels(["p"], range(properties)),
        ),
    )
    return block


def tiny_map(n_blocks: int, dtype=np.float64, seed: int = 0) -> metatensor.TensorMap:
    """``n_blocks`` tiny blocks: mostly 5 samples and 4 properties, every seventh block
    without samples and every eleventh without properties (empty values)."""
    rng = np.random.default_rng(seed)
    blocks = []
    for i in range(n_blocks):
        samples = 0 if i % 7 == 3 else 5
        properties = 0 if i % 11 == 5 else 4
        blocks.append(_block(rng, samples, properties, dtype))
    return metatensor.TensorMap(_labels(["k"], range(n_blocks)), blocks)


def _write(path, tensor: metatensor.TensorMap, codecs: str = "default", **kwargs) -> None:
    with dask.config.set(CODECS[codecs]):
        mtd.from_metatensor(tensor).to_zarr(path, **kwargs)


def _grouped(tensor: mtd.TensorMap) -> list[bool]:
    """Whether each block's values, and its gradient's, are items of a group."""
    return [
        isinstance(block._values, GroupItem)
        and isinstance(block.gradient("positions")._values, GroupItem)
        for block in tensor.blocks()
    ]


def tasks(collection) -> int:
    """The tasks of the graph that computes ``collection`` (data and aliases
    excluded)."""
    graph = collection.__dask_optimize__(collection.__dask_graph__(), collection.__dask_keys__())
    return sum(type(node) is Task for node in graph.values())


# -- values ----------------------------------------------------------------------------


@pytest.mark.parametrize("codecs", sorted(CODECS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tiny_blocks_read_by_groups_equal_metatensor(tmp_path, codecs, dtype):
    theirs = tiny_map(30, dtype, seed=1)
    _write(tmp_path / "t.zarr", theirs, codecs)
    ours = mtd.open_zarr(tmp_path / "t.zarr")
    assert all(_grouped(ours))
    assert_equal_to_metatensor(ours, theirs)
    assert ours.block(4).values.dtype == dtype
    # one block alone, and one gradient alone
    computed = ours.block(9).compute()
    np.testing.assert_array_equal(computed.values, theirs.block(9).values)
    np.testing.assert_array_equal(
        ours.block(2).gradient("positions").values.compute(),
        theirs.block(2).gradient("positions").values,
    )


def test_big_endian_values_read_by_groups(tmp_path):
    theirs = tiny_map(12, seed=2)
    blocks = []
    for block in theirs.blocks():
        gradient = block.gradient("positions")
        ours = mtd.TensorBlock(
            block.values.astype(">f8"),
            mtd.Labels(block.samples.names, block.samples.values),
            [mtd.Labels(c.names, c.values) for c in block.components],
            mtd.Labels(block.properties.names, block.properties.values),
        )
        ours.add_gradient(
            "positions",
            mtd.TensorBlock(
                gradient.values.astype(">f8"),
                mtd.Labels(gradient.samples.names, gradient.samples.values),
                [mtd.Labels(c.names, c.values) for c in gradient.components],
                mtd.Labels(block.properties.names, block.properties.values),
            ),
        )
        blocks.append(ours)
    keys = mtd.Labels(theirs.keys.names, theirs.keys.values)
    mtd.TensorMap(keys, blocks).to_zarr(tmp_path / "t.zarr")
    opened = mtd.open_zarr(tmp_path / "t.zarr")
    assert all(_grouped(opened))
    assert_equal_to_metatensor(opened, theirs)
    assert opened.block(0).values.compute().dtype == np.dtype("=f8")


def test_saved_file_converted_to_zarr_reads_by_groups(tmp_path):
    theirs = tiny_map(20, np.float32, seed=3)
    metatensor.save(tmp_path / "t.mts", theirs)
    mtd.load(tmp_path / "t.mts").to_zarr(tmp_path / "t.zarr")
    opened = mtd.open_zarr(tmp_path / "t.zarr")
    assert all(_grouped(opened))
    assert_equal_to_metatensor(opened, theirs)


def test_only_tiny_blocks_are_grouped(tmp_path):
    """A block of several chunks, or opened in several chunks, or of more bytes than a
    tiny block, keeps a dask array per chunk; the tiny blocks around it are grouped."""
    rng = np.random.default_rng(4)
    big = _block(rng, 1200, 4, np.float64)  # 115 KiB of values, 230 KiB of gradient
    blocks = [_block(rng, 5, 4, np.float64), big, _block(rng, 30, 2, np.float64)]
    theirs = metatensor.TensorMap(_labels(["k"], range(3)), blocks)
    _write(tmp_path / "t.zarr", theirs)
    assert _grouped(mtd.open_zarr(tmp_path / "t.zarr")) == [True, False, True]
    rechunked = mtd.open_zarr(tmp_path / "t.zarr", chunks=10)
    assert _grouped(rechunked) == [True, False, False]
    assert rechunked.block(2).values.npartitions == 3
    assert_equal_to_metatensor(rechunked, theirs)
    _write(tmp_path / "chunked.zarr", theirs, chunks=10)
    assert _grouped(mtd.open_zarr(tmp_path / "chunked.zarr")) == [True, False, False]
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "chunked.zarr"), theirs)


# -- graphs ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[int, Path]:
    directory = tmp_path_factory.mktemp("tiny-stores")
    paths = {}
    for n in (50, 400):
        paths[n] = directory / f"t{n}.zarr"
        _write(paths[n], tiny_map(n, seed=n))
    return paths


@pytest.mark.parametrize(
    "operation",
    [
        lambda t: t,
        lambda t: mtd.multiply(t, 2.5),
        lambda t: mtd.add(t, t),
        lambda t: mtd.sum_over_samples(t, "s"),
    ],
    ids=["open", "multiply", "add", "sum_over_samples"],
)
def test_tasks_grow_with_groups_not_blocks(stores, operation):
    small = tasks(operation(mtd.open_zarr(stores[50])))
    large = tasks(operation(mtd.open_zarr(stores[400])))
    # 400 blocks of 5 samples: 800 chunk files of a few KiB, read by one group
    assert large <= small + 3, (small, large)


def test_groups_read_at_most_their_files(tmp_path, monkeypatch):
    from metatensor_dask.io import zarr_tiny

    monkeypatch.setattr(zarr_tiny, "GROUP_FILES", 8)
    theirs = tiny_map(20, seed=5)
    _write(tmp_path / "t.zarr", theirs)
    opened = mtd.open_zarr(tmp_path / "t.zarr")
    groups = {block._values.group_key for block in opened.blocks()}
    assert len(groups) == 5  # 40 arrays, 8 by 8
    assert tasks(opened) == 5
    assert_equal_to_metatensor(opened, theirs)


# -- laziness --------------------------------------------------------------------------


def _data_reads(reads: list[str]) -> list[str]:
    return sorted(key for key in reads if "/values/c" in key)


def test_open_reads_no_values_and_one_block_reads_its_chunks(tmp_path):
    theirs = tiny_map(16, seed=6)
    _write(tmp_path / "t.zarr", theirs)
    store = CountingStore(LocalStore(tmp_path / "t.zarr", read_only=True))
    with raise_if_dask_computes():
        opened = mtd.open_zarr(store)
        str(opened)
    assert _data_reads(store.reads) == []
    assert all(_grouped(opened))
    np.testing.assert_array_equal(opened.block(4).values.compute(), theirs.block(4).values)
    assert _data_reads(store.reads) == ["blocks/4/values/c.0.0.0"]
    store.reads.clear()
    gradient = opened.block(6).gradient("positions").values.compute()
    np.testing.assert_array_equal(gradient, theirs.block(6).gradient("positions").values)
    assert _data_reads(store.reads) == ["blocks/6/gradients/positions/values/c.0.0.0.0"]
    store.reads.clear()
    assert_equal_to_metatensor(opened, theirs)
    # each chunk once (blocks without samples have none)
    reads = _data_reads(store.reads)
    assert len(reads) == len(set(reads)) == 2 * sum(b.values.size > 0 for b in theirs)


class _InFlightStore(CountingStore):
    """Records the most reads of values chunks in flight at once (each read waits a
    little)."""

    def __init__(self, store):
        super().__init__(store)
        self.in_flight = self.most = 0

    async def get(self, key, prototype, byte_range=None):
        if "/values/c" not in key:
            return await super().get(key, prototype, byte_range)
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(0.002)
            return await super().get(key, prototype, byte_range)
        finally:
            self.in_flight -= 1


@pytest.mark.parametrize("codecs", ["default", "zstd"])
def test_a_group_fetches_its_chunk_files_together(tmp_path, codecs):
    """From stores other than local directories (object stores, where each request
    waits), a group asks for the chunk files of its arrays concurrently."""
    theirs = tiny_map(12, seed=16)
    _write(tmp_path / "t.zarr", theirs, codecs)
    store = _InFlightStore(LocalStore(tmp_path / "t.zarr", read_only=True))
    opened = mtd.open_zarr(store)
    store.most = 0
    with dask.config.set(scheduler="sync"):
        assert_equal_to_metatensor(opened, theirs)
    assert store.most > 4


# -- damage ----------------------------------------------------------------------------


def _refused(path, error, match: str) -> None:
    with pytest.raises(error, match=match):
        mtd.to_metatensor(mtd.open_zarr(path))
    with pytest.raises(error, match=match):
        mtd.open_zarr(path).compute()
    with pytest.raises(error, match=match):
        mtd.multiply(mtd.open_zarr(path), 2.0).compute()


def _swap(first: Path, second: Path) -> None:
    a, b = first.read_bytes(), second.read_bytes()
    assert a != b and len(a) == len(b)
    first.write_bytes(b)
    second.write_bytes(a)


@pytest.mark.parametrize("codecs", ["default", "sharded"])
@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("blocks/0/values/c.0.0.0", "blocks/1/values/c.0.0.0"),
        (
            "blocks/2/gradients/positions/values/c.0.0.0.0",
            "blocks/8/gradients/positions/values/c.0.0.0.0",
        ),
    ],
)
def test_chunks_swapped_inside_a_group_are_refused(tmp_path, codecs, first, second):
    path = tmp_path / "t.zarr"
    _write(path, tiny_map(10, seed=7), codecs)
    _swap(path / first, path / second)
    arrays = f"({first.rpartition('/')[0]}|{second.rpartition('/')[0]})"
    _refused(path, mtd.DamagedStoreError, rf"of the array '{arrays}' {NOT_LISTED}")
    # the block alone, as before
    with pytest.raises(mtd.DamagedStoreError, match=NOT_LISTED):
        block = mtd.open_zarr(path).block(int(first.split("/")[1]))
        block.values.compute()
        block.gradient("positions").values.compute()


@pytest.mark.parametrize("codecs", sorted(CODECS))
def test_a_changed_chunk_inside_a_group_is_refused(tmp_path, codecs):
    path = tmp_path / "t.zarr"
    _write(path, tiny_map(10, seed=8), codecs)
    chunk = path / "blocks/6/gradients/positions/values/c.0.0.0.0"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 3] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    _refused(path, mtd.DamagedStoreError, "blocks/6/gradients/positions/values")


@pytest.mark.parametrize("codecs", ["default", "zstd"])
def test_a_missing_chunk_inside_a_group_is_refused(tmp_path, codecs):
    path = tmp_path / "t.zarr"
    _write(path, tiny_map(10, seed=9), codecs)
    (path / "blocks/6/values/c.0.0.0").unlink()
    _refused(path, mtd.DamagedStoreError, r"'c\.0\.0\.0' of the array 'blocks/6/values' is missing")


def test_a_format_1_store_reads_its_skipped_chunks_as_zeros_by_groups(tmp_path):
    """Format 1 with a compressor skipped all-zero chunks: they read as zeros, in a
    group as alone."""
    theirs = tiny_map(10, seed=10)
    theirs.block(4).values[:] = 0.0
    path = tmp_path / "t.zarr"
    _write(path, theirs, "zstd")
    root = json.loads((path / "zarr.json").read_text())
    ours = root["attributes"]["metatensor_dask"]
    root["attributes"]["metatensor_dask"] = {"format": 1, "complete": ours["complete"]}
    (path / "zarr.json").write_text(json.dumps(root))
    drop_chunk_tables(path)
    (path / "blocks/4/values/c.0.0.0").unlink()
    with pytest.warns(mtd.StoreFormatWarning):
        opened = mtd.open_zarr(path)
    assert all(_grouped(opened))
    assert_equal_to_metatensor(opened, theirs)


@pytest.mark.parametrize("codecs", sorted(CODECS))
def test_a_map_opened_before_an_overwrite_refuses_to_compute(tmp_path, codecs):
    path = tmp_path / "t.zarr"
    _write(path, tiny_map(10, seed=11), codecs)
    opened = mtd.open_zarr(path)
    _write(path, tiny_map(10, seed=12), codecs, mode="w")
    with pytest.raises(mtd.MetatensorDaskError, match=r"overwritten .* since this tensor was"):
        opened.compute()
    with pytest.raises(mtd.MetatensorDaskError, match=r"overwritten .* since this tensor was"):
        opened.block(4).values.compute()
    assert_equal_to_metatensor(mtd.open_zarr(path), tiny_map(10, seed=12))


# -- appends ---------------------------------------------------------------------------


def _rows_map(seed: int, rows: int, start: int = 0) -> metatensor.TensorMap:
    """Tiny blocks of ``rows`` samples (systems from ``start``), one gradient row per
    sample."""
    rng = np.random.default_rng(seed)
    blocks = []
    for _ in range(6):
        block = metatensor.TensorBlock(
            rng.random((rows, 2)),
            _labels(["system"], np.arange(start, start + rows)),
            [],
            _labels(["p"], range(2)),
        )
        block.add_gradient(
            "alpha",
            metatensor.TensorBlock(
                rng.random((rows, 2)),
                _labels(["sample"], np.arange(rows)),
                [],
                block.properties,
            ),
        )
        blocks.append(block)
    return metatensor.TensorMap(_labels(["k"], range(6)), blocks)


@pytest.mark.parametrize("codecs", sorted(CODECS))
def test_a_map_opened_before_appends_reads_its_rows(tmp_path, codecs):
    """Appends rewrite the partial chunk of each tiny block with its rows unchanged: a
    map opened before reads, by groups, the rows it opened."""
    path = tmp_path / "t.zarr"
    first = _rows_map(13, rows=14)
    _write(path, first, codecs, chunks=16)  # one partial chunk per array
    opened = mtd.open_zarr(path)
    assert all(
        isinstance(block._values, GroupItem)
        and isinstance(block.gradient("alpha")._values, GroupItem)
        for block in opened.blocks()
    )
    with dask.config.set(CODECS[codecs]):
        for seed in (14, 15):
            added = mtd.from_metatensor(_rows_map(seed, rows=5))
            added.to_zarr(path, append_dim="samples", renumber={"system": "next"})
    assert_equal_to_metatensor(opened, first)
    np.testing.assert_array_equal(opened.block(2).values.compute(), first.block(2).values)
    again = mtd.open_zarr(path)
    assert len(again.block(0).samples) == 24
    assert mtd.verify(path).ok
