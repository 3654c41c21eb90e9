"""The lock of a write of this process stays its own while the write goes on, even
once its heartbeat could not refresh it."""

from __future__ import annotations

import threading
import time

import pytest
from zarr_writer_process import slow_tensor

import metatensor_dask as mtd
from metatensor_dask.io._lock import StoreLock
from metatensor_dask.io.zarr_store import describe, open_store


def _heartbeat_ended(lock: StoreLock) -> bool:
    name = f"metatensor-dask lock {lock.ref.where}"
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        if not any(t.name == name for t in threading.enumerate()):
            return True
        time.sleep(0.02)
    return False


def _in_the_way(temporary) -> None:
    """A folder where the heartbeat writes its copy of the lock (made between two of
    its refreshes)."""
    while True:
        try:
            temporary.mkdir()
            return
        except FileExistsError:
            time.sleep(0.01)


def test_a_live_write_whose_heartbeat_failed_is_not_taken_over(tmp_path):
    """A refresh of the lock that fails (here: a folder in the way of its copy written
    aside; on a network file system, an error that passes) stops the heartbeat, but
    the write goes on: another write of this process must not take its lock over."""
    path = tmp_path / "t.zarr"
    store = open_store(str(path), None, writable=True)
    lock = StoreLock(store, describe(store), 1.0)
    lock.acquire(takeover=False)
    try:
        _in_the_way(path / f".lock.{lock.ref.write_id}.tmp")
        assert _heartbeat_ended(lock)
        with pytest.raises(mtd.StoreLockedError, match="being written by another writer"):
            slow_tensor(3, 0.0).to_zarr(path, mode="w")
        assert lock.ref.holder().write_id == lock.ref.write_id
    finally:
        lock.release()
    assert not (path / ".lock").exists()
