"""The lock of a write of this process stays its own while the write goes on, even
once its heartbeat could not refresh it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

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


@contextlib.contextmanager
def _immutable(path: Path) -> Iterator[None]:
    """``path`` made immutable (``chattr +i``: no one may open it for writing, root
    included) while the block runs."""
    made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"no immutable files here: {made.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_live_write_whose_heartbeat_failed_is_not_taken_over(tmp_path):
    """A refresh of the lock that fails (here: the lock file made immutable; on a
    network file system, an error that passes) stops the heartbeat, but the write goes
    on: another write of this process must not take its lock over."""
    path = tmp_path / "t.zarr"
    store = open_store(str(path), None, writable=True)
    lock = StoreLock(store, describe(store), 1.0)
    lock.acquire(takeover=False)
    try:
        with _immutable(path / ".lock"):
            assert _heartbeat_ended(lock)
        with pytest.raises(mtd.StoreLockedError, match="being written by another writer"):
            slow_tensor(3, 0.0).to_zarr(path, mode="w")
        assert lock.ref.holder().write_id == lock.ref.write_id
    finally:
        lock.release()
    assert not (path / ".lock").exists()


def _other_container_lock(path) -> None:
    """The lock file of a live writer of this host whose pid is this process's, in
    another pid namespace (another container: each numbers its processes from 1)."""
    now = time.time()
    holder = {
        "owner": "someone",
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "start": now,
        "heartbeat": now,
        "write_id": "f" * 32,
        "command": "to_zarr",
        "pid_space": "pid:[1]",
    }
    (path / ".lock").write_text(json.dumps(holder))


def test_a_lock_of_another_container_with_this_pid_is_not_this_process(tmp_path):
    path = tmp_path / "t.zarr"
    tensor = slow_tensor(3, 0.0)
    tensor.to_zarr(path)
    _other_container_lock(path)
    with pytest.raises(mtd.StoreLockedError, match="being written by another writer"):
        tensor.to_zarr(path, mode="r+")
    assert json.loads((path / ".lock").read_text())["write_id"] == "f" * 32


_HOLD = """
import sys
from metatensor_dask.io._lock import StoreLock
from metatensor_dask.io.zarr_store import describe, open_store
store = open_store(sys.argv[1], None, writable=True)
lock = StoreLock(store, describe(store), 1.0)
lock.acquire(takeover=False)
print("held", flush=True)
sys.stdin.read()
lock.release()
"""

_OVERWRITE = """
import sys
import dask
import metatensor_dask as mtd
from zarr_writer_process import slow_tensor
with dask.config.set({"metatensor_dask.lock-timeout": 1}):
    try:
        slow_tensor(3, 0.0).to_zarr(sys.argv[1], mode="w")
        print("written")
    except mtd.StoreLockedError as error:
        print("refused:", error)
"""


def _in_own_pid_space(code: str, *args: str, **kwargs) -> subprocess.Popen:
    """Python running ``code`` as the first process of a new pid namespace, as in a
    container of its own (its pid is 1)."""
    command = ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", code]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*sys.path, str(Path(__file__).parent)])}
    return subprocess.Popen([*command, *args], env=env, text=True, **kwargs)


@pytest.mark.xdist_group("serial")
@pytest.mark.skipif(
    shutil.which("unshare") is None
    or subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True).returncode,
    reason="no pid namespaces here",
)
def test_two_containers_of_one_host_do_not_take_each_others_live_lock(tmp_path):
    """Two jobs in containers of one host (docker --network host: one host name), each
    its own pid 1: the live write of one is not taken over by a mode='w' of the other."""
    path = str(tmp_path / "t.zarr")
    holder = _in_own_pid_space(_HOLD, path, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == "held\n"
        overwrite = _in_own_pid_space(_OVERWRITE, path, stdout=subprocess.PIPE)
        out, _ = overwrite.communicate(timeout=120)
        assert out.startswith("refused: ") and "being written by another writer" in out
    finally:
        holder.communicate("", timeout=120)
    assert holder.returncode == 0
    assert not os.path.exists(os.path.join(path, ".lock"))
