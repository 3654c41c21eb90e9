"""Batch scripts of ``metatensor-dask submit`` (SLURM and PBS): every value is checked
before anything is written or submitted, and paths are quoted, so that no option, working
directory or pipeline directory can add a command to the script."""

import os
import re
import shlex
import subprocess
import sys

import pytest
from pipeline_support import expected_cube, run, write_pipeline, write_store

import metatensor_dask as mtd
from metatensor_dask.execution._directives import JobOptionError
from metatensor_dask.execution.batch import BatchJob, SubmitError, submit
from metatensor_dask.testing import assert_equal_to_metatensor

# a directory name that runs commands if a script copies it unquoted
HOSTILE_DIR = "dir with 'single' \"double\" $(touch CANARY1) `touch CANARY2`; touch CANARY3"


def canaries(root):
    return [f for _, _, files in os.walk(root) for f in files if f.startswith("CANARY")]


@pytest.fixture
def pipeline(tmp_path):
    write_store(tmp_path / "x.zarr")
    return write_pipeline(tmp_path, input="x.zarr", output="out.zarr")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--job-name", "job\ntouch CANARY", r"the job name 'job\\ntouch CANARY' contains the "),
        ("--job-name", "a;touch CANARY", "is not a valid name: use only letters"),
        ("--job-name", "$(touch CANARY)", "is not a valid name"),
        ("--partition", "debug\nrm -rf ~", "the partition 'debug\\\\nrm -rf ~' contains the"),
        ("--partition", "`touch CANARY`", "the partition .* is not a valid name"),
        ("--account", "acct'; touch CANARY", "the account .* is not a valid name"),
        ("--time", "01:00:00\ntouch CANARY", "the time limit .* contains the control"),
        ("--time", "an hour", r"the time limit 'an hour' is not a walltime: give it as 02:00:00"),
        ("--mem", "16G\ntouch CANARY", "the job memory .* contains the control character"),
        ("--mem", "16 gigs", "the job memory '16 gigs' is not a memory size: give it as 16G"),
        ("--log", "log\ntouch CANARY", "the log path .* contains the control character"),
        ("--option", "--qos=long\ntouch CANARY", "the option .* contains the control character"),
        ("--option", "touch CANARY", "the option 'touch CANARY' is not an option of sbatch"),
        ("--memory-limit", "4GiB", None),  # a valid value, for contrast
    ],
)
def test_hostile_options_are_refused_before_anything_is_written(
    capsys, tmp_path, pipeline, option, value, message
):
    code, out, err = run(capsys, "submit", pipeline, f"{option}={value}", "--dry-run")
    if message is None:
        assert code == 0, err
        return
    assert (code, out) == (2, "")
    assert "error: " in err and "Traceback" not in err
    assert re.search(message, err), err
    assert not [p for p in os.listdir(tmp_path) if p.endswith((".sbatch", ".qsub"))]
    assert canaries(tmp_path) == []


def test_control_characters_in_paths_are_refused(tmp_path, pipeline):
    with pytest.raises(JobOptionError, match=r"the working directory .* contains the control"):
        BatchJob(pipeline, workdir=str(tmp_path / "a\nb"))
    with pytest.raises(JobOptionError, match=r"the pipeline path .* contains the control"):
        BatchJob(str(tmp_path / "p\r.yaml"))
    with pytest.raises(JobOptionError, match=r"the Python path .* contains the control"):
        BatchJob(pipeline, python="/usr/bin/python\n/bin/sh")
    with pytest.raises(JobOptionError, match="unknown batch system 'lsf': use one of slurm, pbs"):
        BatchJob(pipeline, scheduler="lsf")


def _hostile_workdir(tmp_path):
    """A pipeline (and its stores) in a directory whose name is hostile to shells."""
    directory = tmp_path / HOSTILE_DIR
    directory.mkdir()
    write_store(directory / "x.zarr")
    return directory, write_pipeline(directory, input="x.zarr", output="out.zarr")


def test_a_script_with_hostile_paths_runs_the_pipeline_and_nothing_else(tmp_path):
    directory, pipeline = _hostile_workdir(tmp_path)
    # (one worker: the paths are what is checked, and each worker is a new interpreter)
    job = BatchJob(
        pipeline, workdir=str(directory), log="my log.txt", options=["--comment=a b"], workers=1
    )
    script = job.script()
    lines = script.splitlines()
    # exactly the expected lines: nothing was split off a value
    assert [line.split()[0] for line in lines] == ["#!/bin/bash"] + ["#SBATCH"] * 5 + [
        "#",
        "#",
        "#",
        "echo",
        "cd",
        "exec",
    ]
    assert shlex.split(lines[4]) == ["#SBATCH", f"--output={directory / 'my log.txt'}"]
    assert shlex.split(lines[5]) == ["#SBATCH", "--comment=a b"]
    assert shlex.split(lines[-2]) == ["cd", str(directory)]
    assert shlex.split(lines[-1])[1:] == ["exec", *job.command()][1:]
    # the script itself runs the pipeline (here without SLURM)
    path = tmp_path / "job.sh"
    path.write_text(script)
    result = subprocess.run(
        ["bash", str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert f"wrote {directory / 'out.zarr'} in " in result.stderr
    assert_equal_to_metatensor(mtd.open_zarr(directory / "out.zarr").compute(), expected_cube())
    assert canaries(tmp_path) == []


def test_pbs_script(capsys, tmp_path, pipeline):
    code, out, err = run(
        capsys,
        "submit",
        pipeline,
        "--scheduler",
        "pbs",
        "--requeue",
        "--cpus",
        "8",
        "--mem",
        "16G",
        "--time",
        "02:00:00",
        "--queue",
        "workq",
        "--account",
        "proj-1",
        "--job-name",
        "mtd",
        "--option=-m abe",
        "--dry-run",
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:10] == [
        "#!/bin/bash",
        "#PBS -N mtd",
        "#PBS -l select=1:ncpus=8:mem=16gb",
        "#PBS -l walltime=02:00:00",
        "#PBS -q workq",
        "#PBS -A proj-1",
        f"#PBS -o {tmp_path}/mtd.log",
        "#PBS -j oe",
        "#PBS -r y",
        "#PBS -m abe",
    ]
    assert "#SBATCH" not in out
    assert "NCPUS" in out and "${PBS_JOBID}" in out
    assert shlex.split(lines[-1]) == [
        "exec",
        sys.executable,
        "-m",
        "metatensor_dask",
        "run",
        pipeline,
        "--cluster",
        "local",
        "--resume",
    ]


@pytest.mark.parametrize(
    ("memory", "pbs"), [("16G", "16gb"), ("500M", "500mb"), ("2000", "2000mb"), ("1T", "1tb")]
)
def test_pbs_memory_in_pbs_units(pipeline, memory, pbs):
    job = BatchJob(pipeline, scheduler="pbs", memory=memory)
    assert f"-l select=1:mem={pbs}" in job.directives()


def test_pbs_refuses_what_a_pbs_line_cannot_hold(tmp_path, pipeline):
    with pytest.raises(JobOptionError, match=r"the log path .* has spaces, quotes or backslashes"):
        BatchJob(pipeline, scheduler="pbs", log="my log.txt")
    with pytest.raises(JobOptionError, match=r"the option .* has quotes or backslashes"):
        BatchJob(pipeline, scheduler="pbs", options=["-N 'x'"])
    with pytest.raises(JobOptionError, match="the time limit '1-00:00:00' is not a walltime"):
        BatchJob(pipeline, scheduler="pbs", time="1-00:00:00")  # SLURM's day format
    # ... which SLURM takes
    assert "--time=1-00:00:00" in BatchJob(pipeline, time="1-00:00:00").directives()


def test_missing_qsub(capsys, monkeypatch, tmp_path, pipeline):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code, out, err = run(capsys, "submit", pipeline, "--scheduler", "pbs")
    assert (code, out) == (1, "")
    assert "qsub not found: run `submit --scheduler pbs` on a login node of a PBS cluster" in err
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".qsub")]
    with pytest.raises(SubmitError, match="qsub not found"):
        submit(BatchJob(pipeline, scheduler="pbs"))
