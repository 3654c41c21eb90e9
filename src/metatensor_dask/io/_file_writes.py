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
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

__all__ = ["PIECE_BYTES", "write_all"]

PIECE_BYTES = 128 * 2**10
"""Bytes written by one system call at most."""


def _pieces(buffers: Iterable[Any]) -> Iterable[list[memoryview]]:
    """The bytes of ``buffers``, in order, as groups of views of at most
    :data:`PIECE_BYTES` bytes in all (small buffers gathered into one group)."""
    group: list[memoryview] = []
    room = PIECE_BYTES
    for buffer in buffers:
        view = memoryview(buffer).cast("B")
        while view.nbytes:
            piece = view[:room]
            group.append(piece)
            view = view[piece.nbytes :]
            room -= piece.nbytes
            if room == 0:
                yield group
                group, room = [], PIECE_BYTES
    if group:
        yield group


def write_all(descriptor: int, buffers: Iterable[Any], offset: int | None = None) -> int:
    """Write ``buffers`` (bytes-like, C-contiguous) one after the other to the open file
    ``descriptor``, at ``offset`` (``pwritev``), or at the file's position when it is
    ``None`` (``writev``). Returns the number of bytes written."""
    total = 0
    for group in _pieces(buffers):
        while group:
            if offset is None:
                written = os.writev(descriptor, group)
            else:
                written = os.pwritev(descriptor, group, offset + total)
            if written == 0:
                raise OSError(f"no byte of {sum(v.nbytes for v in group)} could be written")
            total += written
            while group and written >= group[0].nbytes:
                written -= group[0].nbytes
                group.pop(0)
            if group and written:
                group[0] = group[0][written:]
    return total
