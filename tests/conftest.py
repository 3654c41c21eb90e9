"""Shared test settings: hypothesis profiles (CI runs fewer examples; ``thorough``, by
hand, many more: ``HYPOTHESIS_PROFILE=thorough``)."""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "dev", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def pytest_configure(config: pytest.Config) -> None:
    """Refuse ``--dist loadgroup`` where it would not keep a group on one worker:
    pytest-xdist 3.8 marks a grouped test by a suffix of its node id, which pytest 9.2
    no longer takes (its ``nodeid`` is computed afresh), so that the tests marked
    ``xdist_group("serial")`` (clusters, killed processes, SLURM) would run side by
    side. The test extra asks for a pytest before 9.2."""
    if getattr(config.option, "dist", None) == "loadgroup" and pytest.version_tuple[:2] >= (9, 2):
        raise pytest.UsageError(
            f"pytest {pytest.__version__} ignores pytest-xdist's xdist_group: the serial "
            "tests would run side by side; install the test extra's pytest "
            "(pip install -e '.[test]')"
        )


@pytest.fixture(scope="module")
def two_worker_processes():
    """A LocalCluster of 2 worker processes (one thread each), shared by the tests of a
    module whose runs leave its workers alive, each connecting a client of its own
    (starting one takes a few seconds)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0") as local:
        yield local


@pytest.fixture(scope="module")
def client():
    """A ``distributed`` client of a cluster in this process (one worker, two threads),
    shared by the tests of a module."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as connected,
    ):
        yield connected
