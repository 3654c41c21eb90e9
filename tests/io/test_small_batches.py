"""Stores grown by small batches: appends read only the sample rows stored since this
process last appended (and never trust the rows they kept when the store was rewritten
since), and blocks are not stored in chunks of one batch's rows (nor of one row, for a
block the first batch gives no rows)."""

from __future__ import annotations

import json
import subprocess
import sys

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.io import zarr_append
from metatensor_dask.testing import assert_equal_to_metatensor


def batch(first: int, n: int, seed: int) -> metatensor.TensorMap:
    """One block of ``n`` samples numbered from ``first``, with a positions gradient."""
    rng = np.random.default_rng(seed)
    samples = metatensor.Labels(["system"], np.arange(first, first + n).reshape(-1, 1))
    block = metatensor.TensorBlock(
        rng.normal(size=(n, 3)), samples, [], metatensor.Labels.range("p", 3)
    )
    rows = np.array([[s, 0, a] for s in range(n) for a in range(2)], dtype=np.int32).reshape(-1, 3)
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.normal(size=(len(rows), 3, 3)),
            metatensor.Labels(["sample", "system", "atom"], rows),
            [metatensor.Labels.range("xyz", 3)],
            block.properties,
        ),
    )
    return metatensor.TensorMap(metatensor.Labels.single(), [block])


@pytest.fixture
def regions(monkeypatch):
    """The row ranges of stored samples each append reads (the real reads, recorded)."""
    found: list[tuple[str, int, int]] = []
    real = zarr_append.read_plain_region

    def recorded(ref, region):
        found.append((ref.path, region[0].start, region[0].stop))
        return real(ref, region)

    monkeypatch.setattr(zarr_append, "read_plain_region", recorded)
    return found


def test_appends_read_only_the_rows_stored_since(tmp_path, regions):
    path = tmp_path / "small-batches.zarr"
    batches = [batch(4 * i, 4, i) for i in range(12)]
    for tensor in batches[:2]:
        mtd.from_metatensor(tensor).to_zarr(path, append_dim="samples")
    regions.clear()  # the first append read the rows the store was created with
    for tensor in batches[2:]:
        mtd.from_metatensor(tensor).to_zarr(path, append_dim="samples")
    # chunks of 4 rows: without the kept rows, the n-th append read n - 1 chunks of samples
    assert [r for r in regions if r[0].endswith("/samples") and r[1] < r[2]] == []
    assert_equal_to_metatensor(mtd.open_zarr(path), metatensor.join(batches, axis="samples"))
    assert mtd.verify(path).problems == []


def test_rows_kept_from_a_rewritten_store_are_not_trusted(tmp_path, regions):
    path = tmp_path / "rewritten.zarr"
    mtd.from_metatensor(batch(0, 4, 0)).to_zarr(path, append_dim="samples")
    mtd.from_metatensor(batch(4, 4, 1)).to_zarr(path, append_dim="samples")
    # the same location written again, same number of rows, other samples: the rows this
    # process kept are the old ones, which the stored digest does not hash
    rewritten = [batch(100, 4, 2), batch(104, 4, 3)]
    mtd.from_metatensor(metatensor.join(rewritten, axis="samples")).to_zarr(path, mode="w")
    regions.clear()
    last = batch(200, 4, 4)
    mtd.from_metatensor(last).to_zarr(path, append_dim="samples")
    assert ("blocks/0/samples", 0, 8) in regions  # the whole tail read again
    assert mtd.verify(path).problems == []
    assert_equal_to_metatensor(
        mtd.open_zarr(path), metatensor.join([*rewritten, last], axis="samples")
    )


def test_rows_appended_by_another_process_are_read(tmp_path, regions):
    """The rows another process appended since are read, and only those: the kept and
    read rows together hash to the stored digest."""
    path = tmp_path / "shared.zarr"
    batches = [batch(4 * i, 4, i) for i in range(4)]
    for tensor in batches[:2]:
        mtd.from_metatensor(tensor).to_zarr(path, append_dim="samples")
    metatensor.save(tmp_path / "third.mts", batches[2])
    code = (
        "import sys, metatensor_dask as mtd; "
        "mtd.load(sys.argv[1]).to_zarr(sys.argv[2], append_dim='samples')"
    )
    subprocess.run([sys.executable, "-c", code, tmp_path / "third.mts", path], check=True)
    regions.clear()
    mtd.from_metatensor(batches[3]).to_zarr(path, append_dim="samples")
    assert ("blocks/0/samples", 8, 12) in regions
    assert ("blocks/0/samples", 0, 12) not in regions
    assert mtd.verify(path).problems == []
    assert_equal_to_metatensor(mtd.open_zarr(path), metatensor.join(batches, axis="samples"))


def keyed(items: list[int]) -> metatensor.TensorMap:
    """A batch of ``items``: one block every batch has, and one only this batch has."""
    first = batch(items[0], len(items), items[0]).block().copy()
    once = batch(items[0], 1, 1000 + items[0]).block().copy()
    keys = metatensor.Labels(["key"], np.array([[0], [1 + items[0]]], dtype=np.int32))
    return metatensor.TensorMap(keys, [first, once])


def test_small_batches_fill_chunks_of_several_batches(tmp_path):
    path = tmp_path / "small.zarr"
    items = list(range(40))
    mtd.write_batches(keyed, items, path, batch_size=2, renumber=None, quiet=True)
    stored = mtd.open_zarr(path)
    every = stored.block({"key": 0})
    # 16 times the 2 rows of the first batch (the bytes asked for, 4 MiB, allow more)
    assert every.values.chunks[0] == (32, 8)
    assert every.gradient("positions").values.chunks[0] == (64, 16)
    once = stored.block({"key": 3})
    assert once.values.shape[0] == 1
    with open(path / "blocks" / "2" / "values" / "zarr.json") as file:
        assert '"chunk_shape":[16,3]' in file.read().replace(" ", "")
    expected = metatensor.join(
        [keyed(items[i : i + 2]) for i in range(0, 40, 2)], "samples", different_keys="union"
    )
    assert_equal_to_metatensor(stored, expected)


def late(items: list[int]) -> metatensor.TensorMap:
    """A batch of ``items``: two blocks with their rows, and one without rows in the
    first batch (a species the first structures lack)."""
    first = items[0]
    blocks = [batch(first, len(items), first + k).block().copy() for k in range(2)]
    blocks.append(batch(first, 0 if first == 0 else len(items), first + 2).block().copy())
    keys = metatensor.Labels.range("key", 3)
    return metatensor.TensorMap(keys, blocks)


def test_a_block_created_without_rows_is_chunked_like_its_neighbours(tmp_path):
    path = tmp_path / "late.zarr"
    items = list(range(40))
    mtd.write_batches(late, items, path, batch_size=2, renumber=None, quiet=True)
    stored = mtd.open_zarr(path)
    # its neighbours' chunks of 16 first batches' rows, where its own 0 rows gave one row
    assert stored.block({"key": 0}).values.chunks[0] == (32, 8)
    assert stored.block({"key": 2}).values.chunks[0] == (32, 6)
    values = sorted(p.name for p in (path / "blocks" / "2" / "values").iterdir())
    assert values == ["c.0.0", "c.1.0", "zarr.json"]
    expected = metatensor.join(
        [late(items[i : i + 2]) for i in range(0, 40, 2)], "samples", different_keys="union"
    )
    assert_equal_to_metatensor(stored, expected)
    assert mtd.verify(path).problems == []


def _chunk_rows(path, index: int) -> int:
    with open(path / "blocks" / str(index) / "values" / "zarr.json") as file:
        return json.load(file)["chunk_grid"]["configuration"]["chunk_shape"][0]


def test_a_block_an_append_creates_without_rows_is_chunked_like_its_neighbours(tmp_path):
    path = tmp_path / "appended-late.zarr"
    batches = [late([i, i + 1]) for i in range(0, 20, 2)]
    for tensor in batches:
        mtd.from_metatensor(tensor).to_zarr(path, append_dim="samples")
    # the chunks of the first batch (the tensor's own), where 0 rows gave one row
    assert _chunk_rows(path, 2) == _chunk_rows(path, 0) == 2
    assert len(list((path / "blocks" / "2" / "values").iterdir())) == 9 + 1
    expected = metatensor.join(batches, "samples", different_keys="union")
    assert_equal_to_metatensor(mtd.open_zarr(path), expected)
