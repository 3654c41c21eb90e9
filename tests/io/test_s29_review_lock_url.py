"""The lock of a store named by a ``file://`` URL is refreshed as a local one: a
heartbeat that read the lock just before the final task of a ``compute=False`` write
deleted it does not write it back (the store then stayed locked by a write that had
ended, for as long as the process lived)."""

from __future__ import annotations

from metatensor_dask.io._lock import LOCK_KEY, Holder, StoreLock
from metatensor_dask.io.zarr_store import describe, open_store


def test_a_url_lock_released_while_its_heartbeat_reads_it_stays_released(tmp_path, monkeypatch):
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
