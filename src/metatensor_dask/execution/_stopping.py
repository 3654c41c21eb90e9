"""A command stopped by Ctrl-C or SIGTERM: unwind, and say what is left.

SIGTERM is what batch systems send at a job's time limit, on ``scancel`` and before a
requeue (SIGKILL follows ``KillWait`` seconds later). By default Python dies at once;
while a command runs, SIGTERM raises :class:`Terminated` instead, as Ctrl-C raises
``KeyboardInterrupt``, so that the write's lock is released, the cluster closed (a
batch system's worker jobs cancelled) and the command ends with one line naming the
unfinished output and its remedy.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

__all__ = ["Terminated", "exit_code", "sigterm_raises", "stop_message", "unfinished"]


class Terminated(BaseException):
    """SIGTERM was received while a command ran (a ``BaseException``, like
    ``KeyboardInterrupt``, so that no ``except Exception`` of the work takes it for a
    failure of the work)."""


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, the first SIGTERM raises :class:`Terminated` in the main thread
    and a second one acts as before the block (by default: the process ends at once).
    Outside the main thread, where Python handles no signals, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)

    def raise_terminated(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, previous)
        raise Terminated

    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def unfinished(
    output: str,
    remedy: str,
    left: Callable[[], bool] = lambda: True,
    finished: Callable[[], bool] = lambda: False,
) -> Iterator[None]:
    """A Ctrl-C or SIGTERM raised within the block is marked with ``output``, left
    unfinished, and ``remedy``, what finishes it, for :func:`stop_message`, unless
    ``left()`` says the output was not left unfinished (its write undone), or
    ``finished()`` that its write was complete when the stop came (while the cluster
    closed): the mark then says so."""
    try:
        yield
    except (KeyboardInterrupt, Terminated) as stop:
        if finished():
            stop.finished = output  # type: ignore[union-attr]
        elif left():
            stop.unfinished = (output, remedy)  # type: ignore[union-attr]
        raise


def stop_message(stop: BaseException) -> str:
    """The line saying why the command stopped, and what it left unfinished."""
    reason = "terminated (SIGTERM)" if isinstance(stop, Terminated) else "interrupted"
    finished = getattr(stop, "finished", None)
    if finished is not None:
        return f"{reason} after {finished} was written whole; it is complete"
    left = getattr(stop, "unfinished", None)
    if left is None:
        return reason
    output, remedy = left
    if "://" not in output and not os.path.exists(output):
        return f"{reason} before writing {output}"
    return f"{reason}: {output} is incomplete; {remedy}"


def exit_code(stop: BaseException) -> int:
    """The exit code of a command stopped by ``stop``: 128 plus the signal's number, as
    shells report a process ended by it (130 for Ctrl-C, 143 for SIGTERM)."""
    number = signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT
    return 128 + int(number)
