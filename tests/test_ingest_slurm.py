"""write_batches on a real SLURM (``bash .ci/slurm.sh start``): batches computed and
committed by workers in batch jobs give the same store, byte for byte, as threads."""

import os
import shlex
import uuid
from pathlib import Path

import dask
import ingest_support
import pytest
from ingest_support import soap, store_files
from slurm_support import require_module, require_slurm

import metatensor_dask as mtd

# SLURM jobs, one test at a time: the test SLURM has the 2 CPUs of this machine
pytestmark = [pytest.mark.slurm, pytest.mark.xdist_group("serial")]


def test_write_batches_on_slurm_equals_threads(tmp_path):
    require_slurm()
    jobqueue = require_module("dask_jobqueue")
    from distributed import Client

    threads = tmp_path / "threads.zarr"
    with dask.config.set(num_workers=2):
        mtd.write_batches(soap, list(range(6)), threads, batch_size=2, quiet=True)
    settings = {
        "jobqueue.slurm.interface": "lo",
        "jobqueue.slurm.scheduler-options": {
            "interface": "lo",
            "dashboard_address": "127.0.0.1:0",
        },
        "jobqueue.slurm.worker-extra-args": ["--dashboard-address", "127.0.0.1:0"],
        "jobqueue.slurm.log-directory": str(tmp_path / "logs"),
        "jobqueue.slurm.local-directory": str(tmp_path),
    }
    # the workers import the batch function from the tests, and this package's sources
    path = [str(Path(ingest_support.__file__).parent)]
    path += [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(":") if p]
    with (
        dask.config.set(settings),
        jobqueue.SLURMCluster(
            cores=1,
            processes=1,
            memory="2GiB",
            walltime="00:10:00",
            job_name=f"ingest-{uuid.uuid4().hex[:8]}",
            job_script_prologue=[f"export PYTHONPATH={shlex.quote(':'.join(path))}"],
        ) as cluster,
        Client(cluster) as client,
    ):
        cluster.scale(2)
        client.wait_for_workers(2, timeout=180)
        slurm = tmp_path / "slurm.zarr"
        mtd.write_batches(soap, list(range(6)), slurm, batch_size=2, quiet=True)
    assert store_files(slurm) == store_files(threads)
