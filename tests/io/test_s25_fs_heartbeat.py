"""The heartbeat of a lock goes on after a refresh that found no room (a file size
limit standing for a full disk, lowered then raised again in a subprocess): once there
is room, the lock is refreshed again, so that a writer still at work is not taken for
gone after the lock timeout."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.xdist_group("serial")

#: Takes the lock of the store ``argv[1]`` (timeout 1 s: a refresh every 0.2 s),
#: lowers the file size limit below the lock's size for 1 s, raises it again, and
#: prints how old the heartbeat is 1.5 s later.
BEAT = """
import resource, signal, sys, time
import zarr
import metatensor_dask as mtd
from metatensor_dask.io._lock import StoreLock

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
store = zarr.storage.LocalStore(sys.argv[1])
lock = StoreLock(store, sys.argv[1], 1.0)
lock.acquire(takeover=False)
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))
time.sleep(1.0)
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
time.sleep(1.5)
print(time.time() - lock.ref.holder().heartbeat)
lock.release()
"""


def test_the_heartbeat_goes_on_once_there_is_room(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", BEAT, str(tmp_path / "s.zarr")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    # refreshed every 0.2 s since the limit was raised 1.5 s ago (a heartbeat that
    # stopped when the limit was lowered would be 2.3 s old at least)
    assert float(done.stdout) < 1.2, done.stdout
    assert sorted(os.listdir(tmp_path / "s.zarr")) == []
