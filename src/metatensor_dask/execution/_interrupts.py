"""Worker processes of a local cluster that leave Ctrl-C to the command.

Ctrl-C in a terminal sends SIGINT to every process of the foreground process group: to
the command, and to the worker processes of its ``LocalCluster``, which it started.
Each worker would print the traceback of its ``KeyboardInterrupt`` among the command's
one-line message. The command stops its workers itself when it stops (it closes the
cluster), so :class:`IgnoreInterrupts` has each worker ignore SIGINT.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

__all__ = ["IgnoreInterrupts"]


class IgnoreInterrupts(WorkerPlugin):
    """A worker plugin making the worker's process ignore SIGINT."""

    name = "metatensor-dask-ignore-interrupts"

    def setup(self, worker: Any) -> None:
        """Ignore SIGINT in the process of ``worker`` (only its main thread, which runs
        the worker's event loop, can; a worker in another thread is left as it is)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
