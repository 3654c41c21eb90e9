"""Progress of long computations in the command line.

Locally (threaded scheduler) dask's :class:`~dask.diagnostics.ProgressBar` in a terminal,
or one line per tenth of the tasks done in a log; on a cluster :func:`distributed.progress`
(lines in a log too), or, for a result submitted by windows of tasks
(:mod:`~metatensor_dask.execution.windows`: a store → store write), one bar over all the
windows. Everything is drawn on standard error, so that standard output keeps
only results. The ``metatensor_dask.progress`` setting turns the bars off; ``quiet``
silences everything, the final summary line too. Locally, a dask ``ProgressBar`` that
the caller registered or entered is the only bar drawn.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any, TextIO

import dask
from dask.callbacks import Callback
from dask.delayed import Delayed
from dask.utils import format_time
from distributed import futures_of, progress
from distributed.diagnostics.progressbar import TextProgressBar

from .. import config
from .._format import nbytes_text
from . import windows

__all__ = ["Reporter", "check_settings", "compute"]


def _bars_wanted(quiet: bool) -> bool:
    return not quiet and bool(config.get("progress"))


def compute(
    collection: Any, *, client: Any = None, quiet: bool = False, window: int | None = None
) -> Any:
    """Compute ``collection`` (a dask collection or ``Delayed``) with a progress bar.

    Parameters
    ----------
    collection
        What to compute: a dask collection, or a list of them.
    client
        A :class:`distributed.Client` to compute on, or ``None`` for the current
        scheduler.
    quiet
        Draw nothing.
    window
        On a cluster, a ``Delayed`` (such as the write of a store) is computed by windows
        of about this many tasks (see :mod:`~metatensor_dask.execution.windows`), so
        that the scheduler never holds the whole graph; default: the
        ``metatensor_dask.window-tasks`` setting.

    Returns
    -------
    Any
        The computed result.
    """
    show = _bars_wanted(quiet)
    if client is None:
        if not show or _dask_bar_active():
            return dask.compute(collection)[0]
        if sys.stderr.isatty():
            from dask.diagnostics import ProgressBar

            bar: Any = ProgressBar(out=sys.stderr)
        else:
            bar = _Milestones(sys.stderr)
        with bar:
            return dask.compute(collection)[0]
    if isinstance(collection, Delayed):
        bar = _Bar(sys.stderr, terminal=sys.stderr.isatty()) if show else None
        try:
            return windows.compute_windowed(
                client,
                dict(collection.__dask_graph__()),
                collection.key,
                size=window or int(config.get("window-tasks")),
                progress=bar.update if bar else None,
            )
        finally:
            if bar is not None:
                bar.close()
    future = client.compute(collection)
    if show:
        if sys.stderr.isatty():
            # distributed's text bar writes to stdout
            with contextlib.redirect_stdout(sys.stderr):
                progress(future)
        else:
            _ClusterMilestones(futures_of(future), sys.stderr)
        # the scheduler feeds the bar every 100 ms: let it see that the bar closed, or a
        # cluster closing right after would log the feed's cancellation as an error
        time.sleep(0.3)
    return client.gather(future)


def _dask_bar_active() -> bool:
    """Whether a dask :class:`~dask.diagnostics.ProgressBar` of the caller is active
    (registered, or entered): it shows the progress, and a bar of ours would be drawn
    with it."""
    from dask.diagnostics import ProgressBar

    return any(
        isinstance(getattr(method, "__self__", None), ProgressBar)
        for callbacks in Callback.active
        for method in callbacks
    )


def _line(done: int, total: int, seconds: float) -> str:
    return (
        f"progress: {100 * done // max(total, 1)}% ({done}/{total} tasks) in {format_time(seconds)}"
    )


class _Tenths:
    """Lines for logs: one at every tenth (``steps``) of the tasks done."""

    def __init__(self, out: TextIO, steps: int = 10):
        self._out = out
        self._steps = steps
        self._shown = 0

    def report(self, done: int, total: int, elapsed: float) -> None:
        """Print a line if ``done`` of ``total`` reaches a new tenth."""
        reached = self._steps * done // max(total, 1)
        if reached > self._shown:
            self._shown = reached
            print(_line(done, total, elapsed), file=self._out, flush=True)


class _Bar:
    """Progress fed as ``update(done, total)``: a bar redrawn in place in a terminal
    (as dask's), else a line at every tenth of the tasks done."""

    def __init__(self, out: TextIO, terminal: bool, steps: int = 10, width: int = 40):
        self._out = out
        self._terminal = terminal
        self._tenths = _Tenths(out, steps)
        self._width = width
        self._begin = time.perf_counter()
        self._last = (0, 0)

    def update(self, done: int, total: int) -> None:
        """Show that ``done`` of ``total`` tasks are done."""
        self._last = (done, total)
        elapsed = time.perf_counter() - self._begin
        if self._terminal:
            filled = self._width * done // max(total, 1)
            bar = "#" * filled + " " * (self._width - filled)
            percent = 100 * done // max(total, 1)
            self._out.write(f"\r[{bar}] | {percent:3d}% Completed | {format_time(elapsed)}")
            self._out.flush()
            return
        self._tenths.report(done, total, elapsed)

    def close(self) -> None:
        """End the bar's line (in a terminal)."""
        if self._terminal and self._last != (0, 0):
            self._out.write("\n")
            self._out.flush()


class _ClusterMilestones(TextProgressBar):
    """Progress of futures on a cluster, for logs: a line at every tenth of the tasks done."""

    def __init__(self, futures: list, out: TextIO, steps: int = 10):
        self._tenths = _Tenths(out, steps)
        super().__init__(futures)  # listens until the futures are done

    def _draw_bar(self, remaining: int, all: int, **kwargs: Any) -> None:
        self._tenths.report(all - remaining, all, self.elapsed)

    def _draw_stop(self, **kwargs: Any) -> None:
        pass


class _Milestones(Callback):
    """Progress for logs (no terminal): a line at every tenth of the tasks done."""

    def __init__(self, out: TextIO, steps: int = 10):
        self._out = out
        self._steps = steps

    def _start(self, dsk: Any) -> None:
        self._tenths = _Tenths(self._out, self._steps)
        self._begin = time.perf_counter()

    def _posttask(self, key: Any, result: Any, dsk: Any, state: dict, worker_id: Any) -> None:
        done = len(state["finished"])
        total = done + len(state["ready"]) + len(state["waiting"]) + len(state["running"])
        self._tenths.report(done, total, time.perf_counter() - self._begin)


def check_settings() -> None:
    """Read the settings that the commands' computations use (``progress``,
    ``window-tasks``), so that a wrong value is refused as a command starts.

    Raises
    ------
    MetatensorDaskError
        For a value of either of the wrong kind, naming it.
    """
    for setting in ("progress", "window-tasks"):
        config.get(setting)


class Reporter:
    """Messages of one command: steps on standard error and a final summary line.

    Made when a command starts, it reads the settings its computations use
    (``progress``, ``window-tasks``), so that a wrong value is refused before the
    command touches any store, rather than after it created its output.

    Parameters
    ----------
    quiet
        Print nothing.
    out
        Where to print (standard error by default).

    Raises
    ------
    MetatensorDaskError
        For a value of ``progress`` or ``window-tasks`` of the wrong kind, naming it.
    """

    def __init__(self, quiet: bool = False, out: TextIO | None = None):
        check_settings()
        self.quiet = quiet
        self._out = out
        self._start = time.perf_counter()

    @property
    def out(self) -> TextIO:
        return self._out if self._out is not None else sys.stderr

    def step(self, message: str) -> None:
        """Print one line saying what happens next."""
        if not self.quiet:
            print(message, file=self.out, flush=True)

    def elapsed(self) -> float:
        """Seconds since this reporter was made."""
        return time.perf_counter() - self._start

    def summary(self, what: str, *, nbytes: int | None = None, chunks: int | None = None) -> str:
        """Print (unless quiet) and return ``"<what> in <time>[: <bytes>, <chunks> chunks]"``."""
        parts = []
        if nbytes is not None:
            parts.append(nbytes_text(nbytes))
        if chunks is not None:
            parts.append(f"{chunks} chunks")
        line = f"{what} in {format_time(self.elapsed())}" + (
            f": {', '.join(parts)}" if parts else ""
        )
        self.step(line)
        return line
