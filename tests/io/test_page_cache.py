"""Drop-behind: the chunk files of writes and appends leave the page cache once on disk,
under the ``drop-behind`` setting; what is stored does not change."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import sys
from collections import deque
from pathlib import Path

import dask
import metatensor
import numpy as np
import pytest
from ingest_support import renumbered

import metatensor_dask as mtd
from metatensor_dask.io import _page_cache
from metatensor_dask.testing import assert_equal_to_metatensor

# measures memory or the page cache: one such test at a time
pytestmark = pytest.mark.xdist_group("serial")

ROWS_PER_ITEM = 2048
PROPERTIES = 256  # an item is 4 MiB of values: batches of two span whole 4 MiB chunks


def batch(items: list[int]) -> metatensor.TensorMap:
    """One block, ``ROWS_PER_ITEM`` samples per item (numbered from 0 in every call)."""
    samples = np.array(
        [[i, atom] for i in range(len(items)) for atom in range(ROWS_PER_ITEM)], np.int32
    )
    values = np.random.default_rng(items[0]).random((len(samples), PROPERTIES))
    block = metatensor.TensorBlock(
        values,
        metatensor.Labels(["system", "atom"], samples),
        [],
        metatensor.Labels.range("p", PROPERTIES),
    )
    return metatensor.TensorMap(metatensor.Labels.range("k", 1), [block])


def expected(n_items: int, batch_size: int) -> metatensor.TensorMap:
    """metatensor's join of the batches, ``system`` renumbered by their first item."""
    batches = [
        renumbered(batch(list(range(first, min(first + batch_size, n_items)))), first)
        for first in range(0, n_items, batch_size)
    ]
    return metatensor.join(batches, axis="samples", different_keys="union")


def resident_pages(path: Path) -> int:
    """Pages of the file ``path`` in the page cache (``mincore`` of a mapping of it)."""
    size = path.stat().st_size
    libc = ctypes.CDLL(None, use_errno=True)
    pages = -(-size // mmap.PAGESIZE)
    vector = (ctypes.c_ubyte * pages)()
    with open(path, "rb") as file:
        mapped = mmap.mmap(file.fileno(), size, prot=mmap.PROT_READ)
    view = np.frombuffer(mapped, np.uint8)
    try:
        status = libc.mincore(ctypes.c_void_p(view.ctypes.data), ctypes.c_size_t(size), vector)
        assert status == 0, os.strerror(ctypes.get_errno())
    finally:
        del view
        mapped.close()
    return sum(byte & 1 for byte in vector)


def chunk_files(store: Path) -> list[Path]:
    """The chunk files of the values of block 0 (4 MiB each)."""
    folder = store / "blocks" / "0" / "values"
    return sorted(folder.glob("c.*"), key=lambda path: int(path.name.split(".")[1]))


def check_written(
    store: Path, setting: object, n_chunks: int, tensor: metatensor.TensorMap
) -> None:
    """``store`` holds ``tensor`` in ``n_chunks`` chunk files, all in the page cache when
    drop-behind is off (``setting`` False), none otherwise."""
    cached = [resident_pages(file) for file in chunk_files(store)]
    assert len(cached) == n_chunks
    if setting is False:
        assert all(cached), cached
    else:
        assert not any(cached), cached
    assert_equal_to_metatensor(mtd.open_zarr(store).compute(), tensor)
    assert mtd.verify(store).ok


@pytest.fixture
def dropping_filesystem(tmp_path):
    """Skip where the file system of ``tmp_path`` keeps pages that were advised out
    (a memory file system has no disk to drop them to)."""
    if sys.platform != "linux":
        pytest.skip("drop-behind uses Linux's sync_file_range")
    probe = tmp_path / "probe"
    probe.write_bytes(b"x" * 2**20)
    descriptor = os.open(probe, os.O_RDONLY)
    try:
        os.fsync(descriptor)
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(descriptor)
    if resident_pages(probe):
        pytest.skip("this file system keeps pages advised out of the cache")
    probe.unlink()


@pytest.mark.parametrize("setting", [0, False], ids=["drop-everything", "off"])
def test_write_batches_drops_the_chunks_it_wrote(tmp_path, dropping_filesystem, setting):
    store = tmp_path / "t.zarr"
    with dask.config.set({"metatensor_dask.drop-behind": setting, "num_workers": 2}):
        mtd.write_batches(batch, list(range(6)), store, batch_size=2, quiet=True)
    check_written(store, setting, 6, expected(6, 2))


def test_the_setting_reaches_the_workers_of_a_cluster(tmp_path, dropping_filesystem):
    """The setting is read where write_batches is called, and travels with the batches
    to the worker processes that write them."""
    from distributed import Client, LocalCluster

    store = tmp_path / "t.zarr"
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0") as local,
        Client(local),
        dask.config.set({"metatensor_dask.drop-behind": "0B"}),
    ):
        mtd.write_batches(batch, list(range(6)), store, batch_size=2, quiet=True)
    assert [resident_pages(file) for file in chunk_files(store)] == [0] * 6
    assert_equal_to_metatensor(mtd.open_zarr(store).compute(), expected(6, 2))


@pytest.mark.parametrize("setting", ["0", False], ids=["drop-everything", "off"])
def test_plain_writes_drop_what_they_wrote(tmp_path, dropping_filesystem, setting):
    """``to_zarr`` of a whole tensor: its chunk files leave the cache once on disk,
    unless the setting is off; what is stored is the same."""
    store = tmp_path / "t.zarr"
    with dask.config.set({"metatensor_dask.drop-behind": setting}):
        mtd.from_metatensor(expected(4, 4)).to_zarr(store, chunks="4MiB")
    check_written(store, setting, 4, expected(4, 4))


def test_appends_drop_what_they_wrote(tmp_path, dropping_filesystem):
    """``to_zarr(append_dim="samples")``: the appended chunks leave the cache, the
    chunks of the plain write before them, written with drop-behind off, stay."""
    store = tmp_path / "t.zarr"
    first = mtd.from_metatensor(batch([0, 1]))
    with dask.config.set({"metatensor_dask.drop-behind": False}):
        first.to_zarr(store, chunks="4MiB")
    with dask.config.set({"metatensor_dask.drop-behind": "0"}):
        mtd.from_metatensor(batch([2, 3])).to_zarr(
            store, append_dim="samples", renumber={"system": "next"}
        )
    cached = [resident_pages(file) for file in chunk_files(store)]
    assert len(cached) == 4
    assert all(cached[:2]) and not any(cached[2:]), cached
    assert_equal_to_metatensor(mtd.open_zarr(store).compute(), expected(4, 2))


def test_the_newest_bytes_stay_cached(tmp_path, dropping_filesystem):
    """With a budget of two chunks, the two chunks written last stay in the cache."""
    store = tmp_path / "t.zarr"
    with dask.config.set({"metatensor_dask.drop-behind": "9MiB", "scheduler": "sync"}):
        mtd.write_batches(batch, list(range(6)), store, batch_size=2, quiet=True)
    cached = [resident_pages(file) for file in chunk_files(store)]
    assert not any(cached[:4]) and all(cached[4:]), cached


@pytest.mark.parametrize("value", ["lots", -1, True])
def test_an_invalid_setting_is_refused_before_the_store_is_touched(tmp_path, value):
    store = tmp_path / "t.zarr"
    with (
        dask.config.set({"metatensor_dask.drop-behind": value}),
        pytest.raises(mtd.MetatensorDaskError, match=r"drop-behind=.*use a size such as"),
    ):
        mtd.write_batches(batch, [0], store, quiet=True)
    assert not store.exists()
    mtd.from_metatensor(batch([0])).to_zarr(store)
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    with (
        dask.config.set({"metatensor_dask.drop-behind": value}),
        pytest.raises(mtd.MetatensorDaskError, match="drop-behind="),
    ):
        mtd.from_metatensor(batch([1])).to_zarr(store, append_dim="samples")
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before


def test_files_removed_before_their_turn_are_skipped(tmp_path):
    """A file replaced or removed after it was written is no error when its turn comes."""
    if _page_cache.budget() is None:
        pytest.skip("no drop-behind on this system")
    gone = tmp_path / "gone"
    gone.write_bytes(b"x" * _page_cache.SMALLEST_FILE)
    _page_cache.written(str(gone), _page_cache.SMALLEST_FILE, 2**40)
    gone.unlink()
    _page_cache.written(str(tmp_path / "other"), _page_cache.SMALLEST_FILE, 0)


@pytest.mark.parametrize(
    ("code", "raised"), [(errno.EIO, True), (errno.ENOSPC, True), (errno.EINVAL, False)]
)
def test_a_file_that_did_not_reach_the_disk_raises(tmp_path, monkeypatch, code, raised):
    """An I/O error or a full disk reported by the write-back is raised, naming the
    file, rather than its pages (the only copy) dropped; a file system without the
    call (EINVAL) leaves the file to the kernel."""
    if _page_cache.budget() is None:
        pytest.skip("no drop-behind on this system")

    def failing(descriptor, offset, count, flags):
        ctypes.set_errno(code)
        return -1

    monkeypatch.setattr(_page_cache, "_SYNC_FILE_RANGE", failing)
    # none of the files of earlier tests comes first
    monkeypatch.setattr(_page_cache, "_files", deque())
    monkeypatch.setattr(_page_cache, "_held", 0)
    path = tmp_path / "chunk"
    path.write_bytes(b"x" * _page_cache.SMALLEST_FILE)
    if raised:
        with pytest.raises(OSError, match=f"{os.strerror(code)}: writing .*chunk to disk failed"):
            _page_cache.written(str(path), _page_cache.SMALLEST_FILE, 0)
    else:
        _page_cache.written(str(path), _page_cache.SMALLEST_FILE, 0)
