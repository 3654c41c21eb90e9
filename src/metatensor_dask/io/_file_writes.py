"""Writing bytes to local files in system calls of at most :data:`PIECE_BYTES`.

Since Linux 6.x, the page cache of a file system with large folios (ext4 from 6.16,
XFS, btrfs) holds the bytes of one ``write`` in blocks of memory sized to it: a call of
8 MiB asks the kernel for blocks of 2 MiB, one of 128 KiB for blocks of 128 KiB. On a
virtual machine that hands free memory back to its host (free page reporting), the
blocks handed back are those of 2 MiB and more; smaller ones can come from free memory
the host still backs. Measured on such a machine (``benchmarks/page_cache_writes.py``),
writing 1 GiB of 8 MiB files cost 2.6 to 3.6 s of system time in 8 MiB calls and 0.3
to 0.5 s in calls of 32 to 128 KiB just after other programs had freed gigabytes, and
about the same (2.4 to 3.3 s) in both ways when they had not. The smaller calls cost a
few more system calls (64 per 8 MiB chunk file, a few microseconds each).

The bytes written are the same; each function writes all of them (a short write is
continued) or raises.

A small file written again (a node document) is overwritten in place and cut to its new
size (:func:`overwrite`), not emptied first: on ext4, a file emptied by ``O_TRUNC`` and
written again has its write-back started when it is closed (the ``auto_da_alloc``
heuristic, which protects files replaced without ``fsync``), which cost 60 to 80 us of
system time per file (150 documents of 500 bytes written again: 8 to 12 ms of system
time emptied first, 1 ms in place).

A file written again that has other names (hard links: a snapshot of the store made
with ``cp -al`` or ``rsync --link-dest``, equal files linked by a deduplicating tool),
or that is a symbolic link to a file (a deduplicating tool's, or a chunk shared from
another store), is removed first and created anew with its permissions, so that the
other names and the file linked to keep their bytes (:func:`open_own`): written into,
a snapshot would hold the new chunks under its old metadata, as if damaged (or, without
checksums, read them as its own), and two chunks linked into one file would get the
bytes of the one written last.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = [
    "MOST_BUFFERS",
    "NEW_FILE_MODE",
    "NO_ROOM",
    "PIECE_BYTES",
    "no_room",
    "open_own",
    "overwrite",
    "write_all",
]

NEW_FILE_MODE = 0o666
"""The permissions a new file is created with, before the process's umask takes its
bits away, as Python's ``open`` and zarr-python's local store create files: with the
umask ``002`` of a group sharing a project folder, the files are writable by the group
(``0o664``), so that another member of it can append to the store."""

PIECE_BYTES = 128 * 2**10
"""Bytes written by one system call at most."""

MOST_BUFFERS = 1024
"""Buffers given to one system call at most (``IOV_MAX`` on Linux and macOS: more, and
``writev`` fails)."""


NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
"""The ``errno`` of a write that found no room: a full file system or quota, a file
larger than the file size limit of the process."""


def no_room(error: BaseException) -> str | None:
    """What to do about ``error`` when it is a write that found no room (an ``OSError``
    of :data:`NO_ROOM`), else ``None``."""
    if not isinstance(error, OSError) or error.errno not in NO_ROOM:
        return None
    if error.errno == errno.EFBIG:
        return "a file would be larger than this process may write (ulimit -f): raise that limit"
    return "the file system (or the user's quota) is full: free some space"


def _groups(buffers: Iterable[Any]) -> Iterator[tuple[list[memoryview], int]]:
    """The bytes of ``buffers``, in order, as groups of views of at most
    :data:`PIECE_BYTES` bytes and :data:`MOST_BUFFERS` views (small buffers gathered
    into one group), each with its number of bytes."""
    group: list[memoryview] = []
    size = 0
    for buffer in buffers:
        view = memoryview(buffer).cast("B")
        while view.nbytes:
            piece = view[: PIECE_BYTES - size]
            group.append(piece)
            size += piece.nbytes
            view = view[piece.nbytes :]
            if size == PIECE_BYTES or len(group) == MOST_BUFFERS:
                yield group, size
                group, size = [], 0
    if group:
        yield group, size


def _after(group: list[memoryview], count: int) -> list[memoryview]:
    """The views of ``group`` without their first ``count`` bytes (a short write)."""
    for index, view in enumerate(group):
        if count < view.nbytes:
            return [view[count:], *group[index + 1 :]]
        count -= view.nbytes
    return []


#: Types of the buffers written in one call when alone and small (:func:`write_all`).
_SIMPLE = (bytes, memoryview)


def write_all(descriptor: int, buffers: Iterable[Any], offset: int | None = None) -> int:
    """Write ``buffers`` (bytes-like, C-contiguous) one after the other to the open file
    ``descriptor``, at ``offset`` (``pwritev``), or at the file's position when it is
    ``None`` (``writev``). Returns the number of bytes written."""
    total = 0
    if type(buffers) is list and len(buffers) == 1 and type(buffers[0]) in _SIMPLE:
        # one small document or Labels chunk, the most common file: in one call
        data = memoryview(buffers[0]).cast("B")
        if data.nbytes <= PIECE_BYTES:
            if offset is None:
                total = os.write(descriptor, data)
            else:
                total = os.pwrite(descriptor, data, offset)
            if total == data.nbytes:
                return total
        buffers = [data[total:]]  # the rest (written short) as below
    for group, size in _groups(buffers):
        while size:
            if offset is None:
                written = os.writev(descriptor, group)
            else:
                written = os.pwritev(descriptor, group, offset + total)
            if written == 0:
                raise OSError(f"no byte of {size} could be written")
            total += written
            size -= written
            if size:
                group = _after(group, written)
    return total


def _open_unlinked(name: str, flags: int) -> int:
    """``name`` removed, then created and opened to be written with ``flags``, with the
    permissions of the file it named (a symbolic link's target, when there is one)."""
    try:
        mode: int | None = stat.S_IMODE(os.stat(name).st_mode)
    except OSError:  # a dangling link
        mode = None
    os.unlink(name)
    descriptor = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | flags, NEW_FILE_MODE)
    if mode is not None:
        try:
            os.fchmod(descriptor, mode)
        except BaseException:
            os.close(descriptor)
            raise
    return descriptor


def open_own(name: str, flags: int = 0, empty: bool = True) -> int:
    """The file ``name`` opened to be written (``O_WRONLY | O_CREAT | flags``), created
    when missing, and emptied when ``empty``. A file with other names (hard links), or
    a symbolic link, is removed and created anew, never written into: the other names,
    or the file linked to, keep their bytes (see the module's documentation). ``flags``
    must not hold ``O_TRUNC``, which would empty a linked file before it is seen to be
    one."""
    try:
        descriptor = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | flags, NEW_FILE_MODE)
    except OSError as error:
        if error.errno != errno.ELOOP:
            raise
        return _open_unlinked(name, flags)
    try:
        status = os.fstat(descriptor)
        if status.st_nlink > 1:
            os.close(descriptor)
            descriptor = -1
            return _open_unlinked(name, flags)
        if empty and status.st_size:
            os.ftruncate(descriptor, 0)
    except BaseException:
        if descriptor >= 0:
            os.close(descriptor)
        raise
    return descriptor


def overwrite(name: str, data: Any) -> None:
    """Write the file ``name`` (created when missing) so that it holds ``data``
    (bytes-like, C-contiguous): written over its bytes from the start, then cut after
    them, never emptied first (see the module's documentation); a file with other names
    is created anew (:func:`open_own`). Not atomic: as with ``O_TRUNC``, a reader or a
    kill meanwhile may see a mix of the old and new bytes."""
    descriptor = open_own(name, empty=False)
    try:
        os.ftruncate(descriptor, write_all(descriptor, [data], offset=0))
    finally:
        os.close(descriptor)
