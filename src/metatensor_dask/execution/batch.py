"""Batch jobs that run a pipeline: the script of ``metatensor-dask submit``.

The job runs ``metatensor-dask run PIPELINE --cluster local`` inside its allocation: a
:class:`distributed.LocalCluster` sized from the job (``SLURM_CPUS_ON_NODE`` and
``SLURM_MEM_PER_NODE`` under SLURM, ``NCPUS`` under PBS; see
:func:`metatensor_dask.execution.cluster.local_sizes`). With ``requeue``, the batch
system may requeue the job (after a node failure or preemption) and every start runs
``run --resume``, which keeps what earlier starts wrote.

Every value written into the script is checked before anything is written or submitted
(see :mod:`metatensor_dask.execution._directives`), and every path is quoted, so no value
can add a command to the script.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import MetatensorDaskError
from ._directives import JobOptionError, check_memory, check_name, check_text, check_walltime

__all__ = ["SCHEDULERS", "BatchJob", "SubmitError", "submit"]

# batch systems that `submit` writes scripts for: (directive prefix, submit command)
SCHEDULERS = {"slurm": ("#SBATCH", "sbatch"), "pbs": ("#PBS", "qsub")}
# characters that a #PBS line cannot carry safely: qsub's directive parser does not follow
# shell quoting, so values are written unquoted and may not have quotes (nor spaces, for
# a path)
_PBS_QUOTES = re.compile(r"['\"\\]")
_PBS_UNSAFE_PATH = re.compile(r"[\s'\"\\]")


class SubmitError(MetatensorDaskError):
    """The submit command is missing or refused the job."""


@dataclass
class BatchJob:
    """What to run and what to ask the batch system for.

    Parameters
    ----------
    pipeline
        The pipeline file.
    resume
        Pass ``--resume`` to ``run`` (always done with ``requeue``).
    requeue
        Let the batch system requeue the job; each start resumes.
    cpus, memory, time, partition, account
        Cores, memory (``16G``, ``500M``, or megabytes), walltime, partition (queue) and
        account of the job.
    workers, memory_limit
        ``--workers`` and ``--memory-limit`` of ``run`` (default: sized from the job).
    job_name
        The job's name.
    log
        Where the job's output goes; default next to the pipeline file
        (``<job_name>-%j.log`` under SLURM, ``%j`` being the job id; ``<job_name>.log``
        under PBS).
    options
        More directives, as given to ``sbatch`` or ``qsub`` (``--qos=long``, ``-l
        place=scatter``).
    python
        The Python that runs ``metatensor_dask`` in the job (shared file systems only).
    scheduler
        ``"slurm"`` or ``"pbs"``.
    workdir
        The directory the job starts in (default: the current directory).

    Raises
    ------
    JobOptionError
        When a value has a control character or does not have its field's format.
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
    options: Sequence[str] = field(default_factory=list)
    python: str = sys.executable
    scheduler: str = "slurm"
    workdir: str = field(default_factory=os.getcwd)

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise JobOptionError(
                f"unknown batch system '{self.scheduler}': use one of {', '.join(SCHEDULERS)}"
            )
        check_name("the job name", self.job_name)
        if self.partition is not None:
            check_name("the partition", self.partition, queue=True)
        if self.account is not None:
            check_name("the account", self.account)
        if self.time is not None:
            check_walltime("the time limit", self.time, "slurm" if self.slurm else "hms")
        if self.memory is not None:
            check_memory("the job memory", self.memory, style="job")
        if self.memory_limit is not None:
            check_memory("the memory limit", self.memory_limit)
        for option in self.options:
            check_text("the option", option)
            if not option.startswith("-"):
                raise JobOptionError(
                    f"the option {option!r} is not an option of {self.submit_command}: "
                    "give it as it is given on its command line, e.g. --qos=long"
                )
            if not self.slurm and _PBS_QUOTES.search(option):
                raise JobOptionError(
                    f"the option {option!r} has quotes or backslashes, which a #PBS line "
                    "cannot hold: give the option without them"
                )
        for what, path in (
            ("the pipeline path", os.path.abspath(self.pipeline)),
            ("the working directory", self.workdir),
            ("the Python path", self.python),
            ("the log path", self.log_path),
        ):
            check_text(what, path)
        if not self.slurm and _PBS_UNSAFE_PATH.search(self.log_path):
            raise JobOptionError(
                f"the log path {self.log_path!r} has spaces, quotes or backslashes, which a "
                "#PBS line cannot hold: give --log a path without them"
            )

    @property
    def slurm(self) -> bool:
        return self.scheduler == "slurm"

    @property
    def submit_command(self) -> str:
        return SCHEDULERS[self.scheduler][1]

    @property
    def log_path(self) -> str:
        if self.log is not None:
            return os.path.abspath(os.path.join(self.workdir, self.log))
        name = f"{self.job_name}-%j.log" if self.slurm else f"{self.job_name}.log"
        return os.path.join(os.path.dirname(os.path.abspath(self.pipeline)), name)

    def directives(self) -> list[str]:
        """The options of the script's header lines, values quoted."""
        return self._slurm_directives() if self.slurm else self._pbs_directives()

    def _slurm_directives(self) -> list[str]:
        options = [
            f"--job-name={self.job_name}",
            "--nodes=1",
            "--ntasks=1",
            f"--output={shlex.quote(self.log_path)}",
        ]
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
        return options + [shlex.quote(option) for option in self.options]

    def _pbs_directives(self) -> list[str]:
        options = [f"-N {self.job_name}"]
        select = ["select=1"]
        if self.cpus is not None:
            select.append(f"ncpus={self.cpus}")
        if self.memory is not None:
            select.append(f"mem={_pbs_memory(self.memory)}")
        if len(select) > 1:
            options.append(f"-l {':'.join(select)}")
        if self.time is not None:
            options.append(f"-l walltime={self.time}")
        if self.partition is not None:
            options.append(f"-q {self.partition}")
        if self.account is not None:
            options.append(f"-A {self.account}")
        # output and errors in one log; rerunnable only when asked
        options += [f"-o {self.log_path}", "-j oe", f"-r {'y' if self.requeue else 'n'}"]
        return options + list(self.options)

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
        """The text of the batch script."""
        prefix = SCHEDULERS[self.scheduler][0]
        if self.slurm:
            sizes = "SLURM_CPUS_ON_NODE, SLURM_MEM_PER_NODE"
            start = '"${SLURM_JOB_ID} start ${SLURM_RESTART_COUNT:-0}"'
        else:
            sizes = "NCPUS"
            start = '"${PBS_JOBID}"'
        lines = ["#!/bin/bash"]
        lines += [f"{prefix} {option}" for option in self.directives()]
        lines += [
            "# Written by `metatensor-dask submit`: runs the pipeline on a LocalCluster sized",
            f"# from this job's allocation ({sizes}).",
            f"# Submitted on {time.strftime('%Y-%m-%d %H:%M:%S')}.",
            f'echo "metatensor-dask: job "{start}" on $(hostname)"',
            f"cd {shlex.quote(self.workdir)}",
            "exec " + shlex.join(self.command()),
        ]
        return "\n".join(lines) + "\n"


def _pbs_memory(memory: str) -> str:
    """``sbatch --mem`` sizes (``16G``, ``500M``, ``2000``) as PBS writes them (``16gb``)."""
    unit = memory[-1].lower() if memory[-1].isalpha() else "m"
    return f"{memory.rstrip('KMGTkmgt')}{unit}b"


def submit(job: BatchJob, script_path: str | None = None) -> tuple[str, str]:
    """Write the job's script and submit it with ``sbatch`` or ``qsub``.

    Returns
    -------
    tuple[str, str]
        The job id and the path of the script.

    Raises
    ------
    SubmitError
        The submit command is not found, it refused the job, or the folder of the
        script or of the job's log can not be written (checked before anything is
        written or submitted).
    """
    command = job.submit_command
    named_here = script_path is None
    if script_path is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        script_path = os.path.join(
            os.path.dirname(os.path.abspath(job.pipeline)),
            f"{job.job_name}-{stamp}-{os.getpid()}.{command}",
        )
    _check_folder("the script", script_path, "--script")
    _check_folder("the job's log", job.log_path, "--log")
    executable = shutil.which(command)
    if executable is None:
        raise SubmitError(
            f"{command} not found: run `submit --scheduler {job.scheduler}` on a login node "
            f"of a {job.scheduler.upper()} cluster, or use `metatensor-dask run --cluster "
            f"{job.scheduler}` to start workers from here"
        )
    with open(script_path, "w", encoding="utf-8") as file:
        file.write(job.script())
    argv = [executable, "--parsable", script_path] if job.slurm else [executable, script_path]
    submitted = False
    try:
        result = subprocess.run(argv, capture_output=True, text=True, cwd=job.workdir)
        submitted = result.returncode == 0
    except OSError as error:
        raise SubmitError(
            f"{executable} could not be started ({error}); nothing was submitted: check "
            f"the {command} of this machine (`{command} --version`)"
        ) from None
    finally:
        if not submitted and named_here:
            # a script named for this submission only, refused or never submitted
            # (the command failed to start, Ctrl-C): nothing will run it
            os.remove(script_path)
    if not submitted:
        kept = (
            "the script was removed; `submit --dry-run` prints it"
            if named_here
            else f"the script is kept in {script_path}"
        )
        raise SubmitError(f"{command} refused the job ({kept}): {result.stderr.strip()}")
    # sbatch --parsable prints "jobid" or "jobid;cluster"; qsub prints "jobid.server"
    return result.stdout.strip().split(";")[0], script_path


def _check_folder(what: str, path: str, option: str) -> None:
    """Refuse a file ``path`` (written by ``submit``, or by the job) in a folder that
    does not exist or can not be written, such as a shared folder of pipelines mounted
    read-only; the remedy is the command line ``option`` that moves it."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        problem = "does not exist"
    elif not os.access(folder, os.W_OK):
        problem = "can not be written"
    else:
        return
    raise SubmitError(
        f"{what} {path} would be written in {folder}, which {problem}; nothing was "
        f"submitted: give {option} a path in a folder you can write"
    )
