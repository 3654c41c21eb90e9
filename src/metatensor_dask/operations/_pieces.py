"""Many tiny single-chunk arrays as the tasks that merge them take them.

``keys_to_samples`` and ``keys_to_properties`` on a map of many tiny blocks merge
thousands of arrays into each output array. Each step of building that output (checking
that the pieces are tiny single chunks, finding what a task takes for each, hashing
their names into the task name, counting their rows) used to walk the pieces again, and
on a map of 100,000 blocks, which no longer fits in the processor's caches, every walk
costs about twice as much per piece as on a map of 10,000. :func:`tiny_pieces` walks
them once and keeps what every later step needs in a :class:`Pieces` record: the numpy
chunks the graph holds as data (given to the tasks directly), the other pieces (which
the tasks take as inputs), one digest of all the names, the rows of each piece as one
numpy array, the bytes and the dtype.

A :class:`Pieces` is given to a task as a single argument: dask walks the lists and
tuples of a task's arguments looking for references, and does not look into it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np

from .. import _graph
from .._collection import GroupItem
from ._grouping import TINY_BYTES

__all__ = ["Pieces", "tiny_pieces"]


class Pieces:
    """Tiny single-chunk arrays, as a task takes them.

    Parameters
    ----------
    data
        For each piece, its numpy chunk when the graph holds it as data, else None
        (the piece is the next of ``inputs``).
    inputs
        The pieces whose chunks are results of other tasks, in order.
    rows
        The rows of each piece.
    digest
        What identifies the pieces' content (their names), for task names.
    sizes
        The bytes of each piece.
    dtype
        The dtype all pieces give when merged (numpy's result type).
    """

    __slots__ = ("_digest", "data", "dtype", "inputs", "rows", "sizes")

    def __init__(
        self,
        data: list[np.ndarray | None],
        inputs: list[da.Array],
        rows: np.ndarray,
        digest: str,
        sizes: np.ndarray,
        dtype: np.dtype,
    ):
        self.data, self.inputs, self.rows = data, inputs, rows
        self._digest, self.sizes, self.dtype = digest, sizes, dtype

    @property
    def nbytes(self) -> int:
        """The bytes of all pieces."""
        return int(self.sizes.sum())

    def __len__(self) -> int:
        return len(self.data)

    def digest(self) -> str:
        """What identifies the content of the pieces (hashed into task names)."""
        return self._digest

    def subset(self, kept: np.ndarray) -> Pieces:
        """The pieces at the positions ``kept``, in that order."""
        if len(kept) == len(self.data) and (kept == np.arange(len(kept))).all():
            return self
        data = [self.data[i] for i in kept.tolist()]
        if self.inputs:
            # the position among the inputs of each piece that is one
            is_input = np.fromiter((d is None for d in self.data), bool, len(self.data))
            position = np.cumsum(is_input) - 1
            chosen = kept[is_input[kept]]
            inputs = [self.inputs[i] for i in position[chosen].tolist()]
        else:
            inputs = []
        hasher = hashlib.blake2b(digest_size=12)
        hasher.update(self._digest.encode())
        hasher.update(np.asarray(kept, np.int64).tobytes())
        return Pieces(
            data, inputs, self.rows[kept], hasher.hexdigest(), self.sizes[kept], self.dtype
        )

    def arrays(self, chunks: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The pieces as numpy arrays, given the chunks of :attr:`inputs` (in a task)."""
        if not self.inputs:
            return self.data  # type: ignore[return-value]
        given = iter(chunks)
        return [next(given) if d is None else d for d in self.data]


def tiny_pieces(arrays: Sequence[Any]) -> Pieces | None:
    """The :class:`Pieces` record of ``arrays`` (as blocks hold them: dask arrays or
    group items), in one pass; None unless each is a single chunk of at most
    :data:`~metatensor_dask.operations._grouping.TINY_BYTES`."""
    data: list[np.ndarray | None] = []
    inputs: list[da.Array] = []
    names: list[str] = []
    rows: list[int] = []
    sizes: list[int] = []
    dtypes: list[np.dtype] = []
    last = None
    held_chunk = _graph.held_chunk
    for array in arrays:
        if isinstance(array, GroupItem):
            array = array.array()
        if not isinstance(array, da.Array):
            return None
        held = held_chunk(array)
        if held is not None:
            # the chunk itself tells its bytes, rows and dtype (fewer objects to
            # read than the array's chunks and meta, on maps of many blocks)
            size, count, dtype = held.nbytes, len(held), held.dtype
        else:
            chunks = array.chunks
            dtype = array._meta.dtype
            size = dtype.itemsize
            for chunk in chunks:
                if len(chunk) != 1:
                    return None
                size *= chunk[0]
            count = chunks[0][0]
            inputs.append(array)
        if size > TINY_BYTES:
            return None
        data.append(held)
        sizes.append(size)
        names.append(array.name)
        rows.append(count)
        if dtype is not last:
            dtypes.append(dtype)
            last = dtype
    if not data:
        return None
    hasher = hashlib.blake2b(digest_size=12)
    hasher.update("\0".join(names).encode())
    return Pieces(
        data,
        inputs,
        np.asarray(rows, np.int64),
        hasher.hexdigest(),
        np.asarray(sizes, np.int64),
        np.result_type(*dtypes),
    )
