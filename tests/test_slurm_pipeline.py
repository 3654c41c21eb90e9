"""Pipelines on a real SLURM (``bash .ci/slurm.sh start``): workers in batch jobs, a
cancelled worker job, ``submit``, and a killed batch job resumed by a new submission.

SLURMCluster is configured through dask-jobqueue's own settings (a ``jobqueue.yaml`` in
``DASK_CONFIG``), bound to the loopback interface as this single-machine SLURM needs.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import dask
import numpy as np
import pytest
from pipeline_support import is_complete, run, wait_for_records
from slurm_support import require_module, require_slurm, sh, wait_for_job

import metatensor_dask as mtd
from metatensor_dask.datasets import featomic_like
from metatensor_dask.execution.cli import main

# SLURM jobs, one test at a time: the test SLURM has the 2 CPUs of this machine
pytestmark = [pytest.mark.slurm, pytest.mark.xdist_group("slurm")]

CLI = [sys.executable, "-m", "metatensor_dask"]
PIPELINE = """\
inputs: {x: x.zarr}
steps:
  - {op: pow, args: {B: 2}, name: squared}
  - {op: multiply, inputs: [squared, x]}
  - {op: sum_over_samples, args: {sample_names: atom}}
output: {output}
"""
TIMEOUT = 240  # seconds for one run; the first batch job after slurmctld starts waits ~3 s


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Input store, reference result (threads), and the dask-jobqueue configuration."""
    require_slurm()
    require_module("dask_jobqueue")
    directory = tmp_path_factory.mktemp("slurm")
    # ~22 MiB in 108 chunks: long enough (several seconds on two workers) to cancel a job
    # mid-run (under load 7, the job cancelled after its 20th chunk had run 23% of its tasks)
    featomic_like(2, 24, neighbors=(10, 20), chunks=4).to_zarr(str(directory / "x.zarr"))
    (directory / "reference.yaml").write_text(PIPELINE.replace("{output}", "reference.zarr"))
    assert main(["run", str(directory / "reference.yaml"), "--quiet"]) == 0
    config = directory / "dask"
    config.mkdir()
    settings = {
        "jobqueue": {
            "slurm": {
                "cores": 1,
                "processes": 1,
                "memory": "2GiB",
                "walltime": "00:10:00",
                "interface": "lo",
                "scheduler-options": {"interface": "lo", "dashboard_address": "127.0.0.1:0"},
                "worker-extra-args": ["--dashboard-address", "127.0.0.1:0"],
                "log-directory": str(directory / "logs"),
                "local-directory": str(directory),
            }
        }
    }
    (config / "jobqueue.json").write_text(json.dumps(settings))  # dask reads JSON as YAML
    return directory


def _env(workdir, job_name):
    return dict(os.environ, DASK_CONFIG=str(workdir / "dask"), DASK_JOBQUEUE__SLURM__NAME=job_name)


def _pipeline(workdir, output):
    path = workdir / f"{output}.yaml"
    path.write_text(PIPELINE.replace("{output}", output))
    return str(path)


def assert_equal_stores(workdir, output):
    reference = mtd.open_zarr(str(workdir / "reference.zarr"))
    result = mtd.open_zarr(str(workdir / output))
    assert result.keys == reference.keys
    expected, actual = dask.compute(reference._arrays(), result._arrays())
    assert len(expected) == len(actual)
    for a, b in zip(expected, actual, strict=True):
        np.testing.assert_array_equal(a, b)


def _jobs(name):
    return sh("squeue", "--noheader", f"--name={name}", "--format=%i").split()


def test_run_on_slurm_with_a_cancelled_worker_job_equals_local(workdir):
    """A run on two worker jobs, one of them cancelled mid-run, reports its SLURMCluster
    and finishes on the other with the threads' result. (One run proves both: a run on
    SLURM that nothing disturbs goes through the same steps, and was a run of its own.)"""
    name = f"mtd-{uuid.uuid4().hex[:8]}"
    store = str(workdir / "cancelled.zarr")
    process = subprocess.Popen(
        [*CLI, "run", _pipeline(workdir, "cancelled.zarr"), "--cluster", "slurm", "--jobs", "2"],
        env=_env(workdir, name),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for_records(store, 2, TIMEOUT), "the run did not start writing"
        # two batch jobs of that name were submitted (the run starts with the first
        # worker, dask-jobqueue's way: the second may still be pending)
        jobs = _jobs(name)
        assert len(jobs) == 2, jobs
        sh("scancel", jobs[0])
        assert not is_complete(store), "the run ended before a worker job could be cancelled"
        _, err = process.communicate(timeout=TIMEOUT)
    finally:
        process.kill()
        for job in _jobs(name):
            sh("scancel", job)
    assert process.returncode == 0, err
    assert "on SLURMCluster (2 jobs, scheduler tcp://127.0.0.1:" in err
    assert err.splitlines()[-1].startswith(f"wrote {store} in "), err
    # the workers ran in those jobs, which wrote their logs
    logs = os.listdir(workdir / "logs")
    assert [f for f in logs if f.startswith(name) and f.endswith(".err")]
    assert_equal_stores(workdir, "cancelled.zarr")


def _submitted(pipeline, name, directory, *options):
    """``submit pipeline *options`` from ``directory`` as the job ``name``: the finished
    ``submit`` command."""
    return subprocess.run(
        [*CLI, "submit", str(pipeline), "--mem", "2G", "--job-name", name, *options],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
    )


@dataclasses.dataclass
class Submission:
    """A submitted pipeline: its directory, job name, finished ``submit`` and the job's
    final state; and the second job submitted for the same output while it ran (its
    finished ``submit``, final state, and whether the output was complete when it
    ended)."""

    directory: Path
    name: str
    result: subprocess.CompletedProcess
    state: str | None
    second: subprocess.CompletedProcess | None
    second_state: str | None
    complete_after_second: bool


@pytest.fixture(scope="module")
def submission(workdir):
    """``submit`` of a pipeline from a directory whose name has spaces, quotes and shell
    syntax, and a second ``submit`` of it while the first job runs (suspended, its
    processes stopped but alive: it can not finish first, whatever the machine's
    speed), which must fail. The jobs are waited for here: a test reading a job's state
    after other tests ran would find it forgotten by slurmctld once MinJobAge passed.
    (It is also the module's plain submission: a submission from ``workdir`` ran the
    same script with another path, in a job of its own; and the first job, resumed
    after the second failed, must finish undisturbed.) Its input is small, with its own
    reference (threads): no job is stopped while it runs."""
    directory = workdir / "job dir 'single' \"double\" $(touch CANARY1) `touch CANARY2`; x"
    directory.mkdir()
    featomic_like(2, 12, neighbors=(4, 8), chunks=2).to_zarr(str(directory / "x.zarr"))
    (directory / "reference.yaml").write_text(PIPELINE.replace("{output}", "reference.zarr"))
    assert main(["run", str(directory / "reference.yaml"), "--quiet"]) == 0
    pipeline = directory / "pipeline.yaml"
    pipeline.write_text(PIPELINE.replace("{output}", "out.zarr"))
    name = f"mtd-{uuid.uuid4().hex[:8]}"
    result = _submitted(pipeline, name, directory)
    second, second_state, complete = None, None, False
    try:
        if result.returncode == 0:
            second, second_state, complete = _second_submission(pipeline, name, directory, result)
        state = _final_state(result)
    finally:
        for submitted in (result, second):
            if submitted is not None and submitted.returncode == 0:
                sh("scancel", submitted.stdout.strip())
    return Submission(directory, name, result, state, second, second_state, complete)


def _second_submission(pipeline, name, directory, first):
    """``submit pipeline --requeue`` (the same job name; a requeued job resumes) while
    the job ``first`` submitted is suspended, once it started writing: the finished
    ``submit``, the second job's final state and whether the output was complete when
    it ended. The first job is resumed before this returns."""
    store = str(directory / "out.zarr")
    assert wait_for_records(store, 1, TIMEOUT), "the first job did not start writing"
    job = first.stdout.strip()
    sh("scontrol", "suspend", job)
    try:
        second = _submitted(pipeline, name, directory, "--requeue")
        state = _final_state(second)
        complete = is_complete(store)
    finally:
        sh("scontrol", "resume", job)
    return second, state, complete


def _final_state(submit: subprocess.CompletedProcess) -> str | None:
    """The final state of the job ``submit`` printed, ``None`` if it failed."""
    return wait_for_job(submit.stdout.strip(), TIMEOUT) if submit.returncode == 0 else None


def test_submit_runs_to_completion(submission):
    directory, result = submission.directory, submission.result
    assert result.returncode == 0, result.stderr
    job = result.stdout.strip()
    assert job.isdigit()
    assert submission.state == "COMPLETED"
    log = (directory / f"{submission.name}-{job}.log").read_text()
    assert f"wrote {directory / 'out.zarr'} in " in log
    assert "on LocalCluster (1 worker x 1 thread, 2.00 GiB each)" in log  # sized from the job
    assert main(["verify", str(directory / "out.zarr"), "-q"]) == 0
    assert_equal_stores(directory, "out.zarr")


def test_a_second_job_for_the_same_output_fails_naming_the_first(submission):
    """The second job fails, saying the output is being written (the first job,
    resumed, finished undisturbed: checked above)."""
    second = submission.second
    assert second is not None, "the first submit failed"
    assert second.returncode == 0, second.stderr
    assert submission.second_state == "FAILED"
    assert not submission.complete_after_second, "the output was finished while suspended"
    log = submission.directory / f"{submission.name}-{second.stdout.strip()}.log"
    store = submission.directory / "out.zarr"
    assert f"{store} is being written by another writer" in log.read_text()
    assert "wait for it to finish" in log.read_text()


def _job_of(submit: list[str], capsys) -> str:
    """The id of the job that ``submit`` (the command line's arguments, run by
    ``main`` in this process: the job is what runs elsewhere) submitted."""
    code, out, err = run(capsys, *submit)
    assert code == 0, err
    return out.strip()


def _cancel_while_writing(submit: list[str], store: str, capsys) -> None:
    """Submit the job and cancel it while it writes ``store``. A job whose last chunks
    were written before its cancellation took effect (on a quiet machine they take a
    fraction of a second) left nothing to resume: it is submitted again on a new store,
    up to three times."""
    for _ in range(3):
        shutil.rmtree(store, ignore_errors=True)
        first = _job_of(submit, capsys)
        assert wait_for_records(store, 20, TIMEOUT), "the first job did not start writing"
        sh("scancel", first)
        state = wait_for_job(first, TIMEOUT)
        if not is_complete(store):
            assert state == "CANCELLED"
            return
    pytest.fail("the job finished before its cancellation took effect, three times")


def test_killed_job_resumes_when_resubmitted(workdir, capsys):
    name = f"mtd-{uuid.uuid4().hex[:8]}"
    store = str(workdir / "resumed.zarr")
    pipeline = _pipeline(workdir, "resumed.zarr")
    submit = ["submit", pipeline, "--mem", "2G", "--job-name", name, "--requeue", "-q"]
    _cancel_while_writing(submit, store, capsys)
    written = {
        os.path.join(root, f): os.stat(os.path.join(root, f)).st_mtime_ns
        for root, _, files in os.walk(os.path.join(store, "blocks"))
        for f in files
        if os.path.basename(root) == "values" and f != "zarr.json"
    }
    assert written, "the first job wrote no chunk"

    second = _job_of(submit, capsys)
    assert wait_for_job(second, TIMEOUT) == "COMPLETED"
    log = (workdir / f"{name}-{second}.log").read_text()
    assert f"resuming {store} (3 steps)" in log
    assert f"finished {store} in " in log
    assert_equal_stores(workdir, "resumed.zarr")
    # what the first job wrote was kept, not written again
    kept = [path for path, mtime in written.items() if os.stat(path).st_mtime_ns == mtime]
    assert kept, "every chunk was written again"


def test_submit_from_a_directory_with_spaces_and_quotes(workdir, submission):
    """The job starts in, and writes next to, a directory whose name has spaces, quotes
    and shell syntax (its log and store are checked above); nothing of that name runs."""
    directory = submission.directory
    assert submission.result.returncode == 0, submission.result.stderr
    assert submission.state == "COMPLETED"
    assert (directory / "out.zarr").is_dir()
    assert not [f for _, _, files in os.walk(workdir) for f in files if "CANARY" in f]
