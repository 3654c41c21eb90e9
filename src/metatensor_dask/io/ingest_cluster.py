"""The batches of :func:`~metatensor_dask.io.ingest.write_batches` on a ``distributed``
cluster: each computed by a worker, then appended (:func:`.ingest_batch.append_batch`:
planned, stored and committed, one task) by the worker holding it, after the batch
before it.

The task appending a batch is submitted with the batch, pinned to the worker the batch
is sent to: the scheduler sends it to that worker as soon as the batch and the commit
before it are done, without a round trip through this process (submitted once this
process saw the batch computed, it came after the worker had started its next batch
whenever one was free to start, and waited for it). Both may only run on that worker:
distributed's work stealing would otherwise move either to an idle worker, and the
batch with it (50 MiB sent between the workers, for batches of 16 silicon cells).
Consecutive batches go to one worker, up to its share of the window
(:meth:`.ingest_schedule.Batches.next_worker`), so that most commits follow one
another on one worker. When a worker leaves (a batch job ending, a node lost), the
batches sent to it are computed again on the workers left and the chain is submitted
again from the first batch it held, each append pinned to the worker then holding its
batch. This process keeps the window full and watches the workers.

A chain holds at most :data:`CHAIN` appends: the scheduler keeps every task that a task
it holds depends on (to compute it again if its result is lost), so one chain of all the
appends of a run kept them all, with their batches' computations, until the run ended
(about 13 KiB of the scheduler's memory per batch, and some in the workers). The append
starting the next chain is submitted once the last one of the chain before is done, and
reads the root from the store.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import MetatensorDaskError
from .ingest_batch import Target, append_batch
from .ingest_progress import BatchProgress
from .ingest_schedule import Batches
from .ingest_worker import Shipped, call

__all__ = ["check_sendable", "on_cluster", "shipped"]

#: Seconds between two looks at the workers (a round trip to the scheduler).
WORKERS_CHECKED = 1.0

#: The most appends chained one after the other (see the module's documentation).
CHAIN = 128


@dataclass
class _Commit:
    """The task appending one batch, submitted and not yet seen done."""

    #: The worker holding the batch, to which it is pinned (``None``: a failed batch).
    holder: str | None
    #: The task (the next batch is appended after it, from the root it returns).
    appended: Any
    #: Its place in its chain (0: it reads the root from the store).
    link: int = 0


def _chainable(commits: deque[_Commit]) -> bool:
    """Whether the next append may be submitted now: after the last one submitted, in
    the same chain, or starting a new one once every append before it is done."""
    return not commits or commits[-1].link + 1 < CHAIN


def shipped(function: Callable[[list[Any]], Any]) -> bytes:
    """``function`` pickled as distributed sends it to its workers, before anything is
    written: a function that can not be sent (it refers to an object that does not
    pickle, such as a featomic calculator made outside of it) is refused by name."""
    from distributed.protocol.pickle import dumps

    try:
        return dumps(function)
    except Exception as error:
        raise MetatensorDaskError(
            f"the function given to write_batches ({_name(function)}) can not be sent to the "
            f"workers of the distributed client: pickling it failed ({type(error).__name__}: "
            f"{error}); it refers to an object that can not be pickled, such as a featomic "
            "calculator created outside of it: create such objects in the function (once "
            "per worker with functools.cache), or in a module that the workers import"
        ) from None


def check_sendable(items: list[Any], size: int, index: int, committed: int | None) -> None:
    """Refuse the batch ``index`` (of ``size`` items) when its items do not pickle, so
    can not reach a worker (distributed's own error names neither the batch nor the
    remedy); ``committed``: the batches committed, ``None`` before anything is written."""
    from distributed.protocol.pickle import dumps

    try:
        dumps(items[index * size : (index + 1) * size])
    except Exception as error:
        written = (
            "nothing was written"
            if committed is None
            else f"the {committed} batches committed stay (resume=True continues after them)"
        )
        raise MetatensorDaskError(
            f"batch {index} (first item {items[index * size]!r}) can not be sent to the "
            f"workers of the distributed client: pickling its items failed "
            f"({type(error).__name__}: {error}); on a cluster every item must pickle: pass "
            f"items that do (indices, file names) and make the objects in the function; "
            f"{written}"
        ) from None


def _name(function: Any) -> str:
    return getattr(function, "__qualname__", None) or type(function).__name__


def on_cluster(
    client: Any, batches: Batches, target: Target, progress: BatchProgress, function: bytes
) -> None:
    """Batches computed on the workers of ``client``, each committed by the worker that
    holds it (so that no batch travels), after the commit before it: the scheduler runs
    the commits in order without waiting for this process.

    The ``function`` (pickled, see :func:`shipped`) is the result of one task, which
    every batch takes: submitted with each batch, it would be pickled, sent and
    unpickled again every time, with every object it refers to (the list of all
    structures, say). Each worker unpickles it once (see :func:`.ingest_worker.call`), and a worker
    lost with it gets it again from that task."""
    commits: deque[_Commit] = deque()  # submitted, not yet seen done, in order
    digest = hashlib.blake2b(function, digest_size=16).hexdigest()
    sent = client.submit(Shipped, digest, function, key=f"write_batches-function-{digest}")
    try:
        _commit_in_order(client, batches, target, progress, commits, sent)
    finally:
        commits.clear()  # released, see Batches.cancel
        del sent


def _commit_in_order(
    client: Any,
    batches: Batches,
    target: Target,
    progress: BatchProgress,
    commits: deque[_Commit],
    function: Any,
) -> None:
    name = _name(batches.function)  # the tasks of the batches are named after it
    workers: dict[str, int] = {}  # their threads, read again every second: they come and go
    checked = 0.0
    while batches.committed < batches.total:
        # cleared before looking at the futures: one finishing from now on sets it again
        batches.changed.clear()
        if not workers or time.monotonic() - checked > WORKERS_CHECKED:
            workers, checked = client.nthreads(), time.monotonic()
            if _forget_lost(commits, workers):
                # their commits are submitted again once their batches are computed
                for position in range(len(commits), len(batches.futures)):
                    batches.watch(batches.futures[position])
            _compute_lost(client, batches, workers, function, name)
        while batches.wanted(max(sum(workers.values()), 1)):
            # each worker computes its share of the window: its memory holds at most
            # that many batches, however long the run
            worker = batches.next_worker(workers)
            computed = _compute(client, batches, batches.submitted, worker, function, name)
            batches.started(computed, worker)
            chained = len(commits) == len(batches.futures) - 1 and _chainable(commits)
            if worker is not None and chained:
                # submitted with its batch: sent to the worker as soon as the batch
                # and the commit before it are done (only the commit is watched: each
                # future watched costs this process a thread's callback when it ends)
                commits.append(_submit(client, batches, target, commits, worker))
            else:  # its commit is submitted once it is computed, see below
                batches.watch(computed)
        # the commits of the batches computed meanwhile (after a worker left: computed
        # again; after a chain's last commit: the next chain's), each pinned to the
        # worker holding its batch
        while (
            len(commits) < len(batches.futures)
            and batches.futures[len(commits)].done()
            and _chainable(commits)
        ):
            commits.append(_submit(client, batches, target, commits))
        if commits and commits[0].appended.done():
            index = batches.committed
            appended = commits.popleft().appended
            try:
                if appended.status != "finished":  # the root it returns is not fetched
                    appended.result()  # raises the batch's error
            except Exception as error:
                raise batches.failure(index, error, target.lock.where) from error
            del appended
            batches.finished()
            progress.update(batches.computed, batches.committed)
            continue
        # woken by a computation or a commit finishing (failed or cancelled ones too),
        # else to redraw the progress or look at the workers. Not distributed's
        # ``wait``: each of its timeouts raises an exception whose traceback holds the
        # futures waited for in a reference cycle, so that the batches they hold stayed
        # in the workers' memory until Python's garbage collector ran, which a long run
        # made ever more likely to exceed the window
        batches.changed.wait(BatchProgress.REDRAW if progress.show else WORKERS_CHECKED)
        progress.update(batches.computed, batches.committed)


def _compute(
    client: Any, batches: Batches, index: int, worker: str | None, function: Any, name: str
) -> Any:
    """The computation of batch ``index`` on ``worker``, and there only: work stealing
    would move it to an idle worker, and its commit (pinned to ``worker``) would then
    fetch the whole batch from there."""
    pin = {"workers": [worker], "allow_other_workers": False} if worker else {}
    key = f"{name}-{uuid.uuid4().hex}"
    try:
        return client.submit(call, function, batches.batch(index), key=key, **pin)
    except Exception:
        # when the batch's items are what could not be sent, say so with the remedy
        check_sendable(batches.items, batches.size, index, batches.committed)
        raise


def _compute_lost(
    client: Any, batches: Batches, workers: dict[str, int], function: Any, name: str
) -> None:
    """The batches sent to a worker that left, computed again on the workers left (in
    item order, each worker its share of the window; their commits are submitted
    again, see :func:`_forget_lost`); the batches it computed left with it."""
    for position, worker in enumerate(batches.workers):
        if worker is not None and worker not in workers:
            batches.workers[position] = None  # not counted where it went
            now = batches.next_worker(workers)
            future = _compute(client, batches, batches.committed + position, now, function, name)
            batches.replace(position, future, now)


def _submit(
    client: Any,
    batches: Batches,
    target: Target,
    commits: deque[_Commit],
    worker: str | None = None,
) -> _Commit:
    """The task appending the next batch, after those of ``commits``, on ``worker`` (the
    one its batch was sent to), else on the worker holding the computed batch."""
    index = batches.committed + len(commits)
    future = batches.futures[len(commits)]
    holders = [worker] if worker else list(client.who_has([future]).get(future.key, ()))
    # (none when the batch failed: its task fails at once, wherever it runs); first
    # among the tasks queued on the worker: appending frees a batch
    pin = {"workers": holders[:1], "allow_other_workers": False} if holders else {}
    # the first batch not committed is planned from the store's root document
    before = commits[-1].appended if commits else None
    appended = client.submit(
        append_batch, target, index, batches.items[index * batches.size], future, before,
        pure=False, priority=1, **pin,
    )  # fmt: skip
    batches.watch(appended)
    link = commits[-1].link + 1 if commits else 0
    return _Commit(holders[0] if holders else None, appended, link)


def _forget_lost(commits: deque[_Commit], workers: dict[str, int]) -> bool:
    """Forget (release) the commits from the first whose batch was held by a worker that
    left: pinned to it, they would wait for it forever. Its batches are computed again
    on the workers left (:func:`_compute_lost`), and the loop submits these commits again, after
    the ones before (or the store's root, when none is left). A task of the forgotten
    ones still running writes the bytes its new copy writes. Returns whether any was
    forgotten."""
    lost = [c.holder is not None and c.holder not in workers for c in commits]
    if True not in lost:
        return False
    for _ in range(len(commits) - lost.index(True)):
        commits.pop()
    return True
