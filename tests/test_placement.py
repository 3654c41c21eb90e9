"""Tasks of the same rows of co-partitioned arrays run on the same worker of a cluster."""

import os

import dask
import dask.array as da
import numpy as np
import pytest
from distributed import wait

from metatensor_dask.execution._placement import row_positions
from metatensor_dask.execution.cluster import WORKER_ENVIRONMENT, execution


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
    with execution("local", workers=1) as where:
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


def test_rows_stay_on_one_worker(no_slurm_env):
    """Chunk ``i`` of two arrays read independently (different chunks, as the values and
    a gradient stored on their own grid) and of what combines them are on one worker."""
    rows = np.arange(160.0).reshape(80, 2)
    with execution("local", workers=2) as where:
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


def test_user_restrictions_are_kept(no_slurm_env):
    with execution("local", workers=2) as where:
        workers = sorted(where.client.scheduler_info()["workers"])
        array = da.from_array(np.arange(40.0), chunks=5, name="restricted-x") + 1
        with dask.annotate(workers=[workers[1]]):
            persisted = where.client.persist(array)
        wait(persisted)
        holders = where.client.who_has(persisted)
        assert {w for found in holders.values() for w in found} == {workers[1]}
