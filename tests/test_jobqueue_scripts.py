"""Every dask-jobqueue batch system through ``--cluster``: its job script, generated from
dask-jobqueue's own ``jobqueue.<name>.*`` settings without starting a job, has the queue,
account, walltime, memory and cores asked for; hostile settings are refused before the
cluster exists. (SLURM also runs on the real SLURM: tests/test_slurm_*.py.)"""

import os
import subprocess

import dask
import dask_jobqueue  # noqa: F401  (loads its configuration defaults before we set ours)
import pytest

from metatensor_dask.execution._directives import JobOptionError
from metatensor_dask.execution.cluster import (
    JOBQUEUE,
    WORKER_ENVIRONMENT,
    ClusterError,
    jobqueue_cluster,
)

# what each batch system writes for: queue q1, account/project acct, 01:30 walltime,
# 2 cores, 4 GiB
EXPECTED = {
    "slurm": ["#SBATCH -p q1", "#SBATCH -A acct", "#SBATCH --cpus-per-task=2",
              "#SBATCH --mem=4G", "#SBATCH -t 01:30:00"],
    "pbs": ["#PBS -q q1", "#PBS -A acct", "#PBS -l select=1:ncpus=2:mem=4096MB",
            "#PBS -l walltime=01:30:00"],
    "moab": ["#PBS -q q1", "#PBS -A acct", "#PBS -l select=1:ncpus=2:mem=4096MB",
             "#PBS -l walltime=01:30:00"],
    "sge": ["#$ -q q1", "#$ -P acct", "#$ -l h_rt=01:30:00"],
    "lsf": ["#BSUB -q q1", '#BSUB -P "acct"', "#BSUB -n 2", "#BSUB -M 4294968",
            "#BSUB -W 01:30"],
    "oar": ["#OAR -q q1", "#OAR --project acct", "#OAR -l /nodes=1/core=2,walltime=01:30:00",
            "#OAR -p memcore>=2048"],
    "htcondor": ["MY.DaskWorkerCores = 2", "MY.DaskWorkerMemory = 4294967296"],
}  # fmt: skip


def settings(kind, **changes):
    values = {
        "cores": 2,
        "memory": "4GiB",
        "disk": "1GiB",
        "queue": "q1",
        # SLURM and PBS charge an account, the others a project
        ("account" if kind in ("slurm", "pbs", "moab") else "project"): "acct",
        "walltime": "01:30" if kind == "lsf" else "01:30:00",
        "scheduler-options": {"dashboard_address": "127.0.0.1:0", "host": "127.0.0.1"},
    }
    if kind == "oar":  # how OAR sites name memory per core; dask-jobqueue warns without it
        values["memory-per-core-property-name"] = "memcore"
    values.update(changes)
    return {f"jobqueue.{kind}.{key}": value for key, value in values.items()}


@pytest.mark.parametrize("kind", sorted(JOBQUEUE))
def test_job_script_has_the_directives(kind):
    with dask.config.set(settings(kind)), jobqueue_cluster(kind) as cluster:
        script = cluster.job_script()
        assert type(cluster).__name__ == JOBQUEUE[kind][0]
        lines = script.splitlines()
        for directive in EXPECTED[kind]:
            assert directive in lines, (directive, script)
        assert len(cluster.workers) == 0  # no job was started


@pytest.mark.parametrize("kind", sorted(JOBQUEUE))
def test_memory_limit_option_sets_the_job_memory(kind):
    with dask.config.set(settings(kind)), jobqueue_cluster(kind, memory_limit="8GiB") as cluster:
        # 8 GiB for the job's 2 worker processes (the settings say 4 GiB)
        assert "--memory-limit 4.00GiB --nworkers 2" in cluster.job_script()


@pytest.mark.parametrize("kind", sorted(JOBQUEUE))
@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("queue", "q1\ntouch CANARY", "jobqueue.{kind}.queue 'q1\\\\ntouch CANARY' contains the"),
        ("queue", "q1;touch CANARY", "jobqueue.{kind}.queue .* is not a valid name"),
        ("account", "$(touch CANARY)", "jobqueue.{kind}.account .* is not a valid name"),
        ("project", "`touch CANARY`", "jobqueue.{kind}.project .* is not a valid name"),
        ("name", "w\rx", "jobqueue.{kind}.name .* contains the control character"),
        ("walltime", "1h; touch CANARY", "jobqueue.{kind}.walltime .* is not a walltime"),
        ("memory", "lots", "jobqueue.{kind}.memory 'lots' is not a memory size"),
        (
            "job-extra-directives",
            ["--qos=x\ntouch CANARY"],
            r"jobqueue.{kind}.job-extra-directives\[0\] .* contains the control",
        ),
        (
            "job-script-prologue",
            ["module load x\x00"],
            r"jobqueue.{kind}.job-script-prologue\[0\] .* contains the control",
        ),
        ("local-directory", "/tmp/a\nb", "jobqueue.{kind}.local-directory .* contains the"),
    ],
)
def test_hostile_settings_are_refused(tmp_path, kind, key, value, message):
    if key == "walltime" and kind == "htcondor":
        # HTCondor jobs have no walltime: the setting never reaches the script
        with dask.config.set(settings(kind, walltime=value)), jobqueue_cluster(kind) as cluster:
            assert "CANARY" not in cluster.job_script()
        return
    with dask.config.set(settings(kind, **{key: value})):
        with pytest.raises(JobOptionError, match=message.format(kind=kind)):
            jobqueue_cluster(kind)


def test_walltime_formats_of_each_system():
    for kind, walltime in [("slurm", "1-12:00:00"), ("pbs", "36:00:00"), ("lsf", "36:00")]:
        with dask.config.set(settings(kind, walltime=walltime)), jobqueue_cluster(kind) as c:
            assert walltime in c.job_script()
    with dask.config.set(settings("pbs", walltime="1-12:00:00")):
        with pytest.raises(JobOptionError, match="give it as 02:00:00"):
            jobqueue_cluster("pbs")
    with dask.config.set(settings("lsf", walltime="01:30:00")):
        with pytest.raises(JobOptionError, match=r"give it as 02:00 \(hours:minutes\)"):
            jobqueue_cluster("lsf")


@pytest.mark.parametrize("kind", ["pbs", "htcondor"])
def test_jobs_need_a_size(kind):
    with dask.config.set({f"jobqueue.{kind}.cores": 2, f"jobqueue.{kind}.memory": None}):
        with pytest.raises(ClusterError, match=f"jobqueue.{kind}.memory is not set"):
            jobqueue_cluster(kind)
    if kind == "htcondor":
        with dask.config.set(settings(kind, disk=None)):
            with pytest.raises(ClusterError, match="set cores and memory and disk of jobqueue"):
                jobqueue_cluster(kind)


def test_unknown_batch_system():
    with pytest.raises(ClusterError, match="unknown batch system 'torque': use one of slurm, pbs"):
        jobqueue_cluster("torque")


@pytest.mark.parametrize(("kind", "command"), [("pbs", "qsub"), ("lsf", "bsub"), ("oar", "oarsub")])
def test_run_without_the_submit_command_fails_at_once(capsys, monkeypatch, tmp_path, kind, command):
    """Without it dask-jobqueue's job submissions failed in the background (a traceback
    each time) and the run waited for workers forever."""
    from pipeline_support import write_pipeline, write_store

    from metatensor_dask.execution.cli import main

    write_store(tmp_path / "x.zarr")
    pipeline = write_pipeline(tmp_path, input="x.zarr", output="out.zarr")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with dask.config.set(settings(kind)):
        code = main(["run", pipeline, "--cluster", kind, "--jobs", "1", "-q"])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err == (
        f"metatensor-dask run: error: {command} not found: --cluster {kind} submits its "
        f"workers' jobs with {command}; run on a login node of the {kind.upper()} cluster, "
        "or choose another --cluster\n"
    )
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize("kind", sorted(set(JOBQUEUE) - {"htcondor"}))
def test_job_script_exports_the_worker_environment(kind):
    prologue = ["source /opt/site/env.sh"]
    changes = settings(kind, **{"job-script-prologue": prologue})
    with dask.config.set(changes), jobqueue_cluster(kind) as cluster:
        script = cluster.job_script()
    lines = script.splitlines()
    exports = [line for line in lines if line.startswith("export MALLOC_")]
    assert len(exports) == len(WORKER_ENVIRONMENT)
    # before the user's own prologue (which may change them), before the worker starts
    assert lines.index(exports[-1]) < lines.index(prologue[0])
    assert lines.index(prologue[0]) < next(i for i, x in enumerate(lines) if "dask_worker" in x)
    # run as the job runs them: the values of WORKER_ENVIRONMENT, or the job's own
    shell = "\n".join([*exports, *(f'echo "{name}=${name}"' for name in WORKER_ENVIRONMENT)])
    environment = {k: v for k, v in os.environ.items() if k not in WORKER_ENVIRONMENT}
    found = subprocess.run(["sh", "-c", shell], env=environment, capture_output=True, text=True)
    assert found.stdout.split() == [f"{k}={v}" for k, v in WORKER_ENVIRONMENT.items()]
    environment["MALLOC_ARENA_MAX"] = "8"
    found = subprocess.run(["sh", "-c", shell], env=environment, capture_output=True, text=True)
    assert "MALLOC_ARENA_MAX=8" in found.stdout.split()


def test_job_script_keeps_the_deprecated_prologue():
    changes = settings("slurm", **{"env-extra": ["module load python"]})
    with pytest.warns(FutureWarning), dask.config.set(changes), jobqueue_cluster("slurm") as c:
        lines = c.job_script().splitlines()
    assert "module load python" in lines
    assert any(line.startswith("export MALLOC_TRIM_THRESHOLD_=") for line in lines)
