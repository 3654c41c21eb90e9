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
batches sent to it are computed again on the workers left and, when it ran an append of
the chain, the chain is submitted again from the first batch not seen committed, each
append pinned to the worker then holding its batch (an append finding its batch in the
store's root writes nothing). A batch whose workers die each time they compute it fails
once distributed's allowed failures are exceeded. This process keeps the window full
and watches the workers.

A chain holds at most :data:`CHAIN` appends: the scheduler keeps every task that a task
it holds depends on (to compute it again if its result is lost), so one chain of all the
appends of a run kept them all, with their batches' computations, until the run ended
(about 13 KiB of the scheduler's memory per batch, and some in the workers). The append
starting the next chain is submitted once the last one of the chain before is done, and
reads the root from the store.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import dask

from .ingest_batch import Target, append_batch
from .ingest_progress import BatchProgress
from .ingest_schedule import Batches
from .ingest_submit import compute, start
from .ingest_worker import killed

__all__ = ["on_cluster"]

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


def on_cluster(
    client: Any, batches: Batches, target: Target, progress: BatchProgress, function: bytes
) -> None:
    """Batches computed on the workers of ``client``, each committed by the worker that
    holds it (so that no batch travels), after the commit before it: the scheduler runs
    the commits in order without waiting for this process.

    ``function`` is the user's function, pickled (see :func:`.ingest_submit.start`,
    which sends the first window of batches)."""
    commits: deque[_Commit] = deque()  # submitted, not yet seen done, in order
    start(client, batches, function)
    try:
        for position, worker in enumerate(list(batches.workers)):
            if worker is not None and len(commits) == position and _chainable(commits):
                commits.append(_submit(client, batches, target, commits, worker))
            else:  # committed once computed, see _commit_in_order
                batches.watch(batches.futures[position])
        _commit_in_order(client, batches, target, progress, commits, batches.function_task)
    finally:
        commits.clear()  # released, see Batches.cancel


def _commit_in_order(
    client: Any,
    batches: Batches,
    target: Target,
    progress: BatchProgress,
    commits: deque[_Commit],
    function: Any,
) -> None:
    workers: dict[str, int] = {}  # their threads, read again every second: they come and go
    # the workers that ran or run an append of the current chain (see _forget_lost)
    chain = {c.holder for c in commits}
    checked = 0.0
    while batches.committed < batches.total:
        # cleared before looking at the futures: one finishing from now on sets it again
        batches.changed.clear()
        if not workers or time.monotonic() - checked > WORKERS_CHECKED:
            before, workers, checked = workers, client.nthreads(), time.monotonic()
            if _forget_lost(commits, chain, workers):
                # their commits are submitted again once their batches are computed
                for position in range(len(commits), len(batches.futures)):
                    batches.watch(batches.futures[position])
            _compute_lost(client, batches, workers, before, function)
        while batches.wanted(max(sum(workers.values()), 1)):
            # each worker computes its share of the window: its memory holds at most
            # that many batches, however long the run
            worker = batches.next_worker(workers)
            computed = compute(client, batches, batches.submitted, worker, function)
            batches.started(computed, worker)
            chained = len(commits) == len(batches.futures) - 1 and _chainable(commits)
            if worker is not None and chained:
                # submitted with its batch: sent to the worker as soon as the batch
                # and the commit before it are done (only the commit is watched: each
                # future watched costs this process a thread's callback when it ends)
                _chained(chain, commits, _submit(client, batches, target, commits, worker))
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
            _chained(chain, commits, _submit(client, batches, target, commits))
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


def _compute_lost(
    client: Any,
    batches: Batches,
    workers: dict[str, int],
    before: dict[str, int],
    function: Any,
) -> None:
    """The batches sent to a worker that left, computed again on the workers left (in
    item order, each worker its share of the window; their commits are submitted
    again, see :func:`_forget_lost`); the batches it computed left with it.

    ``before``: the threads of the workers at the previous look. A batch whose workers
    died while computing it more than ``distributed.scheduler.allowed-failures`` times
    (see :func:`_count_deaths`) is not computed again: it fails, naming the cause (its
    function kills the process computing it, a worker killed for exceeding its memory
    limit, say), and the run stops once the batches before it are committed."""
    _count_deaths(client, batches, workers, before)
    allowed = int(dask.config.get("distributed.scheduler.allowed-failures", 3))
    for position, worker in enumerate(batches.workers):
        if worker is not None and worker not in workers:
            batches.workers[position] = None  # not counted where it went
            index = batches.committed + position
            deaths = batches.deaths.get(index, 0)
            if deaths > allowed:
                future = client.submit(killed, deaths, allowed, pure=False)
                batches.replace(position, future, None)
                continue
            now = batches.next_worker(workers)
            future = compute(client, batches, index, now, function)
            batches.replace(position, future, now)


def _count_deaths(
    client: Any, batches: Batches, workers: dict[str, int], before: dict[str, int]
) -> None:
    """Count, in :attr:`.Batches.deaths`, a death of the worker computing each batch
    sent to a worker that left: the first of its batches not finished there, as many as
    it had threads (a worker runs the batches sent to it in order). Those it finished,
    and those waiting for a thread, did not kill it. Finished means as the scheduler saw
    it when it removed the worker (see :func:`_unfinished_on`): this process hears of a
    batch finished later, and under load would blame a batch that was finished for the
    death of the worker that computed the next one."""
    running: dict[str, int] = {}
    unfinished: dict[str, set[str] | None] = {}
    for position, (future, worker) in enumerate(zip(batches.futures, batches.workers, strict=True)):
        if worker is None or worker in workers:
            continue
        if worker not in unfinished:
            unfinished[worker] = _unfinished_on(client, worker)
        keys = unfinished[worker]
        if (future.key not in keys) if keys is not None else future.status != "pending":
            continue
        if running.get(worker, 0) < before.get(worker, 1):
            index = batches.committed + position
            batches.deaths[index] = batches.deaths.get(index, 0) + 1
        running[worker] = running.get(worker, 0) + 1


def _unfinished_on(client: Any, worker: str) -> set[str] | None:
    """The keys of the tasks that the scheduler had given ``worker`` and not seen
    finished when it last removed it (its event of the removal), or ``None`` without
    such an event."""
    for _, event in reversed(client.get_events(worker)):
        if isinstance(event, dict) and event.get("action") == "remove-worker":
            return {str(key) for key in event.get("processing-tasks", ())}
    return None


def _submit(
    client: Any,
    batches: Batches,
    target: Target,
    commits: deque[_Commit],
    worker: str | None = None,
) -> _Commit:
    """The task appending the next batch, after those of ``commits``, on ``worker`` (the
    one its batch was sent to), else on the worker holding the computed batch.

    A batch computed that no worker holds was held by a worker that left, which this
    process has not seen yet: its append is pinned to that worker too, and forgotten
    with it (see :func:`_forget_lost`). Sent anywhere, it would have waited forever for
    the batch, which the scheduler computes again on that worker only."""
    index = batches.committed + len(commits)
    future = batches.futures[len(commits)]
    holders = [worker] if worker else list(client.who_has([future]).get(future.key, ()))
    sent = batches.workers[len(commits)]
    if not holders and sent is not None and future.status == "finished":
        holders = [sent]
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


def _chained(chain: set[str | None], commits: deque[_Commit], commit: _Commit) -> None:
    """``commit`` appended to ``commits``, its worker to those of its ``chain`` (the
    chain's first append starts them again)."""
    if commit.link == 0:
        chain.clear()
    chain.add(commit.holder)
    commits.append(commit)


def _forget_lost(commits: deque[_Commit], chain: set[str | None], workers: dict[str, int]) -> bool:
    """Forget (release) every append not yet seen done when a worker that ran an append
    of the current chain left: those pinned to it would wait for it forever, and each
    later one needs the root document that the append before it returned, which may
    have left with it (held by that worker only: the scheduler would run that append
    again, pinned to the worker that left). The loop submits them again once their
    batches are computed (those the worker held: again, see :func:`_compute_lost`),
    the first one reading the store's root. An append whose batch is committed already
    (done, not yet seen done here) then writes nothing; a task of the forgotten ones
    still running writes the bytes its new copy writes. Returns whether any was
    forgotten."""
    if all(worker is None or worker in workers for worker in chain):
        return False
    chain.clear()
    if not commits:
        return False
    commits.clear()
    return True
