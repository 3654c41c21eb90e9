"""The ``"sample"`` column of stored gradient samples, read and checked chunk by chunk.

A gradient's row pointer tells chunk-wise operations which gradient rows belong to
which values chunk without reading sample labels (see :mod:`metatensor_dask._partition`).
A store whose row pointer disagrees with the gradient's ``"sample"`` column (damaged,
or edited with matching checksums) would have them pair value rows with the wrong
gradient rows, silently. So the lazy gradient samples of a store carry a
:class:`StoredSampleColumn` (:meth:`Labels._stored_source
<metatensor_dask.labels.Labels._stored_source>`), and each chunk-wise task takes its
index of value rows from :meth:`StoredSampleColumn.local_index` (a group of tiny
blocks, from :meth:`StoredSampleColumn.checked_together` inside the group's task, for
all its gradients at once): the ``"sample"`` column of its own gradient rows (one int32
per row, read from the store when the task runs), checked against the row pointer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import dask.array as da
import numpy as np

from .. import _graph
from .._partition import gradient_row_chunks, misplaced_row
from ..errors import DamagedStoreError, MetatensorDaskError
from .zarr_identity import overwrite_told
from .zarr_integrity import damaged, misplaced_message
from .zarr_store import ArrayRef, read_plain_region, read_plain_regions

__all__ = ["StoredSampleColumn"]


class StoredSampleColumn:
    """The ``"sample"`` column of a gradient's samples array in a store.

    Parameters
    ----------
    ref
        The samples array.
    column
        The position of ``"sample"`` among its columns.
    read
        ``read(ref, region)``, a function of the reader that reads rows of ``ref``.
    where
        The store's description, for messages.
    store_id
        The store's id when opened (format 4): rows that are missing, or not where the
        row pointer puts them, in a store overwritten since, are refused as such (see
        :func:`~.zarr_identity.overwrite_told`).
    """

    __slots__ = ("column", "read", "ref", "store_id", "where")

    def __init__(
        self,
        ref: ArrayRef,
        column: int,
        read: Callable[[ArrayRef, tuple[slice, ...]], np.ndarray],
        where: str,
        store_id: str | None = None,
    ):
        self.ref = ref
        self.column = column
        self.read = read
        self.where = where
        self.store_id = store_id

    def local_index(self, pointer: np.ndarray, value_chunks: tuple[int, ...]) -> da.Array:
        """For each gradient row, the index of its value row within its values chunk.

        The same numbers as :func:`~metatensor_dask._partition.local_sample_index`, but
        read from the stored ``"sample"`` column, chunked as
        :func:`~metatensor_dask._partition.gradient_row_chunks` (chunk *i* holds the
        rows of values chunk *i*): each task reads the rows of its chunk and raises
        :class:`~metatensor_dask.errors.DamagedStoreError`, naming the store, the
        gradient samples array and the chunk, when one of them is not where
        ``pointer`` puts it.

        Parameters
        ----------
        pointer
            The gradient's row pointer, as operations use it.
        value_chunks
            The row chunks of the values.
        """
        value_bounds = np.concatenate([[0], np.cumsum(value_chunks)]).astype(np.int64)
        row_bounds = pointer[value_bounds]
        hasher = hashlib.blake2b(digest_size=12)
        hasher.update(f"{self.where}|{self.ref.path}|{self.column}".encode())
        hasher.update(np.ascontiguousarray(pointer).tobytes())
        hasher.update(value_bounds.tobytes())
        name = f"sample-index-{hasher.hexdigest()}"
        tasks = {}
        for i in range(len(value_chunks)):
            first, last = int(value_bounds[i]), int(value_bounds[i + 1])
            key = (name, i)
            tasks[key] = _graph.task(
                key,
                self.checked_index,
                i,
                (int(row_bounds[i]), int(row_bounds[i + 1])),
                first,
                np.diff(pointer[first : last + 1]),
            )
        chunks = (gradient_row_chunks(pointer, value_chunks),)
        return _graph.array_from_tasks(name, tasks, (), chunks, np.int64)

    def __repr__(self) -> str:
        # deterministic: it takes part in the names of grouped tasks
        return f"StoredSampleColumn({self.where!r}, {self.ref.path!r}, {self.column})"

    @staticmethod
    def checked_together(
        gradients: list[tuple[StoredSampleColumn, np.ndarray]],
    ) -> list[np.ndarray]:
        """:meth:`checked_index` of the whole of each gradient ``(column, counts)`` (one
        values chunk), as a group of tiny blocks asks: when all are plain arrays of one
        store, their rows are read together (see
        :func:`~metatensor_dask.io.zarr_store.read_plain_regions`) and checked against
        their row pointers in one comparison. On any damage, each is read and checked
        alone, in order: the first damaged one raises as :meth:`checked_index` does."""
        store = gradients[0][0].ref.store
        if all(c.read is read_plain_region and c.ref.store is store for c, _ in gradients):
            try:
                return _checked_together(gradients)
            except MetatensorDaskError:
                pass  # raised below, by the first damaged gradient
        return [
            column.checked_index(0, (0, int(counts.sum())), 0, counts)
            for column, counts in gradients
        ]

    def checked_index(
        self, chunk: int, rows: tuple[int, int], first: int, counts: np.ndarray
    ) -> np.ndarray:
        """Run by a task: the gradient rows ``rows`` of values chunk ``chunk`` (the
        value rows from ``first``, with ``counts`` gradient rows each), read from the
        store and checked, as indices of value rows within that chunk."""
        start, stop = rows
        ref = self.ref
        region = (slice(start, stop), slice(0, int(ref.document["shape"][1])))
        try:
            column = self.read(ref, region)[:, self.column]
            misplaced = misplaced_row(column, counts, first)
            if misplaced is not None:
                row, value_row = misplaced
                raise damaged(
                    self.where,
                    f"the gradient samples '{ref.path}' disagree with the stored row pointer "
                    f"in chunk {chunk} (the gradient rows {start}:{stop} of the value rows "
                    f"{first}:{first + len(counts)}): "
                    f"{misplaced_message(start + row, int(column[row]), value_row)}",
                )
        except DamagedStoreError:
            # the overwrite context and its message made only then: a task of a group of tiny
            # blocks checks a thousand gradients
            what = f"the rows {start}:{stop} of the gradient samples '{ref.path}'"
            with overwrite_told(ref.store, self.where, self.store_id, what):
                raise
        index = column.astype(np.int64)
        return index - first if first else index


def _checked_together(gradients: list[tuple[StoredSampleColumn, np.ndarray]]) -> list[np.ndarray]:
    """The ``"sample"`` column of each whole gradient ``(column, counts)``, read
    together, as indices of value rows; a :class:`MetatensorDaskError` when one of them
    is damaged or not where its row pointer puts it."""
    totals = np.array([int(counts.sum()) for _, counts in gradients], dtype=np.int64)
    reads: list[tuple[ArrayRef, tuple[slice, ...]]] = [
        (column.ref, (slice(0, int(total)), slice(0, int(column.ref.document["shape"][1]))))
        for (column, _), total in zip(gradients, totals, strict=True)
    ]
    stored = read_plain_regions(reads)
    found = np.concatenate(
        [rows[:, column.column] for rows, (column, _) in zip(stored, gradients, strict=True)]
    ).astype(np.int64)
    # the value row of each gradient row by the pointers: a local index, restarting at
    # 0 in each gradient
    counts = np.concatenate([counts for _, counts in gradients])
    values = np.array([len(counts) for _, counts in gradients], dtype=np.int64)
    first_value = np.repeat(np.cumsum(values) - values, values)
    expected = np.repeat(np.arange(len(counts), dtype=np.int64) - first_value, counts)
    if len(found) != len(expected) or (found != expected).any():
        raise MetatensorDaskError("a gradient's samples disagree with its row pointer")
    return list(np.split(found, np.cumsum(totals)[:-1]))
