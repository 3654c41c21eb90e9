"""Progress of :func:`~metatensor_dask.write_batches`: batches computed and committed.

On a terminal, one line redrawn in place (at most ten times a second), ended when the
run ends; in a log (no terminal), a line each time another tenth of the batches is
committed, as the command line's progress does for tasks. Everything goes to standard
error, so that standard output keeps only results.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["BatchProgress"]


class BatchProgress:
    """Shows how many of ``total`` batches are computed and committed.

    Parameters
    ----------
    total
        The number of batches of the run.
    show
        Draw anything at all.
    out
        Where to draw (standard error, looked up when drawing, by default).
    """

    #: Seconds between two redraws of the terminal line.
    REDRAW = 0.1
    #: Lines of a log: one per this fraction of the batches committed.
    STEPS = 10

    def __init__(self, total: int, show: bool, out: TextIO | None = None):
        self.total = total
        self.show = show
        self._out = out
        self._start = time.monotonic()
        self._drawn = -1.0
        self._shown = -1
        self._width = 0
        self._open = False

    @property
    def out(self) -> TextIO:
        return self._out if self._out is not None else sys.stderr

    def line(self, computed: int, committed: int) -> str:
        """The text shown for these counts."""
        return (
            f"write_batches: {computed}/{self.total} batches computed, {committed}/"
            f"{self.total} committed in {time.monotonic() - self._start:.1f} s"
        )

    def update(self, computed: int, committed: int) -> None:
        """Show the counts, if it is time to."""
        if not self.show:
            return
        out = self.out
        if out.isatty():
            now = time.monotonic()
            if now - self._drawn < self.REDRAW and committed < self.total:
                return
            self._drawn = now
            text = self.line(computed, committed)
            out.write("\r" + text.ljust(self._width))
            out.flush()
            self._width = len(text)
            self._open = True
            return
        reached = self.STEPS * committed // max(self.total, 1)
        if reached > self._shown:
            self._shown = reached
            print(self.line(computed, committed), file=out, flush=True)

    def close(self) -> None:
        """End the terminal line (after the last update, or an error)."""
        if self._open:
            self.out.write("\n")
            self.out.flush()
            self._open = False
