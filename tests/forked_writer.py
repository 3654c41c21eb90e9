"""A writer of a store, to be killed, forked from the server of ``forked_process``.

``kill_support.writer_holding`` starts ``python -c code`` as a new interpreter, whose
imports take 1 to 3 s under load; forked from the server that imported metatensor-dask
once, the writer costs a fork. It is still a process of its own: its own pid, its own
lock, killed (SIGKILL) without any cleanup.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from forked_process import Forked, run_code
from kill_support import holding_the_lock


@contextlib.contextmanager
def forked_writer_holding(
    code: str, arguments: list[str], store: Path, wanted: Callable[[], bool] = lambda: True
) -> Iterator[Forked]:
    """``python -c code arguments...`` in a forked process, which prints ``ready`` then
    writes ``store``: given once it holds the store's lock and ``wanted()`` is true,
    killed (SIGKILL) when the block ends."""
    with Forked(run_code, code, list(arguments), {}) as process:
        holding_the_lock(process, store, wanted)
        yield process
        process.kill()
