"""One writer per store: racing writer processes, stale and live locks, write ids."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dask
import fsspec
import numpy as np
import pytest
from forked_process import Forked, forked_script
from zarr_writer_process import slow_tensor

import metatensor_dask as mtd
from metatensor_dask.io._lock import LOCK_KEY, Holder, StoreLock, unfinished_write
from metatensor_dask.io.zarr_store import get_many, open_store

# processes killed, or locks aged, at chosen moments: one such test at a time
pytestmark = pytest.mark.xdist_group("serial")

SCRIPT = Path(__file__).with_name("zarr_writer_process.py")


def _start(tmp_path: Path, name: str, store: str, *args: str, env: dict | None = None):
    """A writer process (see zarr_writer_process.py, forked from a server that imported
    everything once), its output in ``tmp_path/name``."""
    return forked_script(SCRIPT, store, *args, environment=env, log=tmp_path / name)


def _finish(process: Forked, timeout: float = 180) -> int:
    try:
        return process.wait(timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _race(tmp_path: Path, store: str, writers: list[list[str]]) -> list[tuple[int, str, int]]:
    """Start the writers together (after their imports); (exit code, output, pid) of each."""
    go = tmp_path / "go"
    processes = [
        _start(tmp_path, f"writer{i}.log", store, *args, "--go", str(go))
        for i, args in enumerate(writers)
    ]
    # every writer ready (its imports done, which take seconds on a loaded machine: a
    # writer started late found the other's write finished, and no race took place)
    _wait_for(lambda: len(list(tmp_path.glob("go.ready.*"))) == len(processes))
    go.touch()
    codes = [_finish(p) for p in processes]
    return [
        (code, (tmp_path / f"writer{i}.log").read_text(), p.pid)
        for i, (code, p) in enumerate(zip(codes, processes, strict=True))
    ]


def _wait_for(condition, process: Forked | None = None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process is None or process.poll() is None, "the writer ended too early"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _recorded(path: Path) -> int:
    folder = path / ".progress"
    return len(os.listdir(folder)) if folder.exists() else 0


def _values(store, key: int = 1) -> np.ndarray:
    tensor = mtd.open_zarr(store)
    return tensor.block(tensor.keys.position([key])).values.compute()


def _expected(scale: float, n_chunks: int) -> np.ndarray:
    return scale * slow_tensor(n_chunks, 0.0).block(0).values.compute()


def test_two_overwriting_writers_one_wins(tmp_path):
    path = tmp_path / "t.zarr"
    slow_tensor(30, 0.0).to_zarr(path)
    results = _race(
        tmp_path,
        str(path),
        [["30", "0.05", "--mode", "w", "--scale", scale] for scale in ("2", "3")],
    )
    assert sorted(code for code, _, _ in results) == [0, 3], results
    (winner,) = [r for r in results if r[0] == 0]
    (loser,) = [r for r in results if r[0] == 3]
    # the loser failed fast, naming the winner: no mix of both, no "Directory not empty"
    assert loser[1].startswith("locked: ")
    assert "is being written by another writer" in loser[1]
    assert f"pid {winner[2]}," in loser[1]
    assert all("Directory not empty" not in output for _, output, _ in results)
    scale = 2.0 if results[0][0] == 0 else 3.0
    np.testing.assert_array_equal(_values(path), _expected(scale, 30))
    assert not (path / ".lock").exists()


def test_two_adding_writers_lose_no_key(tmp_path):
    path = tmp_path / "t.zarr"
    slow_tensor(30, 0.0, key=0).to_zarr(path)
    results = _race(
        tmp_path, str(path), [["30", "0.05", "--mode", "a", "--key", key] for key in ("1", "2")]
    )
    assert sorted(code for code, _, _ in results) == [0, 3], results
    (loser,) = [i + 1 for i, r in enumerate(results) if r[0] == 3]
    assert "is being written by another writer" in results[loser - 1][1]
    # once the first is done, the other one adds its key
    slow_tensor(30, 0.0, key=loser).to_zarr(path, mode="a")
    assert sorted(mtd.open_zarr(path).keys.values[:, 0].tolist()) == [0, 1, 2]
    for key in (0, 1, 2):
        np.testing.assert_array_equal(_values(path, key), _expected(1.0, 30))


def test_a_live_writer_keeps_its_lock(tmp_path):
    path = tmp_path / "t.zarr"
    writer = _start(
        tmp_path,
        "writer.log",
        str(path),
        "40",
        "0.1",
        env={"DASK_METATENSOR_DASK__LOCK_TIMEOUT": "0.5"},
    )
    try:
        _wait_for(lambda: _recorded(path) >= 2, writer)
        first = json.loads((path / ".lock").read_text())
        assert first["pid"] == writer.pid and first["host"] and first["owner"]
        # even resume=True does not take a lock whose holder is alive
        with pytest.raises(
            mtd.StoreLockedError, match=rf"being written by another writer.*pid {writer.pid}"
        ):
            slow_tensor(40, 0.0).to_zarr(path, resume=True)
        time.sleep(0.6)
        # the heartbeat is refreshed while the writer writes
        assert json.loads((path / ".lock").read_text())["heartbeat"] > first["heartbeat"]
    finally:
        assert _finish(writer) == 0, (tmp_path / "writer.log").read_text()
    assert not (path / ".lock").exists()
    np.testing.assert_array_equal(_values(path), _expected(1.0, 40))


def test_an_old_heartbeat_makes_a_lock_stale(tmp_path):
    path = tmp_path / "t.zarr"
    timeout = {"DASK_METATENSOR_DASK__LOCK_TIMEOUT": "1"}
    writer = _start(tmp_path, "writer.log", str(path), "40", "0.1", env=timeout)
    try:
        _wait_for(lambda: _recorded(path) >= 2, writer)
        # a frozen writer: alive, but its heartbeat stops
        writer.send_signal(signal.SIGSTOP)
        time.sleep(1.5)
        with dask.config.set({"metatensor_dask.lock-timeout": 1}):
            with pytest.raises(mtd.StoreLockedError, match=r"looks gone.*heartbeat is \d+ s old"):
                slow_tensor(40, 0.0).to_zarr(path, mode="a")
            slow_tensor(40, 0.0).to_zarr(path, resume=True)
        np.testing.assert_array_equal(_values(path), _expected(1.0, 40))
        # the frozen writer wakes up: it no longer holds the lock, so it never marks the
        # store complete (its chunks are the same numbers here)
        writer.send_signal(signal.SIGCONT)
        assert _finish(writer) == 3
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert "another writer took the lock" in (tmp_path / "writer.log").read_text()
    np.testing.assert_array_equal(_values(path), _expected(1.0, 40))


def test_fsspec_writers_race_at_most_one_completes(tmp_path):
    url = f"file://{tmp_path}/url.zarr"
    results = _race(tmp_path, url, [["20", "0.05", "--scale", scale] for scale in ("2", "3")])
    codes = sorted(code for code, _, _ in results)
    # without an atomic create (fsspec writes a file in place), a writer takes the lock
    # by writing it, then reading it back; never do both complete
    assert codes in ([0, 3], [3, 3]), results
    if codes == [3, 3]:
        # whatever the interleaving, what is left is one writer's whole lock (or none)
        (raw,) = get_many(open_store(url, None, writable=False), [LOCK_KEY])
        assert raw is None or Holder.parse(raw) is not None, raw
        with pytest.raises(mtd.IncompleteStoreError):
            mtd.open_zarr(tmp_path / "url.zarr")
        return
    scale = 2.0 if results[0][0] == 0 else 3.0
    np.testing.assert_array_equal(_values(tmp_path / "url.zarr"), _expected(scale, 20))


def test_locks_written_in_place_at_once_leave_one_whole_lock(tmp_path):
    # two writers of an fsspec file:// store open the lock (truncating it) before either
    # writes, then write theirs: the shorter last
    url = f"file://{tmp_path}/url.zarr"
    store = open_store(url, {"auto_mkdir": True}, writable=True)
    (tmp_path / "url.zarr").mkdir()
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    longer = Holder("someone", "a-much-longer-host-name", ended.pid, 1.5, 1.5, "b" * 32)
    shorter = Holder("me", "host", ended.pid, 1.0, 1.0, "a" * 32, "write_batches")
    assert len(json.dumps(dataclasses.asdict(longer))) > len(
        json.dumps(dataclasses.asdict(shorter))
    )
    files = fsspec.filesystem("file")
    path = str(tmp_path / "url.zarr" / LOCK_KEY)
    with files.open(path, "wb") as first, files.open(path, "wb") as second:
        first.write(longer.encode())
        first.flush()
        second.write(shorter.encode())
        second.flush()
    (raw,) = get_many(store, [LOCK_KEY])
    assert Holder.parse(raw) == shorter
    # the next writer finds a lock it can read, of a writer gone: resume=True takes it over
    lock = StoreLock(store, url, 60.0)
    with pytest.raises(
        mtd.StoreLockedError, match=rf"looks gone \(write_batches .*pid {ended.pid}"
    ):
        lock.acquire(takeover=False)


@pytest.mark.parametrize("kind", ["directory", "memory://"])
def test_a_write_that_lost_its_lock_does_not_complete(tmp_path, kind):
    store = tmp_path / "t.zarr" if kind == "directory" else "memory://lock-tests/lost.zarr"
    delayed = slow_tensor(6, 0.0).to_zarr(store, mode="w", compute=False)
    # the Delayed holds the lock until it runs; another writer can not write meanwhile
    with pytest.raises(mtd.StoreLockedError, match=r"compute=False\) of this process"):
        mtd.multiply(slow_tensor(6, 0.0), 2.0).to_zarr(store, mode="a")
    # a resume in this process takes it over and finishes the write
    slow_tensor(6, 0.0).to_zarr(store, resume=True)
    with pytest.raises(mtd.StoreLockedError, match="another writer took the lock"):
        dask.compute(delayed)
    np.testing.assert_array_equal(_values(store), _expected(1.0, 6))


def test_a_delayed_write_holds_the_lock_until_it_runs(tmp_path):
    path = tmp_path / "t.zarr"
    delayed = slow_tensor(6, 0.0).to_zarr(path, compute=False)
    assert json.loads((path / ".lock").read_text())["pid"] == os.getpid()
    with pytest.raises(mtd.StoreLockedError, match="resume=True"):
        slow_tensor(6, 0.0).to_zarr(path, mode="r+")
    delayed.compute()
    assert not (path / ".lock").exists()
    np.testing.assert_array_equal(_values(path), _expected(1.0, 6))


def test_refused_writes_leave_no_lock(tmp_path):
    path = tmp_path / "t.zarr"
    with pytest.raises(mtd.MetatensorDaskError, match="mode='r\\+' rewrites an existing store"):
        slow_tensor(3, 0.0).to_zarr(path, mode="r+")
    assert not path.exists()  # the folder made for the lock is removed
    slow_tensor(3, 0.0).to_zarr(path)
    with pytest.raises(mtd.MetatensorDaskError, match="already exists"):
        slow_tensor(3, 0.0).to_zarr(path)
    assert not (path / ".lock").exists()


def test_lock_timeout_setting_is_checked(tmp_path):
    with dask.config.set({"metatensor_dask.lock-timeout": "soon"}):
        with pytest.raises(mtd.MetatensorDaskError, match=r"invalid setting.*lock-timeout='soon'"):
            slow_tensor(3, 0.0).to_zarr(tmp_path / "t.zarr")
    assert not (tmp_path / "t.zarr").exists()


@pytest.mark.parametrize("kind", ["directory", "file://"])
def test_resume_waits_for_the_lock_of_a_job_on_another_node(tmp_path, kind):
    # what a job killed on another node leaves: a lock whose heartbeat is still recent
    path = tmp_path / "t.zarr"
    store = path if kind == "directory" else f"file://{path}"
    options = {"auto_mkdir": True} if kind == "file://" else None
    slow_tensor(6, 0.0).to_zarr(store, compute=False, storage_options=options)
    holder = json.loads((path / ".lock").read_text())
    holder.update(host="another-node", pid=1, heartbeat=time.time() - 1.0, write_id="0" * 32)
    (path / ".lock").write_text(json.dumps(holder))
    with dask.config.set({"metatensor_dask.lock-timeout": 2}):
        with pytest.raises(mtd.StoreLockedError, match=r"another writer .*host another-node"):
            slow_tensor(6, 0.0).to_zarr(store, storage_options=options, mode="a")
        start = time.monotonic()
        with pytest.warns(mtd.MetatensorDaskWarning, match="on another host or container"):
            slow_tensor(6, 0.0).to_zarr(store, storage_options=options, resume=True)
    # resume=True waited until the heartbeat was older than the timeout, then took over
    assert 0.5 < time.monotonic() - start < 10
    assert not (path / ".lock").exists()
    np.testing.assert_array_equal(_values(path), _expected(1.0, 6))


def _unreadable_lock(path: Path, age: float) -> None:
    """What a writer killed between creating its lock file and writing it leaves (where
    the lock is not created in one step), last written ``age`` seconds ago."""
    (path / ".lock").write_bytes(b"")
    then = time.time() - age
    os.utime(path / ".lock", (then, then))


def test_a_killed_writer_with_an_unreadable_lock_is_resumed_once_the_lock_is_old(tmp_path):
    path = tmp_path / "t.zarr"
    writer = _start(tmp_path, "writer.log", str(path), "40", "0.1")
    try:
        _wait_for(lambda: _recorded(path) >= 2, writer)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    with dask.config.set({"metatensor_dask.lock-timeout": 5}):
        _unreadable_lock(path, 1.0)
        with pytest.raises(
            mtd.StoreLockedError,
            match=r"can not be read \(last written 1 s ago.*lock-timeout \(5 s\)",
        ):
            slow_tensor(40, 0.0).to_zarr(path, resume=True)
        _unreadable_lock(path, 60.0)
        with pytest.raises(
            mtd.StoreLockedError, match=r"looks gone \(its lock file '.lock' can not be read"
        ):
            slow_tensor(40, 0.0).to_zarr(path, mode="a")
        slow_tensor(40, 0.0).to_zarr(path, resume=True)
    np.testing.assert_array_equal(_values(path), _expected(1.0, 40))
    assert sorted(p.name for p in path.iterdir() if p.name.startswith(".lock")) == []


def test_an_old_unreadable_lock_is_taken_over_by_an_overwrite(tmp_path):
    path = tmp_path / "t.zarr"
    path.mkdir()
    _unreadable_lock(path, 60.0)
    with dask.config.set({"metatensor_dask.lock-timeout": 5}):
        slow_tensor(3, 0.0).to_zarr(path, mode="w")
    np.testing.assert_array_equal(_values(path), _expected(1.0, 3))
    assert not (path / ".lock").exists()


def test_a_lock_is_created_whole(tmp_path):
    """The lock file holds its writer from the start, and no temporary file is left."""
    path = tmp_path / "t.zarr"
    delayed = slow_tensor(3, 0.0).to_zarr(path, compute=False)
    holder = json.loads((path / ".lock").read_bytes())
    assert holder["pid"] == os.getpid()
    assert [p.name for p in path.iterdir() if p.name.startswith(".lock")] == [".lock"]
    delayed.compute()
    assert not (path / ".lock").exists()


def test_files_left_by_killed_lock_takers_are_removed(tmp_path):
    """A writer killed between writing its lock aside and linking or removing it leaves
    ``.lock.<id>.tmp`` or ``.lock.<id>``; the next writer removes those older than
    ``lock-timeout`` (a live writer's are younger: it removes them within moments)."""
    path = tmp_path / "t.zarr"
    slow_tensor(3, 0.0).to_zarr(path)
    old = [path / ".lock.0123abcd.tmp", path / ".lock.0123abcd"]
    fresh = path / ".lock.4567ef01.tmp"
    for left in [*old, fresh]:
        left.write_bytes(b'{"pid": 1}')
    for left in old:
        os.utime(left, (time.time() - 60, time.time() - 60))
    with dask.config.set({"metatensor_dask.lock-timeout": 5}):
        slow_tensor(3, 0.0, key=2).to_zarr(path, mode="a")
    assert sorted(p.name for p in path.iterdir() if p.name.startswith(".lock")) == [fresh.name]
    assert len(mtd.open_zarr(path)) == 2


@pytest.mark.parametrize("command", ["metatensor-dask run", "metatensor-dask apply"])
def test_the_remedy_of_a_killed_command_names_submit_for_runs_only(command):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    now = time.time()
    holder = Holder("user", socket.gethostname(), int(dead.stdout), now, now, "id", command)
    message = unfinished_write(holder)
    assert "it looks gone" in message, message
    assert f"run the same command ({command}) with --resume" in message, message
    job = "a job of metatensor-dask submit: submit it again with --resume"
    assert (job in message) == (command == "metatensor-dask run"), message


def test_a_folder_removed_by_a_refused_writer_before_the_lock_is_made_again(tmp_path, monkeypatch):
    """A writer refused at a new location removes the folders it made; another writer
    that found them made, between its ``mkdir`` and its lock file, makes them again."""
    from metatensor_dask.io import _lock

    path = tmp_path / "new" / "t.zarr"
    create = _lock._create
    removed = []

    def after_the_other_refused(*args):
        if not removed:
            (tmp_path / "new" / "t.zarr").rmdir()
            (tmp_path / "new").rmdir()
            removed.append(True)
        return create(*args)

    monkeypatch.setattr(_lock, "_create", after_the_other_refused)
    slow_tensor(2, 0.0).to_zarr(path)
    assert removed
    np.testing.assert_array_equal(_values(str(path)), _expected(1.0, 2))
