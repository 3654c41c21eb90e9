"""The real single-machine SLURM (``bash .ci/slurm.sh start``) works, also through dask-jobqueue.

These tests skip without SLURM, but fail when the ``CI`` environment variable is set.
"""

import os
import sys
import time

import pytest
from slurm_support import require_module, require_slurm, sh

# SLURM jobs, one test at a time: the test SLURM has the 2 CPUs of this machine
pytestmark = [pytest.mark.slurm, pytest.mark.xdist_group("slurm")]

# generous: the first batch job after slurmctld starts waits ~3 s for the scheduler
JOB_TIMEOUT = 120


@pytest.fixture(autouse=True)
def _slurm():
    require_slurm()


def running_job_ids() -> set[str]:
    return set(sh("squeue", "--noheader", "--states=RUNNING", "--format=%i").split())


def test_sinfo_shows_a_usable_node():
    lines = sh("sinfo", "--noheader", "--Node", "--format=%N %P %T %c %m").splitlines()
    assert lines, "sinfo lists no node"
    name, partition, state, cpus, memory_mb = lines[0].split()
    assert partition.rstrip("*"), lines
    assert state in {"idle", "mixed", "allocated"}, f"node {name} is {state}"
    assert int(cpus) >= 1
    assert int(memory_mb) >= 2048, "the dask-jobqueue test asks for --mem=2G per job"


def test_sbatch_wait_runs_a_job_that_writes_a_file(tmp_path):
    options = ["--wait", "--parsable", "--job-name=mtd-sbatch-test", "--time=1"]
    options += [f"--chdir={tmp_path}", f"--output={tmp_path / 'job.out'}"]
    script = 'echo "$SLURM_JOB_ID $(hostname -s)" > result.txt'
    job_id = sh("sbatch", *options, "--wrap", script, timeout=JOB_TIMEOUT).strip()
    assert job_id.isdigit(), job_id
    written_id, host = (tmp_path / "result.txt").read_text().split()
    assert written_id == job_id
    assert host == os.uname().nodename.split(".")[0]


def test_slurm_cluster_runs_dask_array_on_two_jobs(tmp_path):
    require_module("dask_jobqueue")
    import dask.array as da
    from dask_jobqueue import SLURMCluster
    from distributed import Client

    cluster = SLURMCluster(
        cores=1,
        processes=1,
        memory="2GB",
        walltime="00:05:00",
        queue="debug",
        job_name="mtd-dask-test",
        interface="lo",  # workers listen on loopback only
        scheduler_options={"interface": "lo", "dashboard_address": "127.0.0.1:0"},
        worker_extra_args=["--dashboard-address", "127.0.0.1:0"],
        python=sys.executable,  # the "compute node" is this machine: same venv
        local_directory=str(tmp_path / "dask-worker-space"),
        log_directory=str(tmp_path / "logs"),
    )
    try:
        assert "#SBATCH --cpus-per-task=1" in cluster.job_script()
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        with Client(cluster) as client:
            cluster.scale(jobs=2)
            client.wait_for_workers(2, timeout=JOB_TIMEOUT)

            # each worker lives in its own SLURM job, which squeue shows RUNNING
            worker_jobs = client.run(lambda: os.environ.get("SLURM_JOB_ID"))
            job_ids = set(worker_jobs.values())
            assert len(worker_jobs) == 2 and len(job_ids) == 2, worker_jobs
            assert job_ids == {job.job_id for job in cluster.workers.values()}
            assert job_ids <= running_job_ids()

            n = 1_000_000
            x = da.arange(n, chunks=n // 10, dtype="int64")
            total, squares = client.compute([x.sum(), (x * x).sum()], sync=True)
            assert total == n * (n - 1) // 2
            assert squares == (n - 1) * n * (2 * n - 1) // 6
    finally:
        cluster.close()

    # cluster.close() scancels the jobs; they must leave the queue promptly
    deadline = time.monotonic() + 30
    while job_ids & running_job_ids() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not job_ids & running_job_ids()
