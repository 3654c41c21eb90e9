"""Keeping the tasks of the same rows on the same worker of a cluster.

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
array, land on the same worker, and each worker streams its range in the order of the
graph's priorities. The restriction is loose: when that worker has gone, any worker runs
the task. Tasks that carry their own restrictions keep them, and arrays of fewer chunks
than workers are left to the scheduler.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

__all__ = ["RowPlacement", "row_positions"]


#: Tasks whose keys number pieces rather than rows: dask's rechunk numbers the pieces
#: it cuts from each chunk in one sequence. Left to the scheduler, they run where the
#: chunk they cut is.
NOT_ROWS = ("rechunk-split-",)


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


class RowPlacement(SchedulerPlugin):
    """A scheduler plugin placing the chunks of the same rows on the same worker (see
    the module's documentation)."""

    name = "metatensor-dask-row-placement"

    def update_graph(self, scheduler: Any, *, tasks: list[Any], **kwargs: Any) -> None:
        """Restrict the new ``tasks`` (loosely) to the worker of their rows."""
        workers = sorted(ws.address for ws in scheduler.running)
        if len(workers) < 2:
            return
        for key, (i, n) in row_positions(tasks).items():
            ts = scheduler.tasks.get(key)
            if (
                n < len(workers)
                or ts is None
                or ts.state != "released"
                or ts.worker_restrictions
                or ts.host_restrictions
                or ts.resource_restrictions
            ):
                continue
            ts.worker_restrictions = {workers[(2 * i + 1) * len(workers) // (2 * n)]}
            ts.loose_restrictions = True
