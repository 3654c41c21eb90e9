"""write_batches on a distributed cluster sends the first batches of a new run to the
workers before the calling process imports the writer and creates the store; a refusal
found afterwards (the store exists, a setting is wrong, another writer holds the store)
still writes nothing and leaves no task on the cluster."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
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
pytestmark = pytest.mark.xdist_group("serial")

_TESTS = os.path.dirname(os.path.abspath(__file__))


def test_first_batches_are_sent_before_the_writer_is_imported(tmp_path):
    """In a fresh interpreter (nothing of the writer imported yet), every submission
    of the calling process is recorded with whether zarr was imported then: the first
    batches' computations go out before it, their commits after."""
    store = tmp_path / "t.zarr"
    code = f"""
        import json, sys
        sys.path.insert(0, {_TESTS!r})
        from distributed import Client, LocalCluster
        from ingest_support import soap
        import metatensor_dask as mtd

        sent = []
        submit = Client.submit

        def recording(self, function, *args, **kwargs):
            name = getattr(function, "__name__", type(function).__name__)
            sent.append([name, "zarr" in sys.modules])
            return submit(self, function, *args, **kwargs)

        if __name__ == "__main__":
            with LocalCluster(
                n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0"
            ) as cluster, Client(cluster):
                Client.submit = recording
                mtd.write_batches(soap, list(range(12)), {str(store)!r}, batch_size=2, quiet=True)
            print(json.dumps(sent))
    """
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(code))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    sent = json.loads(done.stdout.strip().splitlines()[-1])
    computations = [imported for name, imported in sent if name == "call"]
    commits = [imported for name, imported in sent if name == "append_batch"]
    assert len(computations) == 6 and len(commits) == 6, sent
    # the window of 2 workers' threads: 4 batches computing before zarr is imported
    assert computations[:4] == [False] * 4, sent
    assert all(commits), sent
    first_commit = next(i for i, (name, _) in enumerate(sent) if name == "append_batch")
    assert all(imported for _, imported in sent[first_commit:]), sent

    batches = [renumbered(soap(list(range(i, i + 2))), i) for i in range(0, 12, 2)]
    expected = metatensor.join(batches, axis="samples", different_keys="union")
    assert_equal_to_metatensor(mtd.open_zarr(store).compute(), expected)


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


def test_refusals_after_the_first_batches_left_write_nothing(tmp_path):
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
