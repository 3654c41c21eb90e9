"""write_batches on a distributed cluster refuses a store before it sends any batch to
the workers (the store exists, a setting is wrong, another writer holds the store): it
writes nothing and leaves no task on the cluster."""

from __future__ import annotations

import os
import socket
import time

import dask
import metatensor
import pytest
from ingest_support import renumbered, soap

import metatensor_dask as mtd
from metatensor_dask.errors import MetatensorDaskError
from metatensor_dask.io._lock import Holder
from metatensor_dask.testing import assert_equal_to_metatensor

# LocalClusters of worker processes: one such test at a time (2 cores)
pytestmark = pytest.mark.xdist_group("clusters")


def _cluster():
    from distributed import Client, LocalCluster

    local = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0")
    return local, Client(local)


def _tasks_left(client, seconds: float = 10.0) -> int:
    """The tasks the scheduler still holds, once released futures are forgotten."""
    deadline = time.monotonic() + seconds
    while True:
        left = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
        if left == 0 or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def _files(path) -> dict[str, bytes]:
    """Every file under ``path`` by its relative name, with its bytes."""
    found = {}
    for folder, _, names in os.walk(path):
        for name in names:
            with open(os.path.join(folder, name), "rb") as file:
                found[os.path.relpath(os.path.join(folder, name), path)] = file.read()
    return found


def test_refusals_write_nothing_and_leave_no_task(tmp_path):
    path = tmp_path / "t.zarr"
    local, client = _cluster()
    with local, client:
        mtd.write_batches(soap, list(range(4)), path, batch_size=2, quiet=True)
        before = _files(path)

        # the store exists: found once the first batches were sent
        with pytest.raises(MetatensorDaskError, match=r"already exists.*resume=True"):
            mtd.write_batches(soap, list(range(8)), path, batch_size=2, quiet=True)
        assert _files(path) == before
        assert _tasks_left(client) == 0

        # a wrong setting: refused before the store is created
        other = tmp_path / "other.zarr"
        with dask.config.set({"metatensor_dask.compressor": "no-such-codec"}):
            with pytest.raises(MetatensorDaskError, match="compressor"):
                mtd.write_batches(soap, list(range(8)), other, batch_size=2, quiet=True)
        assert not other.exists()
        assert _tasks_left(client) == 0

        # the store is held by a live writer
        locked = tmp_path / "locked.zarr"
        locked.mkdir()
        now = time.time()
        holder = Holder("someone", socket.gethostname(), os.getpid(), now, now, "x" * 32)
        (locked / ".lock").write_bytes(holder.encode())
        with pytest.raises(mtd.StoreLockedError):
            mtd.write_batches(soap, list(range(8)), locked, batch_size=2, quiet=True)
        assert sorted(os.listdir(locked)) == [".lock"]
        assert _tasks_left(client) == 0

    assert_equal_to_metatensor(
        mtd.open_zarr(path).compute(),
        metatensor.join(
            [renumbered(soap([0, 1]), 0), renumbered(soap([2, 3]), 2)],
            axis="samples",
            different_keys="union",
        ),
    )
