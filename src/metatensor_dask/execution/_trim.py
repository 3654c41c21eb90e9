"""Workers giving their free heap memory back to the system, periodically.

A worker's tasks allocate arrays smaller than glibc's ``mmap`` threshold (pieces that a
rechunk cuts, index arrays, the temporaries of kernels) from the heap; once freed, the
holes they leave between live blocks stay resident (only free memory at the top of the
heap is returned, beyond ``MALLOC_TRIM_THRESHOLD_``). :class:`TrimHeap` has every worker
call ``malloc_trim(0)`` (see :mod:`~metatensor_dask.execution._memory`) every
``interval`` seconds, which returns those holes too.
"""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin
from tornado.ioloop import PeriodicCallback

from ._memory import give_back_free_memory

__all__ = ["TrimHeap"]

_CALLBACK = "metatensor-dask-trim-heap"


def _trim() -> None:
    give_back_free_memory()


class TrimHeap(WorkerPlugin):
    """A worker plugin returning the workers' free heap memory every ``interval`` s.

    Parameters
    ----------
    interval
        Seconds between two trims.
    """

    name = "metatensor-dask-trim-heap"

    def __init__(self, interval: float = 1.0):
        self.interval = interval

    def setup(self, worker: Any) -> None:
        """Start trimming on ``worker`` (nothing where the C library has no trim)."""
        if not give_back_free_memory():
            return
        callback = PeriodicCallback(_trim, self.interval * 1000)
        worker.periodic_callbacks[_CALLBACK] = callback
        callback.start()

    def teardown(self, worker: Any) -> None:
        """Stop trimming on ``worker``."""
        callback = worker.periodic_callbacks.pop(_CALLBACK, None)
        if callback is not None:
            callback.stop()
