"""Giving the memory that building a graph left free back to the system.

Building the graph of a large pipeline reads Labels (the gradient samples of every
block) and computes the output's from them: temporaries of tens to hundreds of MiB,
freed when the graph is built. glibc keeps freed memory in the process's heap, where it
stays resident during the whole computation; on a cluster started by this process (its
scheduler runs here) it counts in the memory of the run as much as a worker's chunks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any

__all__ = ["give_back_free_memory"]


@functools.cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or ``None`` where the C library has none (macOS, musl)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    return getattr(ctypes.CDLL(name), "malloc_trim", None)


def give_back_free_memory() -> bool:
    """Return the free memory of this process's heap to the system (glibc's
    ``malloc_trim(0)``); whether the C library could do it."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
