"""The files a block of code opens: Python's ``open`` audit events, which every file
read of the package goes through."""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator

_OPENED: list[str] | None = None
#: a chunk file of values or gradients in a store
VALUES_CHUNK = re.compile(r"/values/c[./]")


def _audit(event: str, arguments: tuple) -> None:
    if event == "open" and _OPENED is not None:
        _OPENED.append(str(arguments[0]))


sys.addaudithook(_audit)


@contextlib.contextmanager
def opened_files() -> Iterator[list[str]]:
    """The paths of the files opened inside, filled in as they are opened."""
    global _OPENED
    _OPENED = []
    try:
        yield _OPENED
    finally:
        _OPENED = None
