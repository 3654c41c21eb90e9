"""Where the batches of :func:`~metatensor_dask.io.ingest.write_batches` run, through a
window of batches computed and not yet committed, committed in item order.

:class:`Batches` follows the batches of a run. On a ``distributed`` cluster, each
worker computes its share of the window and appends the batches it holds (see
:mod:`.ingest_cluster`). Elsewhere, a pool of threads computes the batches (this
thread, under dask's synchronous scheduler) and this thread commits them in turn
(:func:`.ingest_threads.on_threads`). Which of them runs is dask's choice for a computation started
here: a ``scheduler`` setting first, then the default ``distributed`` client.
"""

from __future__ import annotations

import concurrent.futures
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import dask
import dask.base
import dask.local

from ..errors import MetatensorDaskError

__all__ = ["Batches", "active_client", "synchronous"]


def active_client() -> Any:
    """The ``distributed`` client that dask computes on here, ``None`` when it computes
    in this process (threads, or its synchronous scheduler): as dask chooses, a
    ``scheduler`` setting (``dask.config.set(scheduler=...)``) before the default
    client."""
    scheduler = dask.base.get_scheduler()
    owner = getattr(scheduler, "__self__", None)
    distributed = sys.modules.get("distributed")
    if distributed is not None and isinstance(owner, distributed.Client):
        return owner
    return None


def synchronous() -> bool:
    """Whether dask's synchronous scheduler is chosen (``scheduler="synchronous"``)."""
    return dask.base.get_scheduler() is dask.local.get_sync


class Batches:
    """The batches of a run: what is computed, committed, and the failure messages."""

    def __init__(
        self,
        function: Callable[[list[Any]], Any],
        items: list[Any],
        size: int,
        committed: int,
        window: int | None,
    ):
        self.function = function
        self.items = items
        self.size = size
        self.total = -(-len(items) // size)
        self.committed = committed
        self.submitted = committed
        self.window = window
        self.futures: deque[Any] = deque()  # computations not committed, in order
        self.workers: deque[str | None] = deque()  # where each was sent
        #: Set when a future given to :meth:`watch` or :meth:`replace` finishes.
        self.changed = threading.Event()
        #: On a cluster, the task holding the function, which every batch takes
        #: (:func:`.ingest_submit.send_function`).
        self.function_task: Any = None
        #: On a cluster, by batch index: how many times the worker computing it died.
        self.deaths: dict[int, int] = {}

    @property
    def computed(self) -> int:
        """Batches committed, and those computed (or failed) waiting for their turn.

        Counted from the futures themselves rather than by their callbacks: a batch
        computed again after its worker left would otherwise count twice whenever its
        first computation finished after all (or once when it had finished before)."""
        waiting = sum(1 for future in self.futures if future.done() and not future.cancelled())
        return self.committed + waiting

    def batch(self, index: int) -> list[Any]:
        return self.items[index * self.size : (index + 1) * self.size]

    def wanted(self, threads: int) -> bool:
        """Whether another batch may be computed: the window is not full."""
        limit = self.window if self.window is not None else 2 * threads
        return self.submitted < self.total and self.submitted < self.committed + max(limit, 1)

    def started(self, future: Any, worker: str | None = None) -> None:
        """Record the computation of the next batch (sent to ``worker``); not watched
        (see :meth:`watch`): on a cluster, only the task committing it needs to be."""
        self.futures.append(future)
        self.workers.append(worker)
        self.submitted += 1

    def replace(self, position: int, future: Any, worker: str | None) -> None:
        """The batch at ``position`` (among those not committed) computed again by
        ``future``, sent to ``worker``: the worker it was sent to left."""
        future.add_done_callback(self._changed)
        self.futures[position] = future
        self.workers[position] = worker

    def next_worker(self, threads: dict[str, int]) -> str | None:
        """The worker (of those with their ``threads``) to compute the next batch: the
        one the batch before went to while it holds less than its share of the window
        (the window in proportion to threads), else the one holding the fewest
        batches not committed per thread; ``None`` without workers.

        Each worker holds at most its share, whatever the number of batches. Runs of
        consecutive batches on one worker are committed one after the other there: a
        commit waits for the worker of the batch before only at the end of a run.
        Batches sent to the workers in turn made every commit wait for the other
        worker, which ran a computation (not interrupted) half the time: each worker
        then sat idle, the window full, for tens of milliseconds per batch."""
        held = {worker: 0 for worker in threads}
        for worker in self.workers:
            if worker in held:
                held[worker] += 1
        last = self.workers[-1] if self.workers else None
        if last in held:
            total = sum(threads.values())
            limit = self.window if self.window is not None else 2 * total
            if held[last] < limit * threads[last] / max(total, 1):
                return last
        return min(held, key=lambda w: (held[w] / max(threads[w], 1), w), default=None)

    def watch(self, future: Any) -> None:
        """Set :attr:`changed` when ``future`` finishes."""
        future.add_done_callback(self._changed)

    def _changed(self, future: Any) -> None:  # called from another thread
        self.changed.set()

    def finished(self) -> None:
        """The oldest batch is committed: forget it."""
        self.futures.popleft()
        self.workers.popleft()
        self.committed += 1

    def failure(self, index: int, error: Exception, where: str) -> MetatensorDaskError:
        """The error of batch ``index``, failed with ``error``: which items, why, and
        what to do. A batch that distributed stopped after the workers computing it
        died (``KilledWorker``, sent to no worker in particular) says why they die, and
        that a later batch may be the cause: distributed counts the deaths against all
        the batches the worker held."""
        last = min((index + 1) * self.size, len(self.items)) - 1
        cause = f"{type(error).__name__}: {error}"
        if type(error).__name__ == "KilledWorker":
            from .ingest_worker import KILLED_BESIDE

            cause = f"{cause} ({KILLED_BESIDE})"
        before = {0: "no batch before it is", 1: "the batch before it is"}
        return MetatensorDaskError(
            f"batch {index} (items {index * self.size} to {last}, first item "
            f"{self.items[index * self.size]!r}) failed: {cause}; "
            f"{before.get(index, f'the {index} batches before it are')} committed to "
            f"{where}: fix the problem and call write_batches(..., resume=True) to "
            "continue after them"
        )

    def cancel(self) -> None:
        """Stop the computations: a pool's are cancelled, a cluster's released (the
        scheduler forgets them, and the function's task; cancelling futures whose
        dependencies are failing can break the client's connection)."""
        for future in self.futures:
            if isinstance(future, concurrent.futures.Future):
                future.cancel()
        self.futures.clear()
        self.workers.clear()
        self.function_task = None
