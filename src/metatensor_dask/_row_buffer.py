"""Row chunks that are views of one array, so that computing the whole array does not
copy them.

A dask array in several row chunks is computed chunk by chunk and its chunks are then
joined into a new array (dask's ``concatenate3``): for an array of tens of megabytes,
that is a second array of its size, beyond the C allocator's threshold (32 MiB) fresh
memory from the system, paid in page faults. When one task instead writes the whole
array into a :func:`buffer` and the tasks of the row chunks return views of its rows,
:func:`whole` gives the buffer itself from the chunks: no copy.

The buffer is handed out once: :func:`whole` forgets it, and :func:`own_chunk` copies
a chunk of a buffer not handed out yet (chunks kept by ``persist``), so that an array
returned by ``compute`` shares its memory with nothing else. Sent to another process
(a cluster's worker), a buffer or a chunk is a copy that is no buffer: the chunks that
come back are joined as usual.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

__all__ = ["buffer", "own_chunk", "rows", "whole"]

_UNCLAIMED: dict[int, weakref.ref[np.ndarray]] = {}
"""The arrays of the buffers whose rows are being written and not yet handed out, by
their ``id`` (numpy arrays are not hashable)."""


def _unclaimed(array: np.ndarray) -> None:
    key = id(array)
    _UNCLAIMED[key] = weakref.ref(array, lambda _: _UNCLAIMED.pop(key, None))


def _is_unclaimed(array: np.ndarray) -> bool:
    ref = _UNCLAIMED.get(id(array))
    return ref is not None and ref() is array


def buffer(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A new array of ``shape`` and ``dtype`` whose row chunks (views of its rows,
    in order) :func:`whole` gives back as the array."""
    array = np.empty(shape, dtype)
    _unclaimed(array)
    return array


def rows(array: np.ndarray, start: int, stop: int) -> np.ndarray:
    """The rows ``start:stop`` of a :func:`buffer` (a view, for one task)."""
    return array[start:stop]


def _base(chunk: Any) -> np.ndarray | None:
    base = getattr(chunk, "base", None) if type(chunk) is np.ndarray else None
    return base if type(base) is np.ndarray and _is_unclaimed(base) else None


def whole(chunks: list[Any]) -> np.ndarray | None:
    """The array of the buffer that ``chunks`` (row chunks, in order) are all the
    rows of, handed out once; None for any other chunks."""
    if len(chunks) < 2:
        return None
    base = _base(chunks[0])
    if base is None or not base.flags.c_contiguous:
        return None
    address = base.__array_interface__["data"][0]
    for chunk in chunks:
        if chunk.base is not base or chunk.__array_interface__["data"][0] != address:
            return None
        address += chunk.nbytes
    if address != base.__array_interface__["data"][0] + base.nbytes:
        return None
    _UNCLAIMED.pop(id(base), None)
    return base


def own_chunk(chunk: Any) -> Any:
    """``chunk``, copied when it is rows of a buffer not handed out (kept beyond the
    computation that wrote it, e.g. by ``persist``)."""
    return chunk.copy() if _base(chunk) is not None else chunk
