"""Keeping the tasks of the same rows on the same worker of a cluster, and the reads of
each worker a few at a time.

The arrays of a block (values, every gradient, and what operations derive from them) are
co-partitioned along their first axis: chunk ``i`` of a gradient pairs with chunk ``i``
of the values, and the stored chunks that a read cuts into these rows sit at the same
place in their own array. Left to itself, distributed's scheduler sends the reads of
these arrays to whichever worker has a free thread, so the chunks that a task combines
are often read on different workers and one of them crosses over: on a 2-worker
``LocalCluster`` the demo pipeline moved 2 to 3 GiB between workers for 4 GiB read.

:class:`RowPlacement` gives each worker a contiguous range of every array's rows
instead: task ``(name, i, ...)`` of an array of ``n`` chunks along its first axis goes to
worker ``floor(workers * (i + 1/2) / n)``, so the chunks of the same rows, of every
array, land on the same worker. The restriction is loose: when that worker has gone, any
worker runs the task. Tasks that carry their own restrictions keep them, and arrays of
fewer chunks than workers are left to the scheduler.

Distributed holds back root tasks (those without dependencies: the reads) only when they
are unrestricted; a worker given all the reads of its range at once runs one whenever no
other task is ready, which happens after every task (its dependents reach the worker one
message later), so the reads ran far ahead of the tasks that consume them: a worker of
the demo pipeline held ~1 GiB of chunks, at the spill threshold. :class:`RowPlacement`
therefore keeps the root tasks of each worker back (in distributed's ``no-worker`` state,
restricted to :data:`HELD`, a worker that never exists) and releases them in the order of
their priorities (see :class:`Pacing`), unless the scheduler fails tasks left without a
worker for a time (``distributed.scheduler.no-workers-timeout``).
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Iterable
from typing import Any, Literal

from distributed.diagnostics.plugin import SchedulerPlugin

__all__ = ["HELD", "Pacing", "RowPlacement", "row_positions"]


#: Tasks whose keys number pieces rather than rows: dask's rechunk numbers the pieces
#: it cuts from each chunk in one sequence. Left to the scheduler, they run where the
#: chunk they cut is.
NOT_ROWS = ("rechunk-split-",)

#: The worker restriction of a root task kept back: no worker has this address, so the
#: scheduler leaves the task in ``no-worker`` until it is released.
HELD = "metatensor-dask-held"

#: States of a released root task that stopped running without a result.
_GONE = ("released", "forgotten", "erred")


def row_positions(keys: Iterable[Any]) -> dict[Any, tuple[int, int]]:
    """``{key: (i, n)}`` for the keys ``(name, i, ...)`` of arrays of ``n`` chunks along
    their first axis (``n`` is the largest ``i`` + 1 among the keys of ``name``), except
    the names starting with one of :data:`NOT_ROWS`."""
    counts: dict[str, int] = {}
    found = []
    for key in keys:
        if (
            isinstance(key, tuple)
            and len(key) > 1
            and type(key[1]) is int
            and isinstance(key[0], str)
            and not key[0].startswith(NOT_ROWS)
        ):
            counts[key[0]] = max(counts.get(key[0], 0), key[1] + 1)
            found.append(key)
    return {key: (key[1], counts[key[0]]) for key in found}


class Pacing:
    """Which kept-back root tasks of each worker to release now.

    The next kept-back task of a worker, in priority order, is released while

    * the data the worker holds (all of it: what the released tasks read and what was
      computed from it), with the expected size of the root tasks released to it and
      still running (the mean size of the finished root tasks of their group, else
      half the budget), is under the budget: ``fraction`` of the worker's memory limit
      (``default_budget`` bytes for workers without a limit); or
    * the worker has fewer tasks to run than threads: nothing it holds can go on
      without more input, so holding back would leave it idle (and could leave a task
      waiting forever for inputs that are kept back).

    Data in memory can wait for kept-back tasks, which then go first: those that are
    the last inputs missing to a task fed by a new result are released at once, whatever
    the budget (the data already held waits for them); those that such a task waits for
    through one other task that waits for nothing else (a read whose piece a rechunk
    joins to the chunk in memory) are the next released within the rules above. Without
    this, reads that dask's order puts late (the gradient samples of a block, the next
    stored chunk of a rechunk) kept the chunks read before them waiting while other
    reads went ahead: half a GiB per worker of the demo pipeline.

    Parameters
    ----------
    fraction
        Share of a worker's memory limit that its data may fill before root tasks are
        kept back.
    default_budget
        The budget of a worker without a memory limit, in bytes.
    """

    def __init__(self, fraction: float = 0.125, default_budget: int = 512 * 2**20):
        self.fraction = fraction
        self.default_budget = default_budget
        self.held: dict[str, list[tuple[Any, Any]]] = {}
        self.running: dict[str, set[Any]] = {}
        self.owner: dict[Any, str] = {}
        self.sizes: dict[str, tuple[int, int]] = {}
        self.holder: dict[Any, str] = {}
        self.first: dict[str, deque[Any]] = {}

    def hold(self, worker: str, key: Any, priority: Any) -> None:
        """Keep ``key`` (of ``priority``) back for ``worker``."""
        heapq.heappush(self.held.setdefault(worker, []), (priority, key))
        self.holder[key] = worker

    def done(self, key: Any, group: str | None = None, nbytes: int = -1) -> bool:
        """Stop counting released ``key`` as running (it finished, giving ``nbytes`` to
        the mean of ``group``, or was released); whether it was counted."""
        worker = self.owner.pop(key, None)
        if worker is None:
            return False
        self.running[worker].discard(key)
        if group is not None and nbytes >= 0:
            total, count = self.sizes.get(group, (0, 0))
            self.sizes[group] = (total + nbytes, count + 1)
        return True

    def orphans(self, worker: str) -> list[tuple[Any, Any]]:
        """Remove and return what was kept back for ``worker`` (which has left)."""
        for key in self.running.pop(worker, set()):
            self.owner.pop(key, None)
        self.first.pop(worker, None)
        orphans = self.held.pop(worker, [])
        for _, key in orphans:
            self.holder.pop(key, None)
        return orphans

    def _expected(self, ts: Any, budget: float) -> float:
        total, count = self.sizes.get(ts.group.name, (0, 0))
        return total / count if count else budget / 2

    def release(self, scheduler: Any) -> dict[Any, str]:
        """Release what the rules above allow (restricted, loosely, to their worker);
        the recommendations (``{key: "processing"}``) to send to ``scheduler``."""
        recommendations: dict[Any, str] = {}
        for worker, heap in self.held.items():
            ws = scheduler.workers.get(worker)
            if ws is None or not heap:
                continue
            running = self.running.setdefault(worker, set())
            budget = ws.memory_limit * self.fraction if ws.memory_limit else self.default_budget
            tasks = (scheduler.tasks.get(key) for key in running)
            held = ws.nbytes + sum(self._expected(ts, budget) for ts in tasks if ts is not None)
            busy = len(ws.processing)
            first = self.first.get(worker, deque())
            while (first or heap) and (held < budget or busy < ws.nthreads):
                key = first.popleft() if first else heapq.heappop(heap)[1]
                ts = scheduler.tasks.get(key)
                if not self._start(ts, worker, recommendations):
                    continue  # cancelled, or already released
                held += self._expected(ts, budget)
                busy += 1
        return recommendations

    def needed(self, ts: Any) -> dict[Any, str]:
        """Release the kept-back inputs of the tasks that ``ts`` (now in memory) feeds
        and that wait for nothing else; put first in line those that they wait for
        through one task that waits for nothing else. The recommendations to send to the
        scheduler."""
        recommendations: dict[Any, str] = {}
        for dependent in ts.dependents:
            direct = self._kept_back_inputs(dependent, 1)
            if direct:
                for dependency in direct:
                    self._start(dependency, self.holder[dependency.key], recommendations)
                continue
            for dependency in self._kept_back_inputs(dependent, 2) or ():
                self.first.setdefault(self.holder[dependency.key], deque()).append(dependency.key)
        return recommendations

    def _kept_back_inputs(self, ts: Any, depth: int) -> list[Any] | None:
        """The kept-back tasks that ``ts`` waits for, directly or through up to
        ``depth - 1`` waiting tasks; ``None`` when it also waits for anything else."""
        found = []
        for dependency in ts.dependencies:
            if dependency.state in ("memory", "processing"):
                continue
            # (held for no worker while none runs: released when one arrives)
            if self._kept_back(dependency) and self.holder[dependency.key] != HELD:
                found.append(dependency)
            elif depth > 1 and dependency.state == "waiting":
                deeper = self._kept_back_inputs(dependency, depth - 1)
                if deeper is None:
                    return None
                found.extend(deeper)
            else:
                return None
        return found

    def _kept_back(self, ts: Any) -> bool:
        return (
            ts.key in self.holder and ts.state == "no-worker" and ts.worker_restrictions == {HELD}
        )

    def _start(self, ts: Any, worker: str, recommendations: dict[Any, str]) -> bool:
        """Release kept-back ``ts`` to ``worker``; whether it was still kept back."""
        if ts is None or not self._kept_back(ts):
            return False
        del self.holder[ts.key]
        ts.worker_restrictions = {worker}
        ts.loose_restrictions = True
        recommendations[ts.key] = "processing"
        self.running.setdefault(worker, set()).add(ts.key)
        self.owner[ts.key] = worker
        return True


class RowPlacement(SchedulerPlugin):
    """A scheduler plugin placing the chunks of the same rows on the same worker, and
    releasing the root tasks of each worker a few at a time (see the module's
    documentation).

    Parameters
    ----------
    pacing
        How root tasks are kept back (see :class:`Pacing`; ``None``: its defaults);
        ``False`` sends every task to its worker at once.
    """

    name = "metatensor-dask-row-placement"

    def __init__(self, pacing: Pacing | Literal[False] | None = None):
        self.pacing = pacing is not False
        self._pace = pacing or Pacing()
        self._scheduler: Any = None
        self._pending = False
        self._arrived: list[Any] = []

    def update_graph(self, scheduler: Any, *, tasks: list[Any], **kwargs: Any) -> None:
        """Restrict the new ``tasks`` (loosely) to the worker of their rows, and keep
        their root tasks back."""
        self._scheduler = scheduler
        workers = sorted(ws.address for ws in scheduler.running)
        if not workers:
            return
        # a scheduler that fails tasks left in `no-worker` too long would fail held ones
        pacing = self.pacing and not getattr(scheduler, "no_workers_timeout", None)
        held = False
        for key, (i, n) in row_positions(tasks).items():
            ts = scheduler.tasks.get(key)
            if ts is None or ts.state != "released":
                continue
            # kept back by an earlier graph and released (cancelled) since: ours again
            if ts.worker_restrictions != {HELD} and (
                n < len(workers)
                or ts.worker_restrictions
                or ts.host_restrictions
                or ts.resource_restrictions
            ):
                continue
            root = pacing and not ts.dependencies
            if len(workers) < 2 and not root:
                continue
            worker = workers[(2 * i + 1) * len(workers) // (2 * n)]
            if root:
                ts.worker_restrictions = {HELD}
                ts.loose_restrictions = False
                self._pace.hold(worker, key, ts.priority)
                held = True
            else:
                ts.worker_restrictions = {worker}
                ts.loose_restrictions = True
        if held:
            self._schedule()

    def transition(
        self, key: Any, start: str, finish: str, *args: Any, stimulus_id: str, **kwargs: Any
    ) -> None:
        """Follow the released root tasks; release more when a worker finishes a task
        or lets data go."""
        if finish == "memory" and key in self._pace.owner:
            ts = self._scheduler.tasks[key]
            self._pace.done(key, ts.group.name, ts.nbytes)
        elif finish in _GONE:
            self._pace.done(key)
        # a worker whose data shrank, or that finished a task, may take more; the
        # tasks that a new result feeds may need kept-back inputs
        if (start == "memory" or finish == "memory") and self._pace.holder:
            if finish == "memory":
                self._arrived.append(key)
            self._schedule()

    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
        """Give what was kept back for ``worker`` to the remaining workers."""
        self._adopt(scheduler, self._pace.orphans(worker), leaving=worker)

    def add_worker(self, scheduler: Any, worker: str) -> None:
        """Give a new worker what was kept back while no worker was running."""
        self._adopt(scheduler, self._pace.orphans(HELD))

    def restart(self, scheduler: Any) -> None:
        """Forget everything: the scheduler forgot its tasks."""
        self._pace = Pacing(self._pace.fraction, self._pace.default_budget)

    def _adopt(
        self, scheduler: Any, orphans: list[tuple[Any, Any]], leaving: str | None = None
    ) -> None:
        self._scheduler = scheduler
        workers = sorted(ws.address for ws in scheduler.running if ws.address != leaving)
        for j, (priority, key) in enumerate(sorted(orphans)):
            self._pace.hold(workers[j % len(workers)] if workers else HELD, key, priority)
        if orphans:
            self._schedule()

    def _schedule(self) -> None:
        """Release tasks once the scheduler's current transitions are done."""
        if not self._pending and self._scheduler is not None:
            self._pending = True
            self._scheduler.loop.add_callback(self._release)

    def _release(self) -> None:
        self._pending = False
        recommendations: dict[Any, str] = {}
        arrived, self._arrived = self._arrived, []
        for key in arrived:
            ts = self._scheduler.tasks.get(key)
            if ts is not None and ts.state == "memory":
                recommendations |= self._pace.needed(ts)
        recommendations |= self._pace.release(self._scheduler)
        if recommendations:
            self._scheduler.transitions(
                recommendations, stimulus_id=f"row-placement-release-{time.time()}"
            )
