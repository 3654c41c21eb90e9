"""Reads of the bytes of a file loaded earlier, refused when the file changed since.

A file is known by its :data:`Stamp` at load; every read compares the file with it
before and after reading, so that a file rewritten or replaced meanwhile is never read
under the labels of the one loaded.
"""

from __future__ import annotations

import os

from ..errors import MetatensorDaskError

__all__ = ["Stamp", "check_unchanged", "file_stamp", "read_into"]

#: What the read tasks compare with the file they read: its size, modification time and
#: status change time at load. A file replaced by another of the same size whose times
#: were copied (``rsync -a``, ``cp -p``) keeps the first two, never the third (set by
#: the system on every write, rename or time change).
Stamp = tuple[int, int, int]


def file_stamp(stat: os.stat_result) -> Stamp:
    """The :data:`Stamp` of a file from its ``os.stat`` result."""
    return (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def check_unchanged(path: str, stat: os.stat_result, stamp: Stamp) -> None:
    """Raise :class:`MetatensorDaskError` when ``stat`` (of ``path``) is not that of the
    file ``stamp`` was taken of."""
    if file_stamp(stat) != stamp:
        raise MetatensorDaskError(
            f"'{path}' changed since it was loaded (its size, modification or status "
            "change time differs: written, or replaced by another file), so its values "
            "can no longer be read; load it again"
        )


def read_into(path: str, stamp: Stamp, offset: int, view: memoryview) -> None:
    """Fill ``view`` with the bytes at ``offset`` of ``path``, which must not have
    changed since ``stamp`` (:func:`file_stamp`) was taken.

    The file is checked before and after the read: a writer rewriting it in place
    while it is read (same size or not) would otherwise give its new bytes, or a
    file cut short, under the labels of the file loaded.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        check_unchanged(path, os.fstat(fd), stamp)
        done = 0
        while done < len(view):
            count = os.preadv(fd, [view[done:]], offset + done)
            if count == 0:
                check_unchanged(path, os.fstat(fd), stamp)
                raise MetatensorDaskError(
                    f"'{path}' ended before the expected end of its data: the file is "
                    "truncated; write it again"
                )
            done += count
        check_unchanged(path, os.fstat(fd), stamp)
    finally:
        os.close(fd)
