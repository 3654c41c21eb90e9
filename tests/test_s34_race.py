"""A writer that stalls (stopped, frozen) on another host while holding a store's lock,
until its heartbeat is older than the lock-timeout, loses its lock to a writer that takes
it over; once it runs again, it must write nothing over the store that the other writer
left. A writer on another host is told gone by its heartbeat only, so this is the one
way two writers can both believe they hold a local store's lock.

The stalled writer is a real process whose host name is another one, that stops itself
(SIGSTOP) at a chosen moment: after it took the lock and planned its write, before it
wrote anything.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd

#: The lock-timeout of both writers: the shortest allowed, so that the takeover waits
#: little.
TIMEOUT = 0.5

#: A writer on host ``other-node``: ``to_zarr`` of the tensor of seed ``argv[3]`` to the
#: store ``argv[1]``, as an append or with ``mode="w"`` (``argv[2]``), which stops itself
#: once it planned what to write (the append's plan; for ``mode="w"``, the labels read
#: and checked; for ``w-emptied``, a ``mode="w"`` once it emptied the store). Prints
#: ``locked <message>`` when it finds its lock lost, ``done`` when it wrote.
STALLING = """
import os, signal, socket, sys
socket.gethostname = lambda: "other-node"
import metatensor_dask as mtd
from metatensor_dask.io import zarr_append, zarr_write
sys.path.insert(0, sys.argv[4])
from test_s34_race import tensor

store, how, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])

def stalled(function):
    def run(*args, **kwargs):
        result = function(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGSTOP)
        return result
    return run

if how == "w-emptied":
    zarr_write._clear = stalled(zarr_write._clear)
else:
    zarr_append.plan_append = stalled(zarr_append.plan_append)
    zarr_write._refuse_reading = stalled(zarr_write._refuse_reading)
try:
    if how == "append":
        tensor(seed).to_zarr(store, append_dim="samples", renumber={"system": "next"}, chunks=2)
    else:
        tensor(seed).to_zarr(store, mode="w", chunks=2)
except mtd.StoreLockedError as error:
    print("locked", error, flush=True)
    sys.exit(3)
print("done", flush=True)
"""


def tensor(seed: int) -> mtd.TensorMap:
    """Two blocks of odd sizes (partial last chunks) with a positions gradient grouped
    by sample (a row pointer), systems numbered from 0."""
    rng = np.random.default_rng(seed)
    blocks = []
    for n in (5, 3):
        samples = metatensor.Labels(
            ["system", "atom"], np.stack([np.arange(n) // 2, np.arange(n)], axis=1)
        )
        properties = metatensor.Labels(["n"], np.arange(2).reshape(-1, 1))
        block = metatensor.TensorBlock(rng.normal(size=(n, 2)), samples, [], properties)
        rows = np.repeat(np.arange(n), 2)
        gradient_samples = metatensor.Labels(
            ["sample", "system", "atom"], np.stack([rows, rows // 2, np.tile([0, 1], n)], axis=1)
        )
        block.add_gradient(
            "positions",
            metatensor.TensorBlock(rng.normal(size=(2 * n, 2)), gradient_samples, [], properties),
        )
        blocks.append(block)
    keys = metatensor.Labels(["center"], np.array([[1], [6]]))
    return mtd.from_metatensor(metatensor.TensorMap(keys, blocks))


def _appended(path, seed: int) -> None:
    _appended_tensor(path, tensor(seed))


def _appended_tensor(path, appended: mtd.TensorMap) -> None:
    appended.to_zarr(path, append_dim="samples", renumber={"system": "next"}, chunks=2)


def _state(path) -> tuple:
    """Every number of the store (values and gradients, with their samples), read and
    verified whole."""
    report = mtd.verify(str(path))
    assert report.ok, report.problems
    computed = mtd.open_zarr(str(path)).compute()
    state = []
    for block in computed.blocks():
        gradient = block.gradient("positions")
        state += [block.values, block.samples.values, gradient.values, gradient.samples.values]
    return tuple(np.asarray(array).tobytes() for array in state)


def _stopped(process: subprocess.Popen) -> None:
    """Wait until ``process`` stopped itself (or ended, which fails)."""
    deadline = time.monotonic() + 60
    while True:
        with open(f"/proc/{process.pid}/stat") as file:
            state = file.read().rpartition(")")[2].split()[0]
        if state == "T":
            return
        assert state != "Z" and time.monotonic() < deadline, process.communicate()
        time.sleep(0.005)


def _stall(path, how: str) -> subprocess.Popen:
    """A writer of another host, stopped holding the lock of ``path``."""
    process = subprocess.Popen(
        [sys.executable, "-c", STALLING, str(path), how, "7", str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "DASK_METATENSOR_DASK__LOCK_TIMEOUT": str(TIMEOUT)},
    )
    _stopped(process)
    return process


def _resumed(process: subprocess.Popen) -> str:
    """The output of the stalled writer once let go and ended."""
    process.send_signal(signal.SIGCONT)
    output, _ = process.communicate(timeout=60)
    return output


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/<pid>/stat")
@pytest.mark.parametrize("how", ["append", "w"])
def test_a_writer_that_lost_its_lock_while_stalled_writes_nothing(tmp_path, how):
    """The stalled writer's lock is taken over by an append (``resume=True``, which
    waits for its heartbeat to age); once let go, the stalled writer must find its lock
    lost before it writes anything: neither the append record, sample labels and row
    pointers of its own append, nor, for ``mode="w"``, emptying the store."""
    path = tmp_path / "store.zarr"
    tensor(0).to_zarr(path, chunks=2)
    expected = tmp_path / "expected.zarr"
    tensor(0).to_zarr(expected, chunks=2)
    _appended(expected, 1)
    stalled = _stall(path, how)
    try:
        with dask.config.set({"metatensor_dask.lock-timeout": TIMEOUT}), warnings.catch_warnings():
            warnings.simplefilter("ignore", mtd.MetatensorDaskWarning)
            tensor(1).to_zarr(
                path, append_dim="samples", renumber={"system": "next"}, chunks=2, resume=True
            )
        output = _resumed(stalled)
    finally:
        stalled.kill()
        stalled.communicate()
    assert stalled.returncode == 3 and output.startswith("locked"), output
    assert _state(path) == _state(expected)


def test_a_lock_whose_heartbeat_is_not_a_number_can_not_be_read(tmp_path):
    """A lock file (edited, or written by a broken writer) whose heartbeat is ``NaN``
    is a lock that can not be read: stale once last written longer ago than the
    lock-timeout, and taken over then; a ``NaN`` heartbeat never grows old, and read as
    a time, it locked the store for good, telling every writer to wait."""
    path = tmp_path / "store.zarr"
    tensor(0).to_zarr(path, chunks=2)
    expected = tmp_path / "expected.zarr"
    tensor(0).to_zarr(expected, chunks=2)
    _appended(expected, 1)
    holder = {"owner": "someone", "host": "other-node", "pid": 12, "start": 0.0}
    lock = path / ".lock"
    lock.write_text(json.dumps({**holder, "heartbeat": float("nan"), "write_id": "ab" * 16}))
    os.utime(lock, (time.time() - 60, time.time() - 60))
    with dask.config.set({"metatensor_dask.lock-timeout": TIMEOUT}):
        with pytest.raises(mtd.StoreLockedError, match="can not be read"):
            _appended(path, 1)
        tensor(1).to_zarr(
            path, append_dim="samples", renumber={"system": "next"}, chunks=2, resume=True
        )
    assert _state(path) == _state(expected)


def _fail(rows: np.ndarray) -> np.ndarray:
    raise RuntimeError("the source failed")


def test_an_unreadable_lock_over_an_interrupted_append_names_the_append_remedies(tmp_path):
    """A lock that can not be read (its writer killed as it wrote it, where there are
    no hard links), left over an interrupted append, names the remedies of an append
    (``resume=True``, ``discard_append``), not ``mode='w'``, which would delete the rows
    the append was adding to."""
    path = tmp_path / "store.zarr"
    tensor(0).to_zarr(path, chunks=2)
    theirs = tensor(1)
    failing = []
    for block in theirs.blocks():
        values = block.values.map_blocks(_fail, dtype=block.values.dtype)
        failed = mtd.TensorBlock(values, block.samples, block.components, block.properties)
        failed.add_gradient("positions", block.gradient("positions"))
        failing.append(failed)
    with pytest.raises(RuntimeError, match="the source failed"):
        _appended_tensor(path, mtd.TensorMap(theirs.keys, failing))
    (path / ".lock").write_bytes(b"")
    os.utime(path / ".lock", (time.time() - 60, time.time() - 60))
    with dask.config.set({"metatensor_dask.lock-timeout": TIMEOUT}):
        with pytest.raises(mtd.StoreLockedError, match="can not be read") as refused:
            _appended(path, 2)
    assert "discard_append" in str(refused.value)
    assert "mode='w'" not in str(refused.value)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/<pid>/stat")
def test_verify_of_a_store_an_overwrite_emptied_reports_the_write_not_lost_nodes(tmp_path):
    """``mode="w"`` marks the store incomplete (its root still listing the nodes of the
    store it replaces), empties it, then records its plan: verify meanwhile reports the
    write in progress, to wait for, not every node of the old store as lost (nor, once
    that writer is gone, when its remedy is named)."""
    path = tmp_path / "store.zarr"
    tensor(0).to_zarr(path, chunks=2)
    stalled = _stall(path, "w-emptied")
    try:
        report = mtd.verify(str(path))
    finally:
        stalled.kill()
        stalled.communicate()
    assert len(report.problems) == 1, report.problems
    assert "a write is in progress" in report.problems[0]
