"""write_batches on a cluster whose workers die while the calling process lives: the
run finishes with metatensor's join of the renumbered batches, never hangs, and never
commits a batch twice.

Each batch reports the worker computing it (its pid, in a file) and the batches named
in ``holds`` wait for a file before returning, so that a worker is killed at a moment
the test sees: after the batch it held was committed, while the next commit waits for
a batch held elsewhere.

The worker processes of the clusters are forked from a server that imported their
modules once (``forked_workers``), their restarts too.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dask
import metatensor
import numpy as np
import pytest
from forked_workers import forked_workers
from ingest_support import RESTARTS_WAITED_FOR, closed_patiently, renumbered

import metatensor_dask as mtd
from metatensor_dask.errors import MetatensorDaskError
from metatensor_dask.testing import assert_equal_to_metatensor

# LocalClusters of worker processes: one such test at a time (2 cores)
pytestmark = pytest.mark.xdist_group("clusters")

#: Seconds a run may take before it is taken for hung: generous, since on a loaded
#: machine (load average 11 on 2 cores) a batch that kills four workers in turn, each
#: restarted by its nanny, took 37 s to fail (8 s on a quiet one).
HUNG = 120


@pytest.fixture(scope="module", autouse=True)
def _workers_forked() -> Iterator[None]:
    """The worker processes of this module's clusters, and those their nannies restart
    after a test kills them, forked (see ``forked_workers``): each took seconds to start
    as a new interpreter."""
    with forked_workers():
        yield


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


@contextlib.contextmanager
def local_cluster(**settings: Any) -> Iterator[Any]:
    """A client of a new LocalCluster of 2 worker processes, under dask ``settings``."""
    from distributed import Client, LocalCluster

    with (
        dask.config.set({**RESTARTS_WAITED_FOR, **settings}),
        closed_patiently(
            LocalCluster(
                n_workers=2, processes=True, threads_per_worker=1, dashboard_address="127.0.0.1:0"
            ),
            HUNG,
        ) as local,
        Client(local) as client,
    ):
        yield client


def restarted(client: Any, cluster: Any) -> bool:
    """Whether the worker of each nanny of ``cluster`` that has one, or is starting one,
    is connected (a nanny restarts the worker it lost)."""
    from distributed.core import Status

    pids = worker_pids(client)
    return pids is not None and all(
        nanny.pid in pids
        for nanny in cluster.workers.values()
        if nanny.process is not None and nanny.process.status in (Status.starting, Status.running)
    )


def eventually(found: Callable[[], Any]) -> bool:
    """Whether ``found()`` became true within :data:`HUNG` seconds."""
    deadline = time.monotonic() + HUNG
    while not found():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture(scope="module")
def two_workers() -> Iterator[Any]:
    """A LocalCluster of 2 worker processes shared by the tests that kill one of its
    workers with dask's default settings (starting one takes seconds): each gets it
    with both workers connected (see :func:`killing_client`)."""
    from distributed import LocalCluster

    with dask.config.set(RESTARTS_WAITED_FOR):
        cluster = LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address="127.0.0.1:0"
        )
        with closed_patiently(cluster, HUNG) as local:
            yield local


@pytest.fixture
def killing_client(two_workers: Any) -> Iterator[Any]:
    """A client of :func:`two_workers`, closed once the workers killed by the test are
    back (see :func:`restarted`): the next test starts on two workers."""
    from distributed import Client

    with Client(two_workers) as client:
        client.wait_for_workers(2)
        yield client
        assert eventually(lambda: restarted(client, two_workers)), "a killed worker is not back"


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


def test_a_worker_killed_after_its_commit_does_not_hang_the_run(tmp_path, killing_client):
    """The worker comes back at another address: the commit that needed the root held
    there waited for it forever."""
    errors = kill_after_first_commit(tmp_path, killing_client, 5)
    assert errors == []
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "t.zarr").compute(), expected(5, 1))
    assert mtd.verify(tmp_path / "t.zarr").ok


def test_a_worker_back_at_its_address_commits_no_batch_twice(tmp_path):
    """The worker comes back at its address: the scheduler ran the lost commit again,
    which read the store's root (batch 0 in it) and appended batch 0 a second time."""
    from distributed import Client

    with (
        dask.config.set(RESTARTS_WAITED_FOR),
        closed_patiently(fixed_port_cluster(free_ports(2)), HUNG) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(2)
        errors = kill_after_first_commit(tmp_path, client, 5)
    assert errors == []
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "t.zarr").compute(), expected(5, 1))
    assert mtd.verify(tmp_path / "t.zarr").ok


def crashing(bad: int, items: list[int]) -> metatensor.TensorMap:
    """:func:`batch`, but the process computing item ``bad`` exits at once."""
    if bad in items:
        os._exit(1)
    return batch(items)


def test_a_batch_that_kills_its_workers_fails_naming_it_and_resume_completes(tmp_path):
    """A batch whose worker dies each time (its memory limit exceeded, a crash) was
    computed again on a new worker forever, which killed them all in turn: it fails
    once distributed's allowed failures are exceeded, naming the batch, the cause and
    the remedy, and a resume with a fixed function completes the store."""
    path = tmp_path / "t.zarr"
    with local_cluster():
        function = functools.partial(crashing, 2)
        with running(function, 5, path, batch_size=1) as errors:
            pass
        (error,) = errors
        assert isinstance(error, MetatensorDaskError)
        message = str(error)
        # batch 2 kills its worker; batches 0 and 1, sent to the same worker and not
        # yet committed (under load), are lost with it each time: the deaths may be
        # counted against them too, and the run may stop naming one of them first (a
        # known limitation: the batch named is one the deaths hit, never a later one
        # than the batch that kills)
        named = re.search(r"batch (\d) \(items \1 to \1, first item \1\) failed", message)
        assert named is not None and named.group(1) in ("0", "1", "2"), message
        # counted here, or by distributed for a batch sent to no worker in particular
        # (none was running when it was sent again), which counts a death against
        # every batch the worker held: the message then says a later batch may kill
        assert re.search("died 4 times .*allowed-failures=3|on 4 different workers", message)
        if "on 4 different workers" in message:
            assert "this batch or a later one computed by the same worker" in message
        assert "memory limit" in message and "resume=True" in message
        assert committed(path) <= int(named.group(1))  # the batches before it, at most
    # a new job's cluster: under load, the nannies of workers killed four times may not
    # restart them, and on a cluster without workers dask waits for some forever
    with local_cluster(), running(batch, 5, path, batch_size=1, resume=True) as resumed:
        pass
    assert resumed == []
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), expected(5, 1))


def wait_once(folder: str, values: np.ndarray) -> np.ndarray:
    """``values``; the first call writes its pid to ``committing`` and waits for
    ``go-commit``."""
    mark = Path(folder) / "committing"
    if not mark.exists():
        mark.write_text(str(os.getpid()))
        while not (Path(folder) / "go-commit").exists():
            time.sleep(0.01)
    return values


def lazily_held(folder: str, hold: int, items: list[int]) -> mtd.TensorMap:
    """:func:`batch` as a metatensor-dask TensorMap whose values are computed by the
    commit of the batch; those of the batch of item ``hold`` wait (see
    :func:`wait_once`): the worker holding it is then in the middle of a commit."""
    import dask.array

    core = batch(items)
    blocks = []
    # (the values from metatensor: computing a dask array in a task of a worker would
    # send its tasks to the cluster)
    for source, block in zip(core.blocks(), mtd.from_metatensor(core).blocks(), strict=True):
        values = np.array(source.values)
        if items[0] == hold:
            delayed = dask.delayed(wait_once)(folder, values)
            values = dask.array.from_delayed(delayed, values.shape, values.dtype)
        new = mtd.TensorBlock(values, block.samples, block.components, block.properties)
        for parameter, gradient in block.gradients():
            new.add_gradient(parameter, gradient)
        blocks.append(new)
    return mtd.TensorMap(mtd.Labels(core.keys.names, np.array(core.keys.values)), blocks)


def test_a_worker_killed_in_the_middle_of_a_commit_loses_nothing(tmp_path, killing_client):
    """The worker committing batch 1 is killed after planning it: the batch is computed
    again elsewhere and committed once."""
    path = tmp_path / "t.zarr"
    function = functools.partial(lazily_held, str(tmp_path), 1)
    client = killing_client
    with running(function, 5, path, batch_size=1) as errors:
        pid = int(until(lambda: read(tmp_path / "committing"), "batch 1 was not committed"))
        assert committed(path) == 1
        os.kill(pid, signal.SIGKILL)
        until(lambda: pid not in (worker_pids(client) or {pid}), "the worker did not leave")
        (tmp_path / "go-commit").touch()
    assert errors == []
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), expected(5, 1))
    assert mtd.verify(path).ok


def read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


@pytest.mark.parametrize("stalled", ["under", "beyond"])
def test_a_worker_stopped_longer_than_the_lock_timeout(tmp_path, stalled):
    """The worker committing batch 1 is stopped (SIGSTOP) longer than the lock timeout,
    then let go (SIGCONT): before distributed takes it for dead, the run waits for it;
    beyond that, distributed restarts it and the run goes on without it. Either way the
    store is metatensor's join, each batch once."""
    path = tmp_path / "t.zarr"
    function = functools.partial(lazily_held, str(tmp_path), 1)
    settings = {"metatensor_dask.lock-timeout": 1, "distributed.scheduler.worker-ttl": "1s"}
    with local_cluster(**settings) as client, running(function, 5, path, batch_size=1) as errors:
        pid = int(until(lambda: read(tmp_path / "committing"), "batch 1 was not committed"))
        os.kill(pid, signal.SIGSTOP)
        (tmp_path / "go-commit").touch()
        if stalled == "under":
            time.sleep(2)
        else:
            until(lambda: pid not in (worker_pids(client) or {pid}), "the worker was not left")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    assert errors == []
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), expected(5, 1))
    assert mtd.verify(path).ok


def test_a_worker_killed_computing_the_first_batch_loses_nothing(tmp_path, killing_client):
    """The worker computing batch 0 (sent before the store existed, with the batches
    after it) is killed: its batches are computed again elsewhere, their commits
    pinned to the worker holding them then."""
    path = tmp_path / "t.zarr"
    function = functools.partial(held, str(tmp_path), frozenset({0}))
    client = killing_client
    with running(function, 7, path, batch_size=1, window=4) as errors:
        pid = int(until(lambda: read(tmp_path / "started-0"), "batch 0 did not start"))
        (tmp_path / "started-0").unlink()
        os.kill(pid, signal.SIGKILL)
        until(lambda: pid not in (worker_pids(client) or {pid}), "the worker did not leave")
        (tmp_path / "go-0").touch()
    assert errors == []
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), expected(7, 1))
    assert mtd.verify(path).ok


def computed(client: Any) -> int:
    """The batches held by the workers (the tasks computing them are named after the
    function, a ``functools.partial``)."""
    held = client.who_has()
    return sum(1 for key, where in held.items() if str(key).startswith("partial-") and where)


def test_a_worker_lost_between_two_chains_of_appends(tmp_path, monkeypatch):
    """Chains of one append each (the append of batch 1 is submitted once batch 0 is
    committed, to the worker then holding batch 1), and rare looks at the workers: the
    worker holding batch 1 is killed while batch 0 is committed. Batch 1 is computed
    again and committed once."""
    from metatensor_dask.io import ingest_cluster

    monkeypatch.setattr(ingest_cluster, "CHAIN", 1)
    monkeypatch.setattr(ingest_cluster, "WORKERS_CHECKED", 2.0)
    path = tmp_path / "t.zarr"
    function = functools.partial(lazily_held, str(tmp_path), 0)
    options = {"batch_size": 1, "window": 2}
    with local_cluster() as client, running(function, 4, path, **options) as errors:
        committing = int(until(lambda: read(tmp_path / "committing"), "batch 0 not committed"))
        pids = until(lambda: worker_pids(client), "no workers")
        (other,) = pids - {committing}
        until(lambda: computed(client) == 2, "batch 1 was not computed")
        os.kill(other, signal.SIGKILL)
        until(lambda: other not in (worker_pids(client) or {other}), "the worker did not leave")
        (tmp_path / "go-commit").touch()
    assert errors == []
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), expected(4, 1))


def killed_while_computing(folder: Path, client: Any, action: Callable[[], Any]) -> Any:
    """``action()`` in a thread, the worker computing the held values of
    :func:`lazily_held` killed once they are reached; its result, or its error raised
    here (so that the test fails naming it, not with a later error of the thread)."""
    outcome: list[Any] = []

    def act() -> None:
        try:
            outcome.append(action())
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=act, daemon=True)
    thread.start()
    pid = int(until(lambda: read(folder / "committing"), "the held values were not reached"))
    os.kill(pid, signal.SIGKILL)
    until(lambda: pid not in (worker_pids(client) or {pid}), "the worker did not leave")
    (folder / "go-commit").touch()
    thread.join(HUNG)
    assert not thread.is_alive(), "hung after a worker was killed"
    (folder / "committing").unlink()
    (folder / "go-commit").unlink()
    (result,) = outcome
    if isinstance(result, BaseException):
        raise result
    return result


def test_writes_and_operations_survive_a_killed_worker(tmp_path, killing_client):
    """A worker killed while it computes a chunk: of to_zarr (a new store), of to_zarr
    from a store to another (an operation on a store opened lazily), of an append, and
    of an operation on a map loaded from an ``.mts`` file. distributed computes the
    chunk again elsewhere; each result equals metatensor's."""
    core = batch(list(range(6)))
    more = batch([6, 7, 8])
    source = tmp_path / "source.zarr"
    folder = str(tmp_path)
    metatensor.save(str(tmp_path / "t.mts"), core)
    client = killing_client
    lazy = lazily_held(folder, 0, list(range(6)))
    killed_while_computing(tmp_path, client, lambda: mtd.to_zarr(lazy, source, chunks=2))
    assert_equal_to_metatensor(mtd.open_zarr(source).compute(), core)

    summed = mtd.add(mtd.open_zarr(source), lazily_held(folder, 0, list(range(6))))
    copy = tmp_path / "copy.zarr"
    killed_while_computing(tmp_path, client, lambda: mtd.to_zarr(summed, copy))
    assert_equal_to_metatensor(mtd.open_zarr(copy).compute(), metatensor.add(core, core))

    appended = lazily_held(folder, 6, [6, 7, 8])
    killed_while_computing(
        tmp_path,
        client,
        lambda: mtd.to_zarr(appended, source, append_dim="samples", renumber={"system": 6}),
    )
    joined = metatensor.join([core, renumbered(more, 6)], axis="samples", different_keys="union")
    assert_equal_to_metatensor(mtd.open_zarr(source).compute(), joined)
    assert mtd.verify(source).ok

    loaded = mtd.load(tmp_path / "t.mts")
    product = mtd.multiply(loaded, lazily_held(folder, 0, list(range(6))))
    found = killed_while_computing(tmp_path, client, product.compute)
    assert_equal_to_metatensor(found, metatensor.multiply(core, core))
