"""Where the command line runs dask computations.

* ``None`` or ``"threads"`` (the default): dask's threaded scheduler in this process;
* ``"local"``: a :class:`distributed.LocalCluster` of worker processes on this machine,
  each with a memory limit (workers spill to disk past dask's ``distributed.worker.memory``
  thresholds); inside a SLURM allocation it is sized from ``SLURM_CPUS_ON_NODE`` and
  ``SLURM_MEM_PER_NODE``. Its workers start with :data:`WORKER_ENVIRONMENT`;
* ``"slurm"``, ``"pbs"``, ``"sge"``, ``"lsf"``, ``"htcondor"``, ``"oar"``, ``"moab"``: the
  dask-jobqueue cluster of that batch system (the ``hpc`` extra: ``SLURMCluster``,
  ``PBSCluster``...), configured by dask-jobqueue's own ``jobqueue.<name>.*`` settings, with
  ``jobs`` batch jobs kept alive (a job that dies or is cancelled is replaced), whose
  scripts export :data:`WORKER_ENVIRONMENT` (but HTCondor's, which runs no script). Every
  setting that goes into the job script is checked first (no control characters; names,
  walltimes and memory sizes in their formats);
* anything else is the address of a running scheduler (``tcp://host:8786``).

On the clusters started here (``local`` and the batch systems), whose scheduler runs in
this process, the tasks of the same rows of co-partitioned arrays run on the same worker
(:class:`~metatensor_dask.execution._placement.RowPlacement`), and the workers give
their free heap memory back to the system every second
(:class:`~metatensor_dask.execution._trim.TrimHeap`). The worker processes of ``local``
ignore Ctrl-C, which the command handles: it stops them as it stops
(:class:`~metatensor_dask.execution._interrupts.IgnoreInterrupts`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dask
from dask.utils import format_bytes, parse_bytes

from .._format import counted, nbytes_text
from ..errors import MetatensorDaskError
from ._directives import JobOptionError, check_memory, check_name, check_text, check_walltime
from ._interrupts import IgnoreInterrupts
from ._placement import RowPlacement
from ._trim import TrimHeap

__all__ = [
    "JOBQUEUE",
    "MIN_WORKER_MEMORY",
    "TOO_LITTLE_FOR_A_WORKER",
    "WORKER_ENVIRONMENT",
    "ClusterError",
    "Execution",
    "check_options",
    "check_worker_memory",
    "default_workers",
    "execution",
    "jobqueue_cluster",
    "local_sizes",
]

# dask-jobqueue's clusters, by the name of their configuration section (jobqueue.<name>),
# with the format of their walltime (see _directives.check_walltime)
JOBQUEUE = {
    "slurm": ("SLURMCluster", "slurm"),
    "pbs": ("PBSCluster", "hms"),
    "sge": ("SGECluster", "hms"),
    "lsf": ("LSFCluster", "lsf"),
    "htcondor": ("HTCondorCluster", None),
    "oar": ("OARCluster", "hms"),
    "moab": ("MoabCluster", "hms"),
}
CLUSTERS = ("threads", "local", *JOBQUEUE)

#: The least ``--memory-limit`` of a worker: one process of Python, numpy, dask and zarr
#: uses about 170 MiB before it holds any data (measured: workers of 160 MiB were
#: restarted by their nanny without end, of 200 MiB wrote a small store)
MIN_WORKER_MEMORY = 256 * 2**20
#: Why less is refused, in the refusals of ``--memory-limit`` and of ``submit --mem``.
TOO_LITTLE_FOR_A_WORKER = (
    "is too little for a worker process, which uses about 170 MiB before it holds any "
    "data (Python, numpy, dask): its nanny would restart it forever"
)

#: Environment of the worker processes of a ``local`` cluster, over distributed's
#: ``distributed.nanny.pre-spawn-environ``. distributed asks glibc to give back every free
#: 64 KiB at the top of its heap, so the blocks of every task's temporaries were returned
#: and faulted in again page by page. Here allocations from 16 MiB up (chunk-sized
#: arrays) are served by ``mmap`` and returned on ``free`` (numpy asks for huge pages for
#: them: few page faults), smaller ones come from one heap (one arena: the workers'
#: threads share it), and free memory at its top is given back beyond 64 MiB. With
#: 64 MiB chunks, serving them from the heap too (a 256 MiB threshold) kept up to
#: 0.9 GiB per worker of freed chunks resident, for no less CPU. As for every pre-spawn
#: variable of distributed, a value already in the environment of the process wins
#: (distributed itself writes the values it gives to its workers there).
WORKER_ENVIRONMENT = {
    "MALLOC_MMAP_THRESHOLD_": str(16 * 2**20),
    "MALLOC_TRIM_THRESHOLD_": str(64 * 2**20),
    "MALLOC_ARENA_MAX": "1",
}


def _worker_exports() -> list[str]:
    """The job script lines giving the workers of a batch job :data:`WORKER_ENVIRONMENT`:
    distributed's nanny keeps a value in its environment over its own (which would
    return every free 64 KiB at the top of the heap), and a value the job already has
    (exported by the user before submitting) is kept."""
    return [f"export {name}=${{{name}:-{value}}}" for name, value in WORKER_ENVIRONMENT.items()]


#: Scheduler settings of a ``local`` cluster. Work stealing is off: it moves tasks that
#: :class:`~metatensor_dask.execution._placement.RowPlacement` put with their rows (a
#: loose restriction) to whichever worker is idle, and their inputs with them. On the demo
#: pipeline at 4 GiB, 2 workers sent each other 0.84-1.63 GB in seven runs with stealing
#: (pieces of nearly whole stored chunks of 55-60 MB among them), 0.49 GB without it.
LOCAL_SCHEDULER = {"distributed.scheduler.work-stealing": False}


class ClusterError(MetatensorDaskError):
    """A cluster cannot be started or reached as asked."""


@dataclass
class Execution:
    """Where computations run: ``client`` is ``None`` for the threaded scheduler."""

    client: Any
    description: str


def _cores() -> int:
    # the allocation of a SLURM job, or of a PBS job
    for variable in ("SLURM_CPUS_ON_NODE", "NCPUS"):
        if os.environ.get(variable):
            return int(os.environ[variable])
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def local_sizes(
    workers: int | None = None, memory_limit: str | None = None
) -> tuple[int, int, int | None]:
    """``(workers, threads per worker, memory limit per worker in bytes or None)`` of a
    LocalCluster on this machine or in the current SLURM allocation.

    By default one worker per core up to 4 cores, then about ``sqrt(cores)`` workers
    sharing the cores as threads. The memory limit is ``memory_limit`` (per worker), else
    ``SLURM_MEM_PER_NODE`` (MiB, for the whole node) shared between the workers, else
    ``None`` (distributed's default: the machine's memory shared between the workers).
    """
    cores = _cores()
    if workers is None:
        workers = default_workers(cores)
    if workers < 1:
        raise ClusterError(f"the number of workers must be at least 1, got {workers}")
    threads = max(1, cores // workers)
    if memory_limit is not None:
        limit: int | None = _parse_memory(memory_limit)
    elif os.environ.get("SLURM_MEM_PER_NODE"):
        limit = int(os.environ["SLURM_MEM_PER_NODE"]) * 2**20 // workers
    else:
        limit = None
    return workers, threads, limit


def default_workers(cores: int) -> int:
    """The workers of a LocalCluster on ``cores`` cores: one per core up to 4 cores,
    then about ``sqrt(cores)`` sharing the cores as threads."""
    return cores if cores <= 4 else math.ceil(math.sqrt(cores))


def _parse_memory(text: str) -> int:
    try:
        return parse_bytes(text)
    except (ValueError, TypeError):
        raise ClusterError(
            f"invalid memory limit '{text}': give a size such as '4GiB' or '2000MB'"
        ) from None


def check_options(
    cluster: str | None,
    *,
    workers: int | None = None,
    jobs: int | None = None,
    memory_limit: str | None = None,
) -> None:
    """Refuse options that do not apply to ``cluster`` (see :func:`execution`).

    Raises
    ------
    ClusterError
        With a message naming the option and what to use instead.
    """
    kind = cluster or "threads"
    if kind not in CLUSTERS and "://" not in kind and ":" not in kind:
        raise ClusterError(
            f"unknown cluster '{kind}': use one of {', '.join(CLUSTERS)}, or the address "
            "of a running scheduler such as tcp://127.0.0.1:8786"
        )
    if jobs is not None and kind not in JOBQUEUE:
        raise ClusterError(
            f"--jobs only applies to batch-system clusters (--cluster {'|'.join(JOBQUEUE)}); "
            "use --workers for other clusters"
        )
    if kind == "threads" and memory_limit is not None:
        raise ClusterError("--memory-limit needs worker processes: add --cluster local (or slurm)")
    if kind in JOBQUEUE and workers is not None:
        raise ClusterError(f"--workers does not apply to --cluster {kind}: use --jobs")
    if kind not in CLUSTERS and (workers is not None or memory_limit is not None):
        raise ClusterError(
            "--workers and --memory-limit do not apply to a running scheduler: size its "
            "workers where they are started"
        )
    if memory_limit is not None:
        check_worker_memory(memory_limit)


def check_worker_memory(memory_limit: str) -> None:
    """Refuse a ``--memory-limit`` that is no size, or one below
    :data:`MIN_WORKER_MEMORY`, where a worker process has no room to run: its nanny
    restarts it again and again (the command waits forever) or the task fails as
    ``KilledWorker``, after the output was made.

    Raises
    ------
    ClusterError
        With the size to give instead.
    """
    if _parse_memory(memory_limit) < MIN_WORKER_MEMORY:
        raise ClusterError(
            f"--memory-limit {memory_limit} {TOO_LITTLE_FOR_A_WORKER}; give at least 256MiB "
            "(a few GiB for real data)"
        )


@contextlib.contextmanager
def execution(
    cluster: str | None = None,
    *,
    workers: int | None = None,
    jobs: int | None = None,
    memory_limit: str | None = None,
    quiet: bool = False,
) -> Iterator[Execution]:
    """Run the computations of the ``with`` block on ``cluster`` (see the module docs).

    Parameters
    ----------
    cluster
        ``None``/``"threads"``, ``"local"``, a batch system (``"slurm"``, ``"pbs"``,
        ``"sge"``, ``"lsf"``, ``"htcondor"``, ``"oar"``, ``"moab"``) or a scheduler address.
    workers
        Threads (threaded scheduler) or worker processes (``local``).
    jobs
        Batch jobs of workers (batch systems only).
    memory_limit
        Memory limit of a worker (``local``) or of a job (batch systems), e.g. ``"4GiB"``.
    quiet
        Silence distributed's log messages (of the scheduler, the nannies and the local
        workers): a failed task is then reported once, by the exception it raises.

    Yields
    ------
    Execution
        The client (``None`` for threads) and a one-line description.
    """
    check_options(cluster, workers=workers, jobs=jobs, memory_limit=memory_limit)
    kind = cluster or "threads"
    level = logging.CRITICAL if quiet else logging.WARNING
    if kind == "threads":
        threads = workers or _cores()
        with dask.config.set(scheduler="threads", num_workers=threads):
            yield Execution(None, f"threads ({threads})")
    elif kind == "local":
        with _local(workers, memory_limit, level) as execution_:
            yield execution_
    else:
        from distributed.utils import silence_logging_cmgr

        with silence_logging_cmgr(level):
            if kind in JOBQUEUE:
                with _jobqueue(kind, jobs or 1, memory_limit) as execution_:
                    yield execution_
            else:
                with _connect(kind) as execution_:
                    yield execution_


@contextlib.contextmanager
def _local(workers: int | None, memory_limit: str | None, level: int) -> Iterator[Execution]:
    from distributed import Client, LocalCluster

    n_workers, threads, limit = local_sizes(workers, memory_limit)
    environment = dict(dask.config.get("distributed.nanny.pre-spawn-environ", None) or {})
    with (
        dask.config.set(
            {"distributed.nanny.pre-spawn-environ": environment | WORKER_ENVIRONMENT}
            | LOCAL_SCHEDULER
        ),
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads,
            memory_limit=limit if limit is not None else "auto",
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            silence_logs=level,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.register_plugin(RowPlacement())
        client.register_plugin(TrimHeap())
        client.register_plugin(IgnoreInterrupts())
        info = client.scheduler_info()["workers"].values()
        per_worker = min((w.get("memory_limit") or 0 for w in info), default=0)
        memory = f", {nbytes_text(per_worker)} each" if per_worker else ""
        shape = f"{counted(n_workers, 'worker')} x {counted(threads, 'thread')}"
        yield Execution(client, f"LocalCluster ({shape}{memory})")


def _check_settings(kind: str, settings: dict[str, Any], memory_limit: str | None) -> None:
    """Refuse ``jobqueue.<kind>`` settings that would be unsafe or wrong in a job script."""

    def strings(value: Any, key: str) -> Iterator[tuple[str, str]]:
        if isinstance(value, str):
            yield key, value
        elif isinstance(value, dict):
            for name, item in value.items():
                yield from strings(item, f"{key}.{name}")
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                yield from strings(item, f"{key}[{i}]")

    for key, text in strings(settings, f"jobqueue.{kind}"):
        check_text(key, text)
    for key in ("name", "account", "project"):
        if settings.get(key) is not None:
            check_name(f"jobqueue.{kind}.{key}", settings[key])
    if settings.get("queue") is not None:
        check_name(f"jobqueue.{kind}.queue", settings["queue"], queue=True)
    style = JOBQUEUE[kind][1]
    if style is not None and settings.get("walltime") is not None:
        check_walltime(f"jobqueue.{kind}.walltime", settings["walltime"], style)
    if memory_limit is None and settings.get("memory") is not None:
        check_memory(f"jobqueue.{kind}.memory", settings["memory"])
    for key in ("cores", "processes"):
        value = settings.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise JobOptionError(
                f"jobqueue.{kind}.{key} must be a positive whole number, got {value!r}: set "
                f"it in dask's configuration (e.g. `{key}: 8` in ~/.config/dask/jobqueue.yaml)"
            )
    # HTCondor jobs also need their disk space
    sizes = ("cores", "memory", "disk") if kind == "htcondor" else ("cores", "memory")
    for key in sizes:
        if key == "memory" and memory_limit is not None:
            continue
        if settings.get(key) is None:
            name = f"DASK_JOBQUEUE__{kind.upper()}__{key.upper()}"
            raise ClusterError(
                f"{kind.upper()} jobs need a size: set {' and '.join(sizes)} of "
                f"jobqueue.{kind} in dask's configuration (e.g. ~/.config/dask/jobqueue.yaml, "
                f"or the environment variable {name}); jobqueue.{kind}.{key} is not set"
            )


def jobqueue_cluster(kind: str, memory_limit: str | None = None) -> Any:
    """The dask-jobqueue cluster ``kind`` (``"slurm"``, ``"pbs"``...), with no job started.

    Its settings come from dask's configuration, ``jobqueue.<kind>.*``; ``memory_limit``
    replaces ``jobqueue.<kind>.memory``. Its scheduler runs in this process; jobs start
    when it is scaled, and ``cluster.job_script()`` shows their script.

    Raises
    ------
    ClusterError
        dask-jobqueue is not installed, ``kind`` is not one of its clusters, or the
        size of a job (cores, memory) is not set.
    JobOptionError
        A setting has a control character or the wrong format.
    """
    if kind not in JOBQUEUE:
        raise ClusterError(f"unknown batch system '{kind}': use one of {', '.join(JOBQUEUE)}")
    try:
        import dask_jobqueue
    except ImportError:
        raise ClusterError(
            f"--cluster {kind} needs dask-jobqueue: pip install 'metatensor-dask[hpc]'"
        ) from None
    settings = dict(dask.config.get(f"jobqueue.{kind}", None) or {})
    _check_settings(kind, settings, memory_limit)
    kwargs: dict[str, Any] = {}
    if memory_limit is not None:
        kwargs["memory"] = format_bytes(_parse_memory(memory_limit)).replace(" ", "")
    if kind != "htcondor":  # its jobs run no script: the prologue becomes an argument
        # dask-jobqueue takes the deprecated env-extra when job-script-prologue is empty
        prologue = settings.get("job-script-prologue") or settings.get("env-extra") or []
        kwargs["job_script_prologue"] = [*_worker_exports(), *prologue]
    return getattr(dask_jobqueue, JOBQUEUE[kind][0])(**kwargs)


@contextlib.contextmanager
def _jobqueue(kind: str, jobs: int, memory_limit: str | None) -> Iterator[Execution]:
    from distributed import Client

    if jobs < 1:
        raise ClusterError(f"the number of jobs must be at least 1, got {jobs}")
    with jobqueue_cluster(kind, memory_limit) as cluster:
        # without it every job submission fails in the background and the run waits forever
        command = cluster.job_cls.submit_command
        if shutil.which(command) is None:
            raise ClusterError(
                f"{command} not found: --cluster {kind} submits its workers' jobs with "
                f"{command}; run on a login node of the {kind.upper()} cluster, or choose "
                "another --cluster"
            )
        with Client(cluster) as client:
            client.register_plugin(RowPlacement())
            client.register_plugin(TrimHeap())
            # adaptive with a fixed size: a job that is cancelled, killed or reaches its
            # walltime is replaced, and the scheduler recomputes what its worker held
            cluster.adapt(minimum_jobs=jobs, maximum_jobs=jobs)
            yield Execution(
                client,
                f"{type(cluster).__name__} ({jobs} jobs, scheduler {cluster.scheduler_address})",
            )


@contextlib.contextmanager
def _connect(address: str) -> Iterator[Execution]:
    from distributed import Client

    timeout = dask.config.get("distributed.comm.timeouts.connect")
    try:
        client = Client(address, timeout=timeout)
    except (OSError, TimeoutError) as error:
        raise ClusterError(
            f"cannot connect to the dask scheduler at {address} ({error}): check that it is "
            "running and that the address is right"
        ) from None
    with client:
        yield Execution(client, f"scheduler {address}")
