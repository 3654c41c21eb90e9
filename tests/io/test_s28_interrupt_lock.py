"""A call interrupted (``KeyboardInterrupt``, Ctrl-C in a notebook) in a process that
lives on: the lock it leaves names this very process, and must not lock the store for
as long as the process lives."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest
from zarr_writer_process import slow_tensor

import metatensor_dask as mtd
from metatensor_dask.io._lock import StoreLock
from metatensor_dask.io.zarr_store import describe, open_store


def _left_lock(path) -> StoreLock:
    """The lock of a write of this process whose call was interrupted once it had
    stopped the heartbeat, before it deleted the lock file."""
    store = open_store(str(path), None, writable=True)
    lock = StoreLock(store, describe(store), 60.0)
    lock.acquire(takeover=False)
    lock.stop()
    return lock


def _heartbeats(path) -> list[str]:
    """The heartbeat threads of locks of the store at ``path`` (other tests of this
    process may leave the locks of their ``compute=False`` writes, by design)."""
    name = f"metatensor-dask lock {os.path.realpath(path)}"
    return [t.name for t in threading.enumerate() if t.name == name]


def test_a_lock_left_by_an_interrupted_call_of_this_process_is_stale(tmp_path):
    path = tmp_path / "t.zarr"
    tensor = slow_tensor(3, 0.0)
    tensor.to_zarr(path)
    left = _left_lock(path)
    assert json.loads((path / ".lock").read_text())["pid"] == os.getpid()
    # a write that takes no lock over names the remedy, not a writer to wait for
    with pytest.raises(mtd.StoreLockedError, match=r"looks gone.*resume=True"):
        tensor.to_zarr(path, mode="r+")
    mtd.multiply(tensor, 3.0).to_zarr(path, mode="w")
    assert not (path / ".lock").exists()
    assert left.ref.holder() is None
    expected = mtd.multiply(tensor, 3.0).block(0)
    got = mtd.open_zarr(path).block(0)
    np.testing.assert_array_equal(got.values.compute(), expected.values.compute())
    np.testing.assert_array_equal(
        got.gradient("positions").values.compute(),
        expected.gradient("positions").values.compute(),
    )
    assert _heartbeats(path) == []


def test_a_live_lock_of_this_process_is_not_taken_over(tmp_path):
    path = tmp_path / "t.zarr"
    store = open_store(str(path), None, writable=True)
    lock = StoreLock(store, describe(store), 60.0)
    lock.acquire(takeover=False)
    try:
        with pytest.raises(mtd.StoreLockedError, match="being written by another writer"):
            slow_tensor(3, 0.0).to_zarr(path, mode="w")
    finally:
        lock.release()
    assert not (path / ".lock").exists()
    assert _heartbeats(path) == []


def test_a_write_interrupted_once_its_lock_is_created_leaves_no_lock(tmp_path, monkeypatch):
    """Ctrl-C landing just after the lock file is linked (as its copy written aside is
    removed): the lock is removed too, and the same call works again."""
    path = tmp_path / "t.zarr"
    unlink = os.unlink

    def interrupted(target, *args, **kwargs):
        unlink(target, *args, **kwargs)
        if os.path.basename(target).endswith(".tmp") and (path / ".lock").exists():
            monkeypatch.setattr(os, "unlink", unlink)
            raise KeyboardInterrupt

    monkeypatch.setattr(os, "unlink", interrupted)
    tensor = slow_tensor(3, 0.0)
    with pytest.raises(KeyboardInterrupt):
        tensor.to_zarr(path)
    assert not (path / ".lock").exists()
    assert _heartbeats(path) == []
    tensor.to_zarr(path)
    np.testing.assert_array_equal(
        mtd.open_zarr(path).block(0).values.compute(), tensor.block(0).values.compute()
    )
