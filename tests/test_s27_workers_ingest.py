"""write_batches on a cluster whose workers die while the calling process lives: the
run finishes with metatensor's join of the renumbered batches, never hangs, and never
commits a batch twice.

Each batch reports the worker computing it (its pid, in a file) and the batches named
in ``holds`` wait for a file before returning, so that a worker is killed at a moment
the test sees: after the batch it held was committed, while the next commit waits for
a batch held elsewhere.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import metatensor
import numpy as np
import pytest
from ingest_support import renumbered

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

# LocalClusters of worker processes: one such test at a time (2 cores)
pytestmark = pytest.mark.xdist_group("serial")

#: Seconds a run may take before it is taken for hung.
HUNG = 40


def labels(names: list[str], rows: Any) -> metatensor.Labels:
    return metatensor.Labels(names, np.array(rows, dtype=np.int32).reshape(-1, len(names)))


def batch(items: list[int]) -> metatensor.TensorMap:
    """Two keys whose blocks have 1 to 3 atoms per item (a key may have none in a
    batch), components and positions gradients, values seeded by the items."""
    keys, blocks = [], []
    for key in (0, 1):
        rows = [(i, a) for i, item in enumerate(items) for a in range((item + key) % 3)]
        if not rows:
            continue
        random = np.random.default_rng([key, *items])
        block = metatensor.TensorBlock(
            random.normal(size=(len(rows), 3, 4)),
            labels(["system", "atom"], rows),
            [labels(["c"], range(3))],
            labels(["p"], range(4)),
        )
        gradient = metatensor.TensorBlock(
            random.normal(size=(len(rows), 3, 3, 4)),
            labels(["sample", "system", "atom"], [(s, row[0], 0) for s, row in enumerate(rows)]),
            [labels(["xyz"], range(3)), labels(["c"], range(3))],
            block.properties,
        )
        block.add_gradient("positions", gradient)
        keys.append(key)
        blocks.append(block)
    return metatensor.TensorMap(labels(["k"], keys), blocks)


def held(folder: str, holds: frozenset[int], items: list[int]) -> metatensor.TensorMap:
    """:func:`batch`, its pid written to ``started-<first item>`` first; a batch whose
    first item is in ``holds`` returns once ``go-<first item>`` exists."""
    (Path(folder) / f"started-{items[0]}").write_text(str(os.getpid()))
    while items[0] in holds and not (Path(folder) / f"go-{items[0]}").exists():
        time.sleep(0.01)
    return batch(items)


def expected(n_items: int, size: int) -> metatensor.TensorMap:
    batches = [
        renumbered(batch(list(range(start, min(start + size, n_items)))), start)
        for start in range(0, n_items, size)
    ]
    return metatensor.join(batches, axis="samples", different_keys="union")


def committed(path: Path) -> int:
    """Batches committed to the store at ``path`` (-1 before it exists)."""
    try:
        root = json.loads((path / "zarr.json").read_bytes())
    except FileNotFoundError:
        return -1
    return root["attributes"]["metatensor_dask"]["batches"]["committed"]


def until(found: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + HUNG
    while not (value := found()):
        assert time.monotonic() < deadline, what
        time.sleep(0.02)
    return value


@contextlib.contextmanager
def running(function: Callable, n_items: int, path: Path, **options: Any) -> Iterator[list]:
    """``write_batches`` in a thread; yields the list its error goes to, and fails when
    it has not ended :data:`HUNG` seconds after the block."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            mtd.write_batches(function, list(range(n_items)), path, quiet=True, **options)
        except Exception as error:
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield errors
    thread.join(HUNG)
    assert not thread.is_alive(), "write_batches hung after a worker was killed"


def fixed_port_cluster(ports: list[int]):
    """Two worker processes (nannies) that come back at the same address once killed,
    as workers given a port do."""
    from distributed import Nanny, Scheduler, SpecCluster

    workers = {
        f"w{i}": {"cls": Nanny, "options": {"nthreads": 1, "worker_port": port}}
        for i, port in enumerate(ports)
    }
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": "127.0.0.1:0"}}
    return SpecCluster(workers=workers, scheduler=scheduler)


def free_ports(count: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(count)]
    with contextlib.ExitStack() as stack:
        for each in sockets:
            stack.enter_context(each)
            each.bind(("127.0.0.1", 0))
        return [each.getsockname()[1] for each in sockets]


def worker_pids(client: Any) -> set[int] | None:
    """The pids of the workers, ``None`` while one dies (``client.run`` fails)."""
    try:
        return set(client.run(os.getpid).values())
    except OSError:
        return None


def kill_after_first_commit(tmp_path: Path, client: Any, n_items: int) -> list:
    """Batch 0 and 1 go to one worker each (a window of 2); batch 1 waits. Once batch 0
    is committed, its worker is killed, then batch 1 let go: the commit of batch 1
    needs the root that the commit of batch 0 returned, which left with the worker.
    Returns the run's errors."""
    path = tmp_path / "t.zarr"
    function = functools.partial(held, str(tmp_path), frozenset({1}))
    with running(function, n_items, path, batch_size=1, window=2) as errors:
        until(lambda: committed(path) >= 1, "batch 0 was not committed")
        pid = int((tmp_path / "started-0").read_text())
        assert pid in worker_pids(client)
        os.kill(pid, signal.SIGKILL)
        until(lambda: pid not in (worker_pids(client) or {pid}), "the worker did not leave")
        (tmp_path / "go-1").touch()
    return errors


def test_a_worker_killed_after_its_commit_does_not_hang_the_run(tmp_path):
    """The worker comes back at another address: the commit that needed the root held
    there waited for it forever."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address="127.0.0.1:0"
        ) as local,
        Client(local) as client,
    ):
        errors = kill_after_first_commit(tmp_path, client, 5)
    assert errors == []
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "t.zarr").compute(), expected(5, 1))
    assert mtd.verify(tmp_path / "t.zarr").ok


def test_a_worker_back_at_its_address_commits_no_batch_twice(tmp_path):
    """The worker comes back at its address: the scheduler ran the lost commit again,
    which read the store's root (batch 0 in it) and appended batch 0 a second time."""
    from distributed import Client

    with fixed_port_cluster(free_ports(2)) as cluster, Client(cluster) as client:
        client.wait_for_workers(2)
        errors = kill_after_first_commit(tmp_path, client, 5)
    assert errors == []
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "t.zarr").compute(), expected(5, 1))
    assert mtd.verify(tmp_path / "t.zarr").ok
