"""Tasks of the same rows of co-partitioned arrays run on the same worker of a cluster."""

import os

import dask
import dask.array as da
import numpy as np
import pytest
from distributed import wait
from distributed.diagnostics.plugin import SchedulerPlugin
from forked_workers import forked_workers

from metatensor_dask.execution._placement import Pacing, RowPlacement, row_positions
from metatensor_dask.execution.cluster import WORKER_ENVIRONMENT, execution

# LocalClusters of worker processes: one such test at a time (2 cores)
pytestmark = pytest.mark.xdist_group("clusters")


@pytest.fixture
def no_slurm_env(monkeypatch):
    for name in ("SLURM_CPUS_ON_NODE", "SLURM_MEM_PER_NODE", "NCPUS"):
        monkeypatch.delenv(name, raising=False)


def test_row_positions():
    keys = [
        ("a-1", 0, 0),
        ("a-1", 2, 1),
        ("b-2", 0),
        ("rechunk-split-3", 5),
        "zarr-complete-4",
        ("c-5", "x"),
    ]
    assert row_positions(keys) == {("a-1", 0, 0): (0, 3), ("a-1", 2, 1): (2, 3), ("b-2", 0): (0, 1)}


def _workers_environment(names: list[str]) -> list[dict[str, str | None]]:
    """The values of the environment variables ``names`` in the worker processes of a
    new local cluster, started as new interpreters (a forked process keeps the memory
    allocator its server started with)."""
    spawned = {"distributed.worker.multiprocessing-method": "spawn"}
    with dask.config.set(spawned), execution("local", workers=1) as where:
        found = where.client.run(lambda: {name: os.environ.get(name) for name in names})
    return list(found.values())


def test_local_workers_environment(no_slurm_env, monkeypatch):
    # distributed writes the pre-spawn environment of every nanny it starts into this
    # process's environment, where it then wins over the configuration
    for name in WORKER_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": {"MTD_TEST_KEPT": "yes"}}):
        found = _workers_environment([*WORKER_ENVIRONMENT, "MTD_TEST_KEPT"])
    assert found == [{**WORKER_ENVIRONMENT, "MTD_TEST_KEPT": "yes"}]


def test_process_environment_wins(no_slurm_env, monkeypatch):
    """A value set in the environment is the user's choice, as for distributed."""
    for name in WORKER_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    found = _workers_environment(list(WORKER_ENVIRONMENT))
    assert found == [{**WORKER_ENVIRONMENT, "MALLOC_ARENA_MAX": "4"}]


def test_rows_stay_on_one_worker(where):
    """Chunk ``i`` of two arrays read independently (different chunks, as the values and
    a gradient stored on their own grid) and of what combines them are on one worker."""
    rows = np.arange(160.0).reshape(80, 2)
    values = da.from_array(rows, chunks=(10, 2), name="values-x")
    # stored on another grid: each task of `combined` joins pieces of two chunks
    gradient = da.from_array(3 * rows, chunks=(16, 2), name="gradient-x").rechunk((10, 2))
    combined = values * gradient + 1
    persisted = where.client.persist([values, gradient, combined])
    wait(persisted)
    holders = where.client.who_has(persisted)
    names = [array.name for array in persisted]
    workers = [[holders[(name, i, 0)] for name in names] for i in range(8)]
    for i, found in enumerate(workers):
        assert found[0] == found[1] == found[2], f"chunk {i} on {found}"
    # contiguous halves of the rows, one per worker
    first = [w[0][0] for w in workers]
    assert first[:4] == [first[0]] * 4 and first[4:] == [first[4]] * 4
    assert first[0] != first[4]
    np.testing.assert_array_equal(dask.compute(persisted[2])[0], 3 * rows * rows + 1)


def test_user_restrictions_are_kept(where):
    workers = sorted(where.client.scheduler_info()["workers"])
    array = da.from_array(np.arange(40.0), chunks=5, name="restricted-x") + 1
    with dask.annotate(workers=[workers[1]]):
        persisted = where.client.persist(array)
    wait(persisted)
    holders = where.client.who_has(persisted)
    assert {w for found in holders.values() for w in found} == {workers[1]}


class RootsInMemory(SchedulerPlugin):
    """Counts, per worker, the results of tasks of ``name`` held at once (the most)."""

    name = "test-roots-in-memory"

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.held: dict[str, set] = {}
        self.most: dict[str, int] = {}
        self.where: dict = {}
        self.scheduler = None
        self.kept_back = 0

    def transition(self, key, start, finish, *args, **kwargs):
        if not (isinstance(key, tuple) and key[0].startswith(self.prefix)):
            return
        self.kept_back += finish == "no-worker"
        if finish == "memory":
            worker = next(iter(self.scheduler.tasks[key].who_has)).address
            self.where[key] = worker
            self.held.setdefault(worker, set()).add(key)
            self.most[worker] = max(self.most.get(worker, 0), len(self.held[worker]))
        elif start == "memory" and key in self.where:
            self.held[self.where.pop(key)].discard(key)


def _chain(rows: int, chunk: int, name: str):
    """Root tasks (``name``) each feeding a chain of three tasks, then a sum."""
    x = da.ones((rows, 1000), chunks=(chunk, 1000), name=name)
    for factor in (2.0, 3.0, 5.0):
        x = x.map_blocks(np.multiply, factor, dtype=float)
    return x.sum()


def _replace_placement(where, placement: RowPlacement) -> None:
    with pytest.warns(UserWarning, match="overwriting"):
        where.client.register_plugin(placement)


def _observe(where, prefix: str) -> RootsInMemory:
    scheduler = where.client.cluster.scheduler
    observer = RootsInMemory(prefix)
    observer.scheduler = scheduler
    scheduler.add_plugin(observer)
    return observer


@pytest.fixture(scope="module")
def two_workers():
    """A LocalCluster of 2 workers started by ``execution`` (its placement plugin, the
    workers' settings), shared by the tests that leave both workers running: starting
    one took a few seconds per test. See :func:`where`. Its worker processes are forked
    (see ``forked_workers``), as are those of the tests that start a cluster of their
    own but for the tests of the workers' environment (new interpreters, as users'
    workers are)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name in ("SLURM_CPUS_ON_NODE", "SLURM_MEM_PER_NODE", "NCPUS"):
            monkeypatch.delenv(name, raising=False)
        with forked_workers(), execution("local", workers=2) as started:
            yield started


@pytest.fixture
def where(two_workers):
    """The shared cluster as ``execution`` leaves it: a new default placement plugin
    (a test may replace it), and the observer of the test before removed."""
    _replace_placement(two_workers, RowPlacement())
    yield two_workers
    scheduler = two_workers.client.cluster.scheduler
    if RootsInMemory.name in scheduler.plugins:
        scheduler.remove_plugin(name=RootsInMemory.name)


def test_roots_released_a_few_at_a_time(where):
    """Each worker holds a bounded number of root results, however many roots it has."""
    _replace_placement(where, RowPlacement(Pacing(fraction=0.0)))
    observer = _observe(where, "ones-paced")
    total = _chain(4000, 100, "ones-paced")
    result = where.client.compute(total, optimize_graph=False).result()
    assert result == 4000 * 1000 * 30.0
    # 20 roots per worker, one thread each: one active root, and one more when the
    # worker has nothing else to run
    assert len(observer.most) == 2
    assert max(observer.most.values()) <= 2, observer.most
    assert observer.kept_back == 40


def test_roots_left_to_their_worker_without_pacing(where):
    """The same graph, every root sent at once: the reads run ahead (what pacing is for;
    this checks that the test above can fail)."""
    _replace_placement(where, RowPlacement(False))
    observer = _observe(where, "ones-unpaced")
    total = _chain(4000, 100, "ones-unpaced")
    result = where.client.compute(total, optimize_graph=False).result()
    assert result == 4000 * 1000 * 30.0
    assert max(observer.most.values()) > 2, observer.most


def test_no_pacing_where_tasks_without_worker_fail(no_slurm_env):
    """A scheduler that fails tasks left in ``no-worker`` for a time would fail held
    roots: nothing is held there."""
    with (
        dask.config.set({"distributed.scheduler.no-workers-timeout": "1s"}),
        forked_workers(),
        execution("local", workers=2) as where,
    ):
        observer = _observe(where, "ones-timeout")
        total = _chain(4000, 100, "ones-timeout")
        result = where.client.compute(total, optimize_graph=False).result()
    assert result == 4000 * 1000 * 30.0
    assert observer.kept_back == 0


def test_task_needing_many_held_roots(where):
    """A task combining more roots than pacing lets a worker hold still runs: a worker
    with nothing to run gets its next root."""
    _replace_placement(where, RowPlacement(Pacing(fraction=0.0)))
    x = da.ones(4000, chunks=100, name="ones-many") * 3.0
    total = x.sum(split_every=40)
    assert where.client.compute(total).result(timeout=60) == 12000.0


def test_held_roots_resubmitted_after_cancel(where):
    total = _chain(4000, 100, "ones-cancelled")
    future = where.client.compute(total, optimize_graph=False)
    future.cancel()
    again = where.client.compute(total, optimize_graph=False)
    assert again.result(timeout=60) == 4000 * 1000 * 30.0


def test_held_roots_of_a_retired_worker(no_slurm_env):
    """What was kept back for a worker that leaves runs on the others."""
    with forked_workers(), execution("local", workers=2) as where:
        _replace_placement(where, RowPlacement(Pacing(fraction=0.0)))
        workers = sorted(where.client.scheduler_info()["workers"])
        total = _chain(4000, 100, "ones-retired")
        future = where.client.compute(total, optimize_graph=False)
        where.client.retire_workers([workers[1]])
        assert future.result(timeout=60) == 4000 * 1000 * 30.0


def _late_inputs(name: str, through: bool):
    """Chunks of ``name``-big each joined with a small chunk of another root array (or
    a task computed from it when ``through``), which the graph's order (a lower user
    priority) puts after every chunk of ``name``-big."""
    x = da.ones((4000, 1000), chunks=(100, 1000), name=f"{name}-big")
    with dask.annotate(priority=-100):
        small = da.ones((4000, 1), chunks=(100, 1), name=f"{name}-small")
        if through:
            small = small.map_blocks(np.add, 0.0, dtype=float)
    return (x * small).map_blocks(np.multiply, 2.0, dtype=float).sum()


@pytest.mark.parametrize(
    ("with_rule", "through"), [(True, False), (True, True), (False, False), (False, True)]
)
def test_inputs_kept_back_released_with_their_data(where, with_rule, through):
    """A chunk in memory whose task waits only for a kept-back root (directly, or
    through one task) gets that root first: each worker holds a few chunks, not all
    those read before the late roots. The same graph, that rule switched off, holds
    many (the test can fail)."""
    pacing = Pacing(fraction=0.0)
    if not with_rule:
        pacing.needed = lambda ts: {}  # type: ignore[method-assign]
    _replace_placement(where, RowPlacement(pacing))
    name = f"ones-late-{with_rule}-{through}"
    observer = _observe(where, f"{name}-big")
    total = where.client.compute(_late_inputs(name, through), optimize_graph=False).result()
    assert total == 4000 * 1000 * 2.0
    assert len(observer.most) == 2
    if with_rule:
        assert max(observer.most.values()) <= 3, observer.most
    else:
        assert max(observer.most.values()) > 10, observer.most
