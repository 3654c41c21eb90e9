"""Writers stopped at moments that random kills found, then run again as a requeued
job does: with the same call and ``resume=True``.

- ``mode="w"`` over a complete store, stopped after it emptied the store and before its
  plan was recorded (or while it was recorded, or before its root replaced the one
  listing the emptied store): the store reads as incomplete, and the same call with
  ``resume=True`` writes it anew (it said to use ``mode='w'``, the mode it was given,
  or that the store's metadata did not match the tensor, and failed on every requeue).
- A write stopped once the store was complete, before it deleted its lock: its
  ``resume=True`` finds the store written and removes the lock it left (kept, the lock
  refused the next write, naming ``resume=True`` as the remedy that had just run), and
  the progress records it left (kept for ever before: "already complete: nothing was
  written").
"""

from __future__ import annotations

import metatensor
import pytest
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.io import zarr_write
from metatensor_dask.io._lock import StoreLock
from metatensor_dask.io.zarr_store import describe, open_store
from metatensor_dask.testing import assert_equal_to_metatensor

SAMPLES = (5, 0, 3)


def _leave_lock(path) -> None:
    """Leave the lock of a write of this process that stopped before deleting it, as a
    killed writer leaves its lock: stale, to take over."""
    store = open_store(str(path), None, writable=True)
    lock = StoreLock(store, describe(store), 60.0)
    lock.acquire(takeover=False)
    lock.stop()


@pytest.mark.parametrize("plan", ["missing", "cut short", "recorded"])
def test_mode_w_stopped_while_emptying_the_store_is_resumed(tmp_path, monkeypatch, plan):
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(make_metatensor(0, n_samples=SAMPLES)).to_zarr(path, chunks=1)
    expected = make_metatensor(1, n_samples=SAMPLES)
    clear, set_many = zarr_write._clear, zarr_write.set_many

    def stopped(store):
        clear(store)
        if plan == "cut short":
            (path / ".progress").mkdir()
            (path / ".progress" / "plan.json").write_text('{"data": ["blocks/0/val')
        if plan != "recorded":
            raise KeyboardInterrupt

    def root_not_written(store, items, *args, **kwargs):
        # stopped once its plan is recorded, before its root replaces the emptied one's
        if "zarr.json" in items and (path / ".progress" / "plan.json").exists():
            raise KeyboardInterrupt
        return set_many(store, items, *args, **kwargs)

    monkeypatch.setattr(zarr_write, "_clear", stopped)
    monkeypatch.setattr(zarr_write, "set_many", root_not_written)
    with pytest.raises(KeyboardInterrupt):
        mtd.from_metatensor(expected).to_zarr(path, mode="w", chunks=1, resume=True)
    monkeypatch.undo()
    _leave_lock(path)
    with pytest.raises(mtd.IncompleteStoreError, match="resume=True"):
        mtd.open_zarr(path)
    assert not mtd.verify(path).ok

    mtd.from_metatensor(expected).to_zarr(path, mode="w", chunks=1, resume=True)
    assert_equal_to_metatensor(mtd.open_zarr(path), expected)
    assert not (path / ".lock").exists() and not (path / ".progress").exists()
    assert mtd.verify(path).ok


def test_resume_of_a_complete_store_removes_the_lock_its_killed_writer_left(tmp_path):
    first, second = (mtd.from_metatensor(make_metatensor(s, n_samples=SAMPLES)) for s in (0, 1))
    path, uninterrupted = tmp_path / "t.zarr", tmp_path / "uninterrupted.zarr"
    for store in (path, uninterrupted):
        first.to_zarr(store, chunks=1)
    _leave_lock(path)

    first.to_zarr(path, mode="w", chunks=1, resume=True)
    assert not (path / ".lock").exists()
    for store in (path, uninterrupted):
        second.to_zarr(store, append_dim="samples", renumber={"system": "next"}, chunks=1)
    assert metatensor.equal(
        mtd.to_metatensor(mtd.open_zarr(path)), mtd.to_metatensor(mtd.open_zarr(uninterrupted))
    )
    assert mtd.verify(path).ok


def test_resume_of_a_write_stopped_once_complete_forgets_its_progress(tmp_path, monkeypatch):
    path = tmp_path / "t.zarr"
    tensor = make_metatensor(0, n_samples=SAMPLES)
    delete_prefix = zarr_write.delete_prefix

    def stopped(store, prefix):
        if prefix == ".progress/" and mtd.verify(path).ok:  # once the store is complete
            raise KeyboardInterrupt
        delete_prefix(store, prefix)

    monkeypatch.setattr(zarr_write, "delete_prefix", stopped)
    with pytest.raises(KeyboardInterrupt):
        mtd.from_metatensor(tensor).to_zarr(path, chunks=1)
    monkeypatch.undo()
    assert_equal_to_metatensor(mtd.open_zarr(path), tensor)
    assert (path / ".progress" / "plan.json").exists()

    mtd.from_metatensor(tensor).to_zarr(path, mode="w-", chunks=1, resume=True)
    assert not (path / ".progress").exists() and not (path / ".lock").exists()
    assert mtd.verify(path).ok
