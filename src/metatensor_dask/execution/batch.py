"""SLURM batch jobs that run a pipeline: the script of ``metatensor-dask submit``.

The job runs ``metatensor-dask run PIPELINE --cluster local`` inside its allocation: a
:class:`distributed.LocalCluster` sized from ``SLURM_CPUS_ON_NODE`` and
``SLURM_MEM_PER_NODE`` (see :func:`metatensor_dask.execution.cluster.local_sizes`). With
``requeue``, SLURM may requeue the job (after a node failure or preemption) and every
start runs ``run --resume``, which keeps what earlier starts wrote.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import MetatensorDaskError

__all__ = ["BatchJob", "SubmitError", "submit"]


class SubmitError(MetatensorDaskError):
    """``sbatch`` is missing or refused the job."""


@dataclass
class BatchJob:
    """What to run and what to ask SLURM for.

    Parameters
    ----------
    pipeline
        The pipeline file.
    resume
        Pass ``--resume`` to ``run`` (always done with ``requeue``).
    requeue
        Let SLURM requeue the job (``#SBATCH --requeue``); each start resumes.
    cpus, memory, time, partition, account
        ``--cpus-per-task``, ``--mem``, ``--time``, ``--partition``, ``--account``.
    workers, memory_limit
        ``--workers`` and ``--memory-limit`` of ``run`` (default: sized from the job).
    job_name
        ``--job-name``.
    log
        ``--output`` (``%j`` is the job id); default next to the pipeline file.
    sbatch_options
        More ``#SBATCH`` options, as given to ``sbatch``.
    python
        The Python that runs ``metatensor_dask`` in the job (shared file systems only).
    """

    pipeline: str
    resume: bool = False
    requeue: bool = False
    cpus: int | None = None
    memory: str | None = None
    time: str | None = None
    partition: str | None = None
    account: str | None = None
    workers: int | None = None
    memory_limit: str | None = None
    job_name: str = "metatensor-dask"
    log: str | None = None
    sbatch_options: Sequence[str] = field(default_factory=list)
    python: str = sys.executable

    def directives(self) -> list[str]:
        pipeline = os.path.abspath(self.pipeline)
        log = self.log or os.path.join(os.path.dirname(pipeline), f"{self.job_name}-%j.log")
        options = [f"--job-name={self.job_name}", "--nodes=1", "--ntasks=1", f"--output={log}"]
        for flag, value in (
            ("--cpus-per-task", self.cpus),
            ("--mem", self.memory),
            ("--time", self.time),
            ("--partition", self.partition),
            ("--account", self.account),
        ):
            if value is not None:
                options.append(f"{flag}={value}")
        if self.requeue:
            # a requeued job appends to its log instead of overwriting the first start's
            options += ["--requeue", "--open-mode=append"]
        options += list(self.sbatch_options)
        return options

    def command(self) -> list[str]:
        command = [
            self.python,
            "-m",
            "metatensor_dask",
            "run",
            os.path.abspath(self.pipeline),
            "--cluster",
            "local",
        ]
        if self.resume or self.requeue:
            command.append("--resume")
        if self.workers is not None:
            command += ["--workers", str(self.workers)]
        if self.memory_limit is not None:
            command += ["--memory-limit", self.memory_limit]
        return command

    def script(self) -> str:
        """The text of the ``sbatch`` script."""
        lines = ["#!/bin/bash"]
        lines += [f"#SBATCH {option}" for option in self.directives()]
        lines += [
            "# Written by `metatensor-dask submit`: runs the pipeline on a LocalCluster sized",
            "# from this job's allocation (SLURM_CPUS_ON_NODE, SLURM_MEM_PER_NODE).",
            f"# Submitted from {os.getcwd()} on {time.strftime('%Y-%m-%d %H:%M:%S')}.",
            'echo "metatensor-dask: job ${SLURM_JOB_ID} start ${SLURM_RESTART_COUNT:-0}"'
            ' "on $(hostname)"',
            f"cd {shlex.quote(os.getcwd())}",
            "exec " + shlex.join(self.command()),
        ]
        return "\n".join(lines) + "\n"


def submit(job: BatchJob, script_path: str | None = None) -> tuple[str, str]:
    """Write the job's script and submit it with ``sbatch``.

    Returns
    -------
    tuple[str, str]
        The job id and the path of the script.
    """
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise SubmitError(
            "sbatch not found: run `submit` on a SLURM login node, or use "
            "`metatensor-dask run --cluster slurm` to start workers from here"
        )
    if script_path is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        script_path = os.path.join(
            os.path.dirname(os.path.abspath(job.pipeline)),
            f"{job.job_name}-{stamp}-{os.getpid()}.sbatch",
        )
    with open(script_path, "w", encoding="utf-8") as file:
        file.write(job.script())
    result = subprocess.run([sbatch, "--parsable", script_path], capture_output=True, text=True)
    if result.returncode != 0:
        raise SubmitError(f"sbatch refused the job ({script_path}): {result.stderr.strip()}")
    # --parsable prints "jobid" or "jobid;cluster"
    return result.stdout.strip().split(";")[0], script_path
