"""Drop-behind: chunk files a write or an append wrote leave the page cache once they are
on disk.

Writing or ingesting a dataset larger than memory writes every byte once and reads it
again much later, if at all. Through the page cache alone, these bytes stay cached until
memory runs out, evicting what other programs (and the readers of the store) use, and
each new page is memory the kernel must find first: on a virtual machine that hands free
memory back to its host, that costs ten times the copy (measured in
``docs/ingestion-measurements.md``, "Sixth round: drop-behind"). Here, each chunk file
of a write or an append starts its write-back as soon as it is written
(``sync_file_range``, which does not wait); the process remembers the files it wrote,
and once they hold more than the ``drop-behind`` setting, the oldest are waited for
(their write-back started long before, so that it is usually done) and dropped from the
page cache (``posix_fadvise(POSIX_FADV_DONTNEED)``). The next pages the kernel hands out
are then those just freed. Where the ``direct-writes`` setting asks for it (off by
default), chunk files of 1 MiB or more that a write creates whole on a local disk do not
enter the page cache, but for their last bytes short of a block (see
:mod:`._direct_writes`); this module drops those bytes, and keeps the other files out.

This is advice: the bytes stored are the same. Where the system calls are missing
(outside Linux) nothing is dropped; a file removed since it was written is skipped. A
file whose write to disk failed (an I/O error, a full disk) raises ``OSError`` rather
than having its only copy dropped: without drop-behind such a failure is never seen.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
import threading
from collections import deque
from collections.abc import Callable

from dask.utils import parse_bytes

from .. import config
from ..errors import MetatensorDaskError

__all__ = ["budget", "start_write_back", "written"]

#: Files smaller than this are neither written back early nor dropped: their system
#: calls would cost more than their pages.
SMALLEST_FILE = 2**20

_WRITE = 2  # SYNC_FILE_RANGE_WRITE: start the write-back of dirty pages, do not wait
_WAIT_WRITE_WAIT = 1 | 2 | 4  # WAIT_BEFORE | WRITE | WAIT_AFTER: the range is on disk


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    if sys.platform != "linux" or not hasattr(os, "posix_fadvise"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_SYNC_FILE_RANGE = _load_sync_file_range()

_lock = threading.Lock()
#: The files written (path, bytes), oldest first, not dropped yet.
_files: deque[tuple[str, int]] = deque()
_held = 0


def budget() -> int | None:
    """The ``drop-behind`` setting in bytes, ``None`` when it is off (or the system
    has no drop-behind)."""
    value = config.get("drop-behind")
    if value is False or value is None:
        return None
    try:
        found = parse_bytes(value) if isinstance(value, str) else int(value)
    except (ValueError, TypeError):
        found = -1
    if isinstance(value, bool) or found < 0:
        raise MetatensorDaskError(
            f"invalid setting metatensor_dask.drop-behind={value!r}: use a size such as "
            "'256MiB', or false to leave written pages to the kernel"
        )
    return None if _SYNC_FILE_RANGE is None else found


#: What ``sync_file_range`` reports of a file whose bytes did not reach the disk; other
#: errors (a file system without the call) leave the file to the kernel.
_LOST = {errno.EIO, errno.ENOSPC, errno.EDQUOT}


def _sync(descriptor: int, flags: int, path: str) -> None:
    assert _SYNC_FILE_RANGE is not None
    if _SYNC_FILE_RANGE(descriptor, 0, 0, flags) != 0:
        code = ctypes.get_errno()
        if code in _LOST:
            raise OSError(code, f"{os.strerror(code)}: writing {path} to disk failed", path)


def start_write_back(descriptor: int, size: int, path: str) -> None:
    """Start writing the file ``path``, open as ``descriptor``, to disk, without
    waiting."""
    if _SYNC_FILE_RANGE is not None and size >= SMALLEST_FILE:
        _sync(descriptor, _WRITE, path)


def written(path: str, size: int, limit: int) -> None:
    """Remember the file ``path`` (``size`` bytes, its write-back started), then drop
    the oldest files remembered from the page cache until at most ``limit`` bytes of
    them are left."""
    global _held
    if size < SMALLEST_FILE:
        return
    dropped = []
    with _lock:
        _files.append((path, size))
        _held += size
        while _held > limit:
            old, old_size = _files.popleft()
            _held -= old_size
            dropped.append(old)
    for old in dropped:
        _drop(old)


def _drop(path: str) -> None:
    """Wait until the file ``path`` is on disk, then drop its pages from the cache.
    Raises ``OSError`` when its bytes could not be written to disk (rather than
    dropping pages that are the only copy)."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return  # removed: its pages went with it
    try:
        _sync(descriptor, _WAIT_WRITE_WAIT, path)
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(descriptor)
