"""The scheduler of a ``local`` cluster leaves tasks on the worker of their rows."""

import pytest

from metatensor_dask.execution.cluster import execution


@pytest.fixture
def no_slurm_env(monkeypatch):
    for name in ("SLURM_CPUS_ON_NODE", "SLURM_MEM_PER_NODE", "NCPUS"):
        monkeypatch.delenv(name, raising=False)


def test_no_work_stealing(no_slurm_env):
    """Work stealing would move tasks placed with their rows, and their inputs with them."""
    with execution("local", workers=2) as where:
        assert "stealing" not in where.client.cluster.scheduler.extensions
