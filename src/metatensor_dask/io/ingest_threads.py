"""The batches of :func:`~metatensor_dask.io.ingest.write_batches` without a
``distributed`` cluster: computed by a pool of threads (or in this thread, one at a
time, under dask's synchronous scheduler) and committed in item order by this thread.
"""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dask

from ._core_library import load_core_library
from ._first_call import FirstCallAlone
from .ingest_batch import Target, append_batch
from .ingest_progress import BatchProgress
from .ingest_schedule import Batches, synchronous

__all__ = ["on_threads"]


class _InThisThread:
    """Runs each function submitted at once, in this thread (dask's synchronous
    scheduler: batches computed one at a time, where a debugger sees them)."""

    def submit(self, function: Callable[..., Any], *arguments: Any) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            future.set_result(function(*arguments))
        except Exception as error:
            future.set_exception(error)
        return future


def on_threads(batches: Batches, target: Target, progress: BatchProgress) -> None:
    """Batches computed by a pool of threads (in this thread, one at a time, under
    dask's synchronous scheduler), committed in order by this thread."""
    if synchronous():
        _compute_and_commit(batches, target, progress, _InThisThread(), 1)
        return
    threads = int(dask.config.get("num_workers", None) or os.cpu_count() or 1)
    load_core_library()  # before the threads make their first metatensor objects
    # the first batch alone: the libraries it uses set themselves up in one thread
    batches.function = FirstCallAlone(batches.function)
    with ThreadPoolExecutor(threads) as pool:
        _compute_and_commit(batches, target, progress, pool, threads)


def _compute_and_commit(
    batches: Batches, target: Target, progress: BatchProgress, pool: Any, threads: int
) -> None:
    """Batches computed by ``pool`` (of ``threads``), committed in order by this thread."""
    try:
        root = None  # the root committed last: the first batch reads the store's
        while batches.committed < batches.total:
            while batches.wanted(threads):
                batches.started(pool.submit(batches.function, batches.batch(batches.submitted)))
            index = batches.committed
            try:
                result = _wait(batches.futures[0], progress, batches)
                first = batches.items[index * batches.size]
                root = append_batch(target, index, first, result, root)
            except Exception as error:
                raise batches.failure(index, error, target.lock.where) from error
            del result
            batches.finished()
            progress.update(batches.computed, batches.committed)
    finally:
        batches.cancel()


def _wait(future: Any, progress: BatchProgress, batches: Batches) -> Any:
    """The result of ``future``, the progress redrawn while waiting."""
    if not progress.show:
        return future.result()
    while True:
        try:
            return future.result(timeout=BatchProgress.REDRAW)
        except TimeoutError:
            if future.done():
                raise  # raised by the batch itself
            progress.update(batches.computed, batches.committed)
