"""Writes killed and restarted, as batch jobs are: what the restart says and does.

A job requeued on another node finds the lock of the killed one, whose heartbeat looks
fresh: it can not tell whether that writer still runs, so it waits for the heartbeat to
go stale before taking the lock over. That wait (up to the ``lock-timeout`` setting, 5
minutes by default) must be announced, with what it waits for and how to skip it, and
not look like a hang.

A job requeued on the node of the killed one judges the lock by its pid: no such
process, the writer is gone. Pids are reused (a node numbers them up to 32768 by
default, threads included): a process that took the pid of the killed writer since is
not that writer, and must not make the restart fail as if the store were being written.
"""

import json
import os
import re
import subprocess
import sys
import types

import metatensor
from forked_process import Forked, run_code
from kill_support import ended

import metatensor_dask as mtd
from metatensor_dask.datasets import featomic_like
from metatensor_dask.io.convert import to_metatensor

SMALL = """
import sys
import metatensor_dask as mtd
from metatensor_dask.datasets import featomic_like
x = featomic_like(2, 4, neighbors=(2, 3), chunks=2)
"""
# the write set up (metadata and lock), then the process ends without computing it: the
# store is left incomplete, locked by a process that is gone, as a killed job leaves it
LEFT = SMALL + "x.to_zarr(sys.argv[1], compute=False)\n"
RESUMED = SMALL + "x.to_zarr(sys.argv[1], resume=True)\n"


def _python(script, *arguments, env=None):
    """``python -c script arguments...`` (with the variables ``env`` added) in a process
    of its own, forked from a server that imported everything once: its exit code, and
    its output (stderr included) as ``stderr``."""
    process = Forked(run_code, script, list(arguments), env or {})
    output = ended(process, timeout=120)
    return types.SimpleNamespace(returncode=process.returncode, stderr=output)


# the lock as a job on another node would have left it, killed just now: rewritten once
# the imports are done, so that it still looks fresh when the resume reads it
RESUMED_ELSEWHERE = (
    SMALL
    + """
import json, os, time
path = os.path.join(sys.argv[1], ".lock")
with open(path) as file:
    holder = json.load(file)
holder.update(host="not-" + holder["host"], heartbeat=time.time())
with open(path, "w") as file:
    json.dump(holder, file)
x.to_zarr(sys.argv[1], resume=True)
"""
)


def test_a_resume_waiting_for_a_lock_of_another_host_says_so(tmp_path):
    store = str(tmp_path / "out.zarr")
    left = _python(LEFT, store)
    assert left.returncode == 0, left.stderr
    # long enough that the lock still looks fresh when the resume reads it, however
    # loaded the machine: the lock is read a few milliseconds after its heartbeat was
    # written, in a process whose imports are done (the resume waits that long, at
    # most, before taking it over)
    env = {"DASK_METATENSOR_DASK__LOCK_TIMEOUT": "5"}
    resumed = _python(RESUMED_ELSEWHERE, store, env=env)
    assert resumed.returncode == 0, resumed.stderr
    message = " ".join(resumed.stderr.split())
    assert "on another host or container" in message, resumed.stderr
    waits = r"waits up to [0-5] s for its heartbeat to be older than the lock-timeout setting"
    assert re.search(waits, message), message
    assert f"delete '{store}/.lock' and run this again" in message
    expected = to_metatensor(featomic_like(2, 4, neighbors=(2, 3), chunks=2))
    assert metatensor.equal(expected, to_metatensor(mtd.open_zarr(store)))


def test_a_resume_takes_over_a_lock_whose_pid_another_process_took(tmp_path):
    store = str(tmp_path / "out.zarr")
    left = _python(LEFT, store)
    assert left.returncode == 0, left.stderr
    path = os.path.join(store, ".lock")
    with subprocess.Popen([sys.executable, "-c", "input()"], stdin=subprocess.PIPE) as other:
        try:
            # the pid of the writer gone, given to a process started since
            with open(path) as file:
                holder = json.load(file)
            holder["pid"] = other.pid
            with open(path, "w") as file:
                json.dump(holder, file)
            resumed = _python(RESUMED, store)
        finally:
            other.kill()
    assert resumed.returncode == 0, resumed.stderr
    expected = to_metatensor(featomic_like(2, 4, neighbors=(2, 3), chunks=2))
    assert metatensor.equal(expected, to_metatensor(mtd.open_zarr(store)))
