"""Building and computing maps of many blocks without the cyclic garbage collector.

Loading, opening, operating on or computing a map of thousands of blocks creates
hundreds of thousands of objects (Labels, blocks, dask arrays and graphs, the arrays of
a computed map) and no garbage cycles. The collector runs every few hundred allocations
and its full passes walk every object alive, the maps already held included: it took a
third of the time of loading 10,000 blocks (measured: 4.5 s with it, 3.1 s without),
and half of the time of computing an operation on them, which grew faster than the
number of blocks (a bigger heap to walk at each pass). It is paused while such work
runs and resumed after. When a pause made many objects (at least ``_FEW``), they join
the oldest generation unexamined, which only the collector's full passes look at; so
joined, they do not count towards CPython's next full pass, and the garbage cycles
among them (objects of a map that die later) would wait for ever: a full pass is run
here once the objects moved so since the last one outnumber eight times those alive
after it. The objects of a pause that made fewer are left to the collector as usual
(scanning them costs less than making them), so that a loop of small operations keeps
no garbage.

The pause is process-wide (the collector is): with threads (dask's workers), it lasts
until the last of the overlapping pauses ends. The collections run when a pause ends
run the finalizers of the garbage they free, in that thread, and these may pause the
collector again (an object whose ``__del__`` opens or operates on a map): such a pause
inside the end of another one is nested in it, without waiting for its end.
"""

from __future__ import annotations

import functools
import gc
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = ["collector_paused", "without_collector"]

#: Re-entrant: a finalizer run by a collection below may pause the collector again.
_LOCK = threading.RLock()
_PAUSES = 0
_RESUME = False
"""Whether the collector ran when the first of the current pauses began."""
_YOUNG = False
"""Whether one of the current pauses asked for the youngest generation to be collected
when the last of them ends."""
_MOVED = 0
"""Objects the pauses moved to the oldest generation unexamined since the last full pass."""
_ALIVE: int | None = None
"""Objects alive after the last full pass (before the first: when a pause first moved
objects)."""
#: Pauses that made fewer objects leave them to the collector.
_FEW = 20_000
#: A full pass runs once the objects moved exceed this many times those alive.
_MOST = 8

F = TypeVar("F", bound=Callable[..., Any])


def _begin(young_collected: bool = False) -> None:
    """Begin a pause: counted before the collector is disabled, so that an interrupt
    (``KeyboardInterrupt``) landing in between is undone by :func:`_end`, which
    resumes the collector it finds disabled by the pause."""
    global _PAUSES, _RESUME, _YOUNG
    with _LOCK:
        _PAUSES += 1
        try:
            if _PAUSES == 1:
                # not resumed unless it was found running (and is disabled now)
                _RESUME = False
                _RESUME = gc.isenabled()
                gc.disable()
            _YOUNG = _YOUNG or young_collected
        except BaseException:
            _end()
            raise


def _end() -> None:
    """End a pause; the last one resumes the collector (if it ran), even when
    interrupted (a ``KeyboardInterrupt`` during its collections): a collector left
    disabled, or objects left frozen, would never collect the garbage cycles of the
    process again."""
    global _PAUSES, _YOUNG
    with _LOCK:
        _PAUSES -= 1
        if _PAUSES:
            return
        # the objects made meanwhile (the collector's count of the youngest generation);
        # what the pauses asked for, read before a collection runs finalizers, whose
        # own pauses (nested in this end) set them anew
        made = gc.get_count()[0]
        young, resume = _YOUNG, _RESUME
        _YOUNG = False
        try:
            _collect(made, young, resume)
        finally:
            if resume:
                gc.enable()


def _collect(made: int, young: bool, resume: bool) -> None:
    """What the end of the last pause collects: the youngest generation if ``young``;
    if the collector is to resume, the ``made`` objects moved unexamined, and a full
    pass when due."""
    if young:
        # garbage cycles the pauses made (all in the youngest generation: nothing
        # was collected meanwhile), freed now rather than at a rare full pass
        gc.collect(0)
    # many objects made meanwhile go to the oldest generation without being scanned
    # (freeze then unfreeze moves every object there and resets the young generation's
    # count): resuming the collector would otherwise scan them all at once, a third of
    # the time of opening 1,000 tiny blocks. They are examined by the next full
    # collection, as if long-lived. Not when the program froze objects itself
    # (`gc.freeze`): unfreezing would thaw them too.
    if resume and made >= _FEW and gc.get_freeze_count() == 0:
        gc.freeze()
        try:
            _moved_unexamined(made)
        finally:
            gc.unfreeze()
        if _MOVED > _MOST * (_ALIVE or 0):
            _full_pass()


def _moved_unexamined(made: int) -> None:
    """Count ``made`` objects as moved to the oldest generation (every object is frozen
    now: those alive are counted at the first call)."""
    global _MOVED, _ALIVE
    if _ALIVE is None:
        _ALIVE = gc.get_freeze_count()
    else:
        _MOVED += made


def _full_pass() -> None:
    """Collect every generation, and count the objects left alive."""
    global _MOVED, _ALIVE
    gc.collect()
    gc.freeze()
    try:
        _ALIVE = gc.get_freeze_count()
    finally:
        gc.unfreeze()
    _MOVED = 0


@contextmanager
def collector_paused(young_collected: bool = False) -> Iterator[None]:
    """Pause the cyclic garbage collector for the block, if it runs (a collector
    disabled by the caller stays disabled; overlapping pauses, nested or from other
    threads, resume it when the last one ends).

    With ``young_collected``, the youngest generation (the objects made during the
    pauses) is collected when the last pause ends, even if the caller disabled the
    collector: for work that leaves garbage cycles holding much memory (a few hundred
    microseconds, against tens of milliseconds for a full pass)."""
    _begin(young_collected)
    try:
        yield
    finally:
        _end()


def without_collector(function: F) -> F:
    """``function``, run with the collector paused (see :func:`collector_paused`)."""

    @functools.wraps(function)
    def paused(*args: Any, **kwargs: Any) -> Any:
        _begin()
        try:
            return function(*args, **kwargs)
        finally:
            _end()

    return paused  # type: ignore[return-value]
