"""A heartbeat never writes a lock again once the final task of a ``compute=False``
write (in another thread or process) deleted it, in a folder given as a path or as a
``file://`` URL: a refresh that read the lock just before the deletion wrote it back,
and the heartbeat then kept it fresh for as long as the process lived, so that the
store stayed locked by a write that had ended."""

from __future__ import annotations

import json

import pytest

from metatensor_dask.io._lock import LOCK_KEY, Holder, StoreLock
from metatensor_dask.io.zarr_store import describe, open_store


@pytest.mark.parametrize("named", ["path", "file:// URL"])
def test_a_lock_released_while_its_heartbeat_reads_it_stays_released(tmp_path, monkeypatch, named):
    if named == "path":
        store = open_store(str(tmp_path / "t.zarr"), None, writable=True)
    else:
        store = open_store((tmp_path / "t.zarr").as_uri(), {"auto_mkdir": True}, writable=True)
    lock = StoreLock(store, describe(store), 60.0)
    lock.acquire(takeover=False)
    final_task = lock.ref  # what the final task of the write holds (picklable)
    parse = Holder.parse.__func__
    released = []

    def parse_then_release(cls, raw):
        holder = parse(cls, raw)
        if not released:  # the final task runs right after the heartbeat read the lock
            released.append(True)
            final_task.release()
        return holder

    monkeypatch.setattr(Holder, "parse", classmethod(parse_then_release))
    try:
        lock._refresh()
        assert released
        assert not (tmp_path / "t.zarr" / LOCK_KEY).exists()
        assert not lock._refresh()  # the heartbeat then stops
    finally:
        monkeypatch.undo()
        lock.release()
    assert not (tmp_path / "t.zarr" / LOCK_KEY).exists()


def test_a_refreshed_lock_changes_only_its_heartbeat(tmp_path):
    store = open_store(str(tmp_path / "t.zarr"), None, writable=True)
    lock = StoreLock(store, describe(store), 60.0)
    lock.acquire(takeover=False)
    try:
        path = tmp_path / "t.zarr" / LOCK_KEY
        before = path.read_bytes()
        assert lock._refresh()
        after = path.read_bytes()
        assert len(after) == len(before)
        changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
        start = before.index(b'"heartbeat": ') + len(b'"heartbeat": ')
        assert all(start <= i < start + 17 for i in changed)
        assert json.loads(after)["heartbeat"] >= json.loads(before)["heartbeat"]
    finally:
        lock.release()
    assert not path.exists()


@pytest.mark.parametrize("heartbeat", [1.0e9, 1796464971.5, 1796464971.123456789, 9.9e9])
def test_a_lock_reads_back_as_written(heartbeat):
    holder = Holder("me", "host", 12, 1.5e9, heartbeat, "id", "to_zarr", "space")
    read = Holder.parse(holder.encode())
    assert read is not None
    assert read.heartbeat == pytest.approx(heartbeat, abs=1e-6)
    assert read == Holder.parse(read.encode())
