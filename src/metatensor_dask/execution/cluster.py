"""Where the command line runs dask computations.

* ``None`` or ``"threads"`` (the default): dask's threaded scheduler in this process;
* ``"local"``: a :class:`distributed.LocalCluster` of worker processes on this machine,
  each with a memory limit (workers spill to disk past dask's ``distributed.worker.memory``
  thresholds); inside a SLURM allocation it is sized from ``SLURM_CPUS_ON_NODE`` and
  ``SLURM_MEM_PER_NODE``;
* ``"slurm"``: a :class:`dask_jobqueue.SLURMCluster` (the ``hpc`` extra), configured by
  dask-jobqueue's own ``jobqueue.slurm.*`` settings, with ``jobs`` batch jobs kept alive
  (a job that dies or is cancelled is replaced);
* anything else is the address of a running scheduler (``tcp://host:8786``).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dask
from dask.utils import format_bytes, parse_bytes

from ..errors import MetatensorDaskError

__all__ = ["ClusterError", "Execution", "check_options", "execution", "local_sizes"]

CLUSTERS = ("threads", "local", "slurm")


class ClusterError(MetatensorDaskError):
    """A cluster cannot be started or reached as asked."""


@dataclass
class Execution:
    """Where computations run: ``client`` is ``None`` for the threaded scheduler."""

    client: Any
    description: str


def _cores() -> int:
    slurm = os.environ.get("SLURM_CPUS_ON_NODE")
    if slurm:
        return int(slurm)
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
        workers = cores if cores <= 4 else math.ceil(math.sqrt(cores))
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


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


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
    if jobs is not None and kind != "slurm":
        raise ClusterError(
            "--jobs only applies to --cluster slurm; use --workers for other clusters"
        )
    if kind == "threads" and memory_limit is not None:
        raise ClusterError("--memory-limit needs worker processes: add --cluster local (or slurm)")
    if kind == "slurm" and workers is not None:
        raise ClusterError("--workers does not apply to --cluster slurm: use --jobs")
    if kind not in CLUSTERS and (workers is not None or memory_limit is not None):
        raise ClusterError(
            "--workers and --memory-limit do not apply to a running scheduler: size its "
            "workers where they are started"
        )
    if memory_limit is not None:
        _parse_memory(memory_limit)


@contextlib.contextmanager
def execution(
    cluster: str | None = None,
    *,
    workers: int | None = None,
    jobs: int | None = None,
    memory_limit: str | None = None,
) -> Iterator[Execution]:
    """Run the computations of the ``with`` block on ``cluster`` (see the module docs).

    Parameters
    ----------
    cluster
        ``None``/``"threads"``, ``"local"``, ``"slurm"`` or a scheduler address.
    workers
        Threads (threaded scheduler) or worker processes (``local``).
    jobs
        SLURM batch jobs (``slurm`` only).
    memory_limit
        Memory limit of a worker (``local``) or of a job (``slurm``), e.g. ``"4GiB"``.

    Yields
    ------
    Execution
        The client (``None`` for threads) and a one-line description.
    """
    check_options(cluster, workers=workers, jobs=jobs, memory_limit=memory_limit)
    kind = cluster or "threads"
    if kind == "threads":
        threads = workers or _cores()
        with dask.config.set(scheduler="threads", num_workers=threads):
            yield Execution(None, f"threads ({threads})")
    elif kind == "local":
        with _local(workers, memory_limit) as execution_:
            yield execution_
    elif kind == "slurm":
        with _slurm(jobs or 1, memory_limit) as execution_:
            yield execution_
    else:
        with _connect(kind) as execution_:
            yield execution_


@contextlib.contextmanager
def _local(workers: int | None, memory_limit: str | None) -> Iterator[Execution]:
    from distributed import Client, LocalCluster

    n_workers, threads, limit = local_sizes(workers, memory_limit)
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads,
            memory_limit=limit if limit is not None else "auto",
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as client,
    ):
        info = client.scheduler_info()["workers"].values()
        per_worker = min((w.get("memory_limit") or 0 for w in info), default=0)
        memory = f", {format_bytes(per_worker)} each" if per_worker else ""
        shape = f"{_count(n_workers, 'worker')} x {_count(threads, 'thread')}"
        yield Execution(client, f"LocalCluster ({shape}{memory})")


@contextlib.contextmanager
def _slurm(jobs: int, memory_limit: str | None) -> Iterator[Execution]:
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise ClusterError(
            "--cluster slurm needs dask-jobqueue: pip install 'metatensor-dask[hpc]'"
        ) from None
    from distributed import Client

    if jobs < 1:
        raise ClusterError(f"the number of jobs must be at least 1, got {jobs}")
    kwargs: dict[str, Any] = {}
    if memory_limit is not None:
        kwargs["memory"] = format_bytes(_parse_memory(memory_limit)).replace(" ", "")
    for key in ("cores", "memory"):
        if key not in kwargs and dask.config.get(f"jobqueue.slurm.{key}", None) is None:
            raise ClusterError(
                f"SLURM jobs need a size: set jobqueue.slurm.cores and jobqueue.slurm.memory "
                "in dask's configuration (e.g. ~/.config/dask/jobqueue.yaml, or the environment "
                f"variable DASK_JOBQUEUE__SLURM__{key.upper()}); jobqueue.slurm.{key} is not set"
            )
    with SLURMCluster(**kwargs) as cluster, Client(cluster) as client:
        # adaptive with a fixed size: a job that is cancelled, killed or reaches its
        # walltime is replaced, and the scheduler recomputes what its worker held
        cluster.adapt(minimum_jobs=jobs, maximum_jobs=jobs)
        yield Execution(
            client, f"SLURMCluster ({jobs} jobs, scheduler {cluster.scheduler_address})"
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
