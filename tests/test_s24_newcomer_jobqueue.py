"""Job sizes of dask-jobqueue settings that are not whole numbers are named."""

import dask
import pytest

from metatensor_dask.execution._directives import JobOptionError
from metatensor_dask.execution.cluster import jobqueue_cluster


@pytest.mark.parametrize("key", ["cores", "processes"])
@pytest.mark.parametrize("value", ["abc", 0, 2.5, True])
def test_a_job_size_that_is_not_a_whole_number_is_named(key, value):
    settings = {"cores": 2, "memory": "4GiB", key: value}
    with dask.config.set({f"jobqueue.pbs.{name}": v for name, v in settings.items()}):
        with pytest.raises(JobOptionError) as error:
            jobqueue_cluster("pbs")
    assert f"jobqueue.pbs.{key} must be a positive whole number, got {value!r}" in str(error.value)
