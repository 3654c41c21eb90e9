"""A writer of a store, to be killed, forked from the server of ``forked_process``.

``kill_support.writer_holding`` starts ``python -c code`` as a new interpreter, whose
imports take 1 to 3 s under load; forked from the server that imported metatensor-dask
once, the writer costs a fork. It is still a process of its own: its own pid, its own
lock, killed (SIGKILL) without any cleanup.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from forked_process import Forked, run_code
from kill_support import lock_holder


@contextlib.contextmanager
def forked_writer_holding(
    code: str, arguments: list[str], store: Path, wanted: Callable[[], bool] = lambda: True
) -> Iterator[Forked]:
    """``python -c code arguments...`` in a forked process, which prints ``ready`` then
    writes ``store``: given once it holds the store's lock and ``wanted()`` is true,
    killed (SIGKILL) when the block ends."""
    with Forked(run_code, code, list(arguments), {}) as process:
        line = process.stdout.readline()
        assert line.strip() == "ready", line + process.stdout.read()
        deadline = time.monotonic() + 60
        while lock_holder(store) != process.pid or not wanted():
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline
            time.sleep(0.002)
        yield process
        process.kill()
