"""Shared test settings: hypothesis profiles (CI runs fewer examples; ``thorough``, by
hand, many more: ``HYPOTHESIS_PROFILE=thorough``), and input stores that several
modules copy instead of writing them again."""

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


@pytest.fixture(scope="session")
def featomic_store_2x12(tmp_path_factory):
    """A store of ``featomic_like(2, 12, neighbors=(4, 8), chunks=2)`` (gradients, 108
    tasks to write), written once per test process. Read-only: tests copy it
    (``shutil.copytree``) before a run writes next to it or rewrites it."""
    from metatensor_dask.datasets import featomic_like

    path = tmp_path_factory.mktemp("featomic-2x12") / "x.zarr"
    featomic_like(2, 12, neighbors=(4, 8), chunks=2).to_zarr(str(path))
    return path
