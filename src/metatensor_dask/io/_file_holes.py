"""Whether a range of a local file reads as zeros, known mostly from its holes.

A chunk extended in place (see :mod:`.zarr_in_place`) must read as zeros where its
padding is left as a hole; checking it byte for byte would read megabytes. The file
system tells where a file's data is (``lseek`` with ``SEEK_DATA``): whole blocks
without data are holes, which read as zeros, and only the partial blocks at both ends
of the range are read.
"""

from __future__ import annotations

import errno
import os

__all__ = ["reads_as_zeros"]


def reads_as_zeros(descriptor: int, start: int, stop: int) -> bool:
    """Whether the bytes from ``start`` to ``stop`` of the file open (readable) as
    ``descriptor`` read as zeros (bytes past its end too), found without reading whole
    blocks of the file: those must be holes (``SEEK_DATA``), and only the partial
    blocks at both ends are read. ``False`` when a whole block holds data, or where
    the file system does not tell holes apart (its ``SEEK_DATA`` finds data
    everywhere): zeros that were written are not looked for."""
    if start >= stop:
        return True
    block = os.fstat(descriptor).st_blksize
    first, last = -(-start // block) * block, stop // block * block
    edges = [(start, stop)]
    if first < last:
        try:
            data = os.lseek(descriptor, first, os.SEEK_DATA)
        except OSError as error:
            if error.errno != errno.ENXIO:  # ENXIO: no data after ``first``
                return False
            data = last
        if data < last:
            return False
        edges = [(start, first), (last, stop)]
    return not any(os.pread(descriptor, b - a, a).strip(b"\0") for a, b in edges if b > a)
