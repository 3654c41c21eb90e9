"""`submit` with worker memory limits that add up to more than the job's memory: the
batch system kills such a job once its workers use what they are allowed, before they
spill to disk. It is refused before anything is written or submitted."""

import pytest
from pipeline_support import PIPELINE, RADIAL, run, write_pipeline


@pytest.fixture
def pipeline(tmp_path):
    return write_pipeline(tmp_path, PIPELINE, input=RADIAL, output="out.zarr")


@pytest.mark.parametrize(
    ("options", "shown"),
    [
        (["--mem", "2G", "--memory-limit", "3GiB"], "--memory-limit 3GiB is more"),
        (["--mem", "2000", "--memory-limit", "2GiB"], "(--mem 2000)"),
        (
            ["--mem", "4G", "--workers", "3", "--memory-limit", "1.5GiB"],
            "--memory-limit 1.5GiB for each of 3 workers",
        ),
        (["--mem", "1024K", "--memory-limit", "2MiB"], "(--mem 1024K)"),
    ],
)
def test_worker_limits_above_the_job_memory_are_refused(capsys, tmp_path, pipeline, options, shown):
    code, out, err = run(capsys, "submit", pipeline, "--dry-run", *options)
    assert code == 2
    assert shown in err
    assert "lower --memory-limit or raise --mem" in err
    assert out == ""


@pytest.mark.parametrize(
    "options",
    [
        ["--mem", "4G", "--memory-limit", "4GiB"],
        ["--mem", "4096", "--workers", "2", "--memory-limit", "2GiB"],
        ["--mem", "1T", "--memory-limit", "900GiB"],
        ["--mem", "2G"],
        ["--memory-limit", "64GiB"],
    ],
)
def test_worker_limits_within_the_job_memory_are_written(capsys, pipeline, options):
    code, out, err = run(capsys, "submit", pipeline, "--dry-run", *options)
    assert code == 0, err
    assert "metatensor_dask run" in out
    if "--memory-limit" in options:
        limit = options[options.index("--memory-limit") + 1]
        assert f"--memory-limit {limit}" in out
