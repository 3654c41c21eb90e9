"""New files written past the page cache (``O_DIRECT``), from reused aligned buffers.

A write that goes through the page cache asks the kernel for a new page for each 4 KiB
it writes. On a virtual machine that hands free memory back to its host (free page
reporting), a page the host took back costs a fault in the host when it is used again:
measured on this project's test machine, writing 1.6 GB of 50 MB files cost 4.8 s of
system time into memory the host had taken back, 0.4 s into memory it still backed, and
0.3 s of CPU in all with ``O_DIRECT`` (the bytes copied into a buffer of this module,
then written from it). Past the page cache, a file's bytes also never evict what other
programs cache, and a write that fails says so at once (not when its pages are written
back).

Direct I/O writes whole blocks from aligned memory at aligned offsets: the bytes are
copied, piece by piece, into a page-aligned buffer (a few buffers per process, kept and
reused, so that their pages are not new); the last bytes that do not fill a block of
:data:`ALIGNMENT` are written through the page cache. Runs of zeros the caller marks
(the padding of edge chunks) are left as holes where they cover whole blocks, as a
seek over them leaves them in a buffered write. The bytes of the file are the same.

Direct writes are used as the ``direct-writes`` setting says (:func:`suits`), on local
disks only: on a network file system each direct write waits for the server, and tmpfs
is the page cache itself. They are off by default: a direct write waits for the disk in
the writing thread, where a write to the page cache returns at once and the kernel
writes it back while the process computes. Measured on this project's virtual machine
(one run, quiet): the files of ``write_batches``' benchmark written directly cost 8%
and 10% of featomic's CPU at 512 and 2,048 structures, and 25% and 36% of its wall
time; through the page cache with drop-behind, 10% and 12% of its CPU, 16% and 16% of
its wall time. A file system that refuses ``O_DIRECT`` (the open or the first write
fails with ``EINVAL``), or a system without it, gets ``None`` from
:func:`write_new_file`, and the caller writes the file the usual way.
"""

from __future__ import annotations

import errno
import functools
import mmap
import os
import re
import threading
from collections.abc import Iterable

from .. import config
from .._huge_pages import free_page_reporting
from ..errors import MetatensorDaskError
from ._file_writes import open_own, write_all

__all__ = ["ALIGNMENT", "on_local_disk", "setting", "suits", "write_new_file"]

ALIGNMENT = 4096
"""Offsets and lengths of direct writes are multiples of this (the largest logical
block size of common disks), and so are the addresses of the buffers written."""

BUFFER_BYTES = 4 * 2**20
"""Bytes of each aligned buffer: one direct write each."""

_O_DIRECT: int | None = getattr(os, "O_DIRECT", None)

#: File systems of local disks, written directly (see :func:`suits`).
LOCAL_DISK_FILE_SYSTEMS = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "bcachefs", "jfs", "reiserfs"}
)

#: An escaped character of a path in ``/proc/self/mountinfo`` (a space is ``\040``).
_ESCAPED = re.compile(r"\\([0-7]{3})")


def suits(folder: str) -> bool:
    """Whether files under ``folder`` are written directly, as the ``direct-writes``
    setting of this process says (see :func:`setting`): ``true``, on a local disk
    (:func:`on_local_disk`); ``auto``, there on a virtual machine whose balloon reports
    free pages to its host (where a new page of the page cache costs a fault in the
    host); ``false``, never."""
    chosen = setting()
    if chosen == "auto":
        return free_page_reporting() and on_local_disk(folder)
    return chosen is True and on_local_disk(folder)


def setting() -> bool | str:
    """The ``direct-writes`` setting of this process: ``True``, ``False`` or ``"auto"``
    (strings, as environment variables give them, in any case). Writes read it before
    they touch a store, so that a wrong value is refused before anything is written.

    Raises
    ------
    MetatensorDaskError
        For another value of the setting.
    """
    value = config.get("direct-writes")
    chosen = value
    if isinstance(value, str):
        chosen = {"true": True, "false": False}.get(value.lower(), value.lower())
    if chosen is True or chosen is False or chosen == "auto":
        return chosen
    raise MetatensorDaskError(
        f"the setting metatensor_dask.direct-writes must be true, false or auto, not "
        f"{value!r}: change it in the dask configuration (a YAML file, or the "
        "environment variable DASK_METATENSOR_DASK__DIRECT_WRITES)"
    )


@functools.lru_cache(maxsize=64)
def on_local_disk(folder: str) -> bool:
    """Whether ``folder`` is on a local disk that takes direct writes: Linux, and the
    file system that holds it (its mount in ``/proc/self/mountinfo``) is one of
    :data:`LOCAL_DISK_FILE_SYSTEMS`."""
    if _O_DIRECT is None:
        return False
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as file:
            lines = file.read().splitlines()
    except OSError:
        return False
    path = os.path.realpath(folder)
    longest, kind = -1, None
    for line in lines:
        fields = line.split(" ")
        if len(fields) < 7 or "-" not in fields[6:]:
            continue
        mount = _ESCAPED.sub(lambda match: chr(int(match.group(1), 8)), fields[4])
        inside = path == mount or path.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > longest:
            longest, kind = len(mount), fields[fields.index("-", 6) + 1]
    return kind in LOCAL_DISK_FILE_SYSTEMS


_lock = threading.Lock()
#: The aligned buffers not in use, kept for the next writes (one per thread writing).
_free: list[mmap.mmap] = []


def _forget_buffers() -> None:
    """In a forked child: a pool of its own (its parent's lock may have been held by
    another thread at the fork, and its buffers are the parent's pages until written)."""
    global _lock
    _lock = threading.Lock()
    _free.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_buffers)


class _Refused(Exception):
    """The file system refuses direct I/O on this file."""


def _take() -> mmap.mmap:
    with _lock:
        if _free:
            return _free.pop()
    # anonymous memory (page-aligned), private: a process forked later copies the
    # pages it writes, rather than writing its parent's
    return mmap.mmap(-1, BUFFER_BYTES, flags=mmap.MAP_PRIVATE)


def _give_back(buffer: mmap.mmap) -> None:
    with _lock:
        _free.append(buffer)


class _Writer:
    """Bytes and holes appended to the file ``descriptor`` (opened with ``O_DIRECT``),
    through the aligned ``buffer``: ``start`` is the file offset of the buffer's first
    byte, always a multiple of :data:`ALIGNMENT`, and ``fill`` the bytes it holds."""

    def __init__(self, name: str, descriptor: int, buffer: mmap.mmap) -> None:
        self.name = name
        self.descriptor = descriptor
        self.view = memoryview(buffer)
        self.size = len(buffer)
        self.start = 0
        self.fill = 0
        self.end = 0  # the end of the bytes written so far (holes after it set no size)

    def add(self, data: memoryview) -> None:
        position = 0
        while position < data.nbytes:
            if self.fill == self.size:
                self._flush(self.size)
            count = min(self.size - self.fill, data.nbytes - position)
            self.view[self.fill : self.fill + count] = data[position : position + count]
            self.fill += count
            position += count

    def skip(self, count: int) -> None:
        """``count`` zero bytes: written up to the next aligned offset, the whole
        blocks after it left as a hole, the rest written."""
        head = min(count, -(self.start + self.fill) % ALIGNMENT)
        self.view[self.fill : self.fill + head] = bytes(head)
        self.fill += head
        count -= head
        if not count:
            return
        self._flush(self.fill)
        self.start += count - count % ALIGNMENT
        tail = count % ALIGNMENT
        self.view[:tail] = bytes(tail)
        self.fill = tail

    def finish(self) -> int:
        """Write what the buffer holds (its last partial block through the page
        cache), give the file its size, and return that size."""
        whole = self.fill - self.fill % ALIGNMENT
        if whole:
            self._flush(whole)
        size = self.start + self.fill
        if self.fill:
            # the last bytes, short of a block: through the page cache
            descriptor = os.open(self.name, os.O_WRONLY)
            try:
                write_all(descriptor, [self.view[: self.fill]], self.start)
            finally:
                os.close(descriptor)
            self.end = size
        if self.end < size:
            os.ftruncate(self.descriptor, size)  # holes at the end
        return size

    def _flush(self, count: int) -> None:
        """Write the first ``count`` bytes of the buffer (a multiple of
        :data:`ALIGNMENT`) at ``start``, and keep the rest at its beginning."""
        if not count:
            return
        try:
            _write_at(self.descriptor, self.view[:count], self.start)
        except OSError as error:
            if error.errno == errno.EINVAL:
                raise _Refused from error
            raise
        self.start += count
        self.end = self.start
        rest = self.fill - count
        if rest:
            self.view[:rest] = self.view[count : self.fill]
        self.fill = rest


def _write_at(descriptor: int, data: memoryview, offset: int) -> None:
    """Write ``data`` at ``offset`` in one call (``_file_writes.write_all`` writes in
    calls of 128 KiB, each a direct write that waits for the disk), continued if short."""
    written = 0
    while written < data.nbytes:
        count = os.pwrite(descriptor, data[written:], offset + written)
        if count == 0:
            raise OSError(f"no byte of {data.nbytes - written} could be written")
        written += count


def write_new_file(name: str, pieces: Iterable[memoryview | int]) -> int | None:
    """Write the file ``name`` (created, or emptied) past the page cache: ``pieces``
    are, in order, bytes (C-contiguous byte views) and counts of zero bytes (left as
    holes where they cover whole blocks). Returns the file's size, or ``None`` when
    the file system refuses direct I/O: the file then holds nothing that counts, and
    the caller writes it the usual way (which empties it first)."""
    if _O_DIRECT is None:
        return None
    buffer = _take()  # (before the file is opened: no descriptor is left if it fails)
    try:
        descriptor = _open_direct(name, _O_DIRECT)
        if descriptor is None:
            return None
        try:
            return _write_pieces(_Writer(name, descriptor, buffer), pieces)
        finally:
            os.close(descriptor)
    finally:
        _give_back(buffer)


def _open_direct(name: str, direct: int) -> int | None:
    """``name`` opened to be written with the flag ``direct`` (``O_DIRECT``), created or
    emptied (one with other names, hard links, created anew: see
    :func:`~._file_writes.open_own`); ``None`` when its file system refuses direct I/O."""
    try:
        return open_own(name, direct)
    except OSError as error:
        if error.errno == errno.EINVAL:
            return None
        raise


def _write_pieces(writer: _Writer, pieces: Iterable[memoryview | int]) -> int | None:
    """Write ``pieces`` (see :func:`write_new_file`) with ``writer``: the file's size,
    or ``None`` when its file system refuses direct I/O."""
    try:
        for piece in pieces:
            if isinstance(piece, int):
                writer.skip(piece)
            else:
                writer.add(piece)
        return writer.finish()
    except _Refused:
        return None
