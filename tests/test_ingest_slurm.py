"""write_batches on a real SLURM (``bash .ci/slurm.sh start``): batches computed and
committed by workers in batch jobs give the same store, byte for byte, as threads, also
when the calling process is killed (its batch jobs cancelled, as when the allocation
ends) and the run is resumed by new batch jobs."""

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dask
import pytest
from ingest_support import Logged, committed_batches, slurm_client, soap, store_files
from slurm_support import require_module, require_slurm, sh

import metatensor_dask as mtd

# SLURM jobs, one test at a time: the test SLURM has the 2 CPUs of this machine
pytestmark = [pytest.mark.slurm, pytest.mark.xdist_group("slurm")]

SCRIPT = Path(__file__).with_name("ingest_support.py")


def _on_threads(path: Path, n_items: int, batch_size: int) -> dict[str, str]:
    """The files of the store ``write_batches`` writes on threads."""
    with dask.config.set(num_workers=2):
        mtd.write_batches(soap, list(range(n_items)), path, batch_size=batch_size, quiet=True)
    return store_files(path)


def _cancelled(name: str) -> None:
    """Cancel the batch jobs named ``name`` and wait until none is left."""
    sh("scancel", "--name", name)
    deadline = time.monotonic() + 120
    while sh("squeue", "--noheader", "--name", name, "--format=%i").split():
        assert time.monotonic() < deadline, f"the jobs named {name} did not end"
        time.sleep(0.3)


def test_write_batches_killed_on_slurm_resumes_on_new_jobs(tmp_path):
    """The calling process SIGKILLed once two of eight batches are committed, its batch
    jobs cancelled (the workers may be writing), then the same call with resume=True on
    new batch jobs: it computes only the batches not committed, and the store is the
    one threads write. (Every batch of that store was computed and committed by workers
    in batch jobs, some by the killed run's, the others by the resumed run's: a run on
    SLURM that nothing stops, compared with threads byte for byte, was a test of its
    own that started two more batch jobs.)"""
    require_slurm()
    require_module("dask_jobqueue")
    threads = _on_threads(tmp_path / "threads.zarr", 8, 1)
    path = tmp_path / "killed.zarr"
    name = f"killed-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "run.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, str(SCRIPT), str(path), "8", "1", "0.5", "--slurm", name],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 240
        while committed_batches(path) < 2:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the run made no progress: " + log.read_text()
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        _cancelled(name)
    committed = committed_batches(path)
    assert committed < 8, "the run ended before it was killed"
    with pytest.raises(mtd.IncompleteStoreError):
        mtd.open_zarr(path)
    computed = tmp_path / "computed.txt"
    with slurm_client(tmp_path, f"resumed-{uuid.uuid4().hex[:8]}"):
        function = Logged(str(computed))
        mtd.write_batches(function, list(range(8)), path, batch_size=1, resume=True, quiet=True)
    assert sorted(int(line) for line in computed.read_text().split()) == list(range(committed, 8))
    assert mtd.verify(path).ok
    assert store_files(path) == threads
