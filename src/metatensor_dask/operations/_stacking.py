"""One output array made of many tiny pieces, for ``keys_to_samples`` and
``keys_to_properties``.

The pieces come as one :class:`~._pieces.Pieces` record and their places as one
*layout*, which says where every piece goes with a few numpy arrays for all of them:

* :class:`RowTargets`: pieces spanning every column, each of their rows at some output
  row (``keys_to_samples``): the output row of every input row, pieces one after the
  other;
* :class:`ColumnStarts`: pieces holding every output row in order, side by side along
  the last axis (``keys_to_properties`` of blocks with the same samples);
* any other placement, a :class:`~._placement.Placement` (one target per piece).

:func:`stacked` records the merge as one call of the active groups of tiny blocks when
the output is within the configured chunk size, or builds it in row chunks of at most
that size: a few of them (:data:`BUFFER_CHUNKS`) are views of one buffer that one task
fills, reading each piece once; more are one task each, which takes only the pieces
with rows in its chunk.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np

from .. import _graph
from .. import _row_buffer as row_buffer
from .._gc import without_collector
from ._grouping import active_groups, picked_arguments, picked_call
from ._pieces import Pieces
from ._placement import Placement, place, row_chunked, row_limit

__all__ = ["ColumnStarts", "RowTargets", "stacked"]

BUFFER_CHUNKS = 4
"""Most row chunks of an output written by one task into one buffer (see
:mod:`metatensor_dask._row_buffer`)."""

BATCH_BYTES = 4 * 2**20
"""Bytes of pieces concatenated at once when placing rows (see :meth:`RowTargets.placed`)."""


class RowTargets:
    """Pieces spanning every column, placed row by row.

    Parameters
    ----------
    targets
        The output row of every row of the pieces (their rows one after the other), or
        -1 for a row left out.
    counts
        The rows of each piece.
    size
        The output's rows.
    """

    __slots__ = ("counts", "size", "targets")

    def __init__(self, targets: np.ndarray, counts: np.ndarray, size: int):
        self.targets = np.asarray(targets, np.int64)
        self.counts = np.asarray(counts, np.int64)
        self.size = size

    def digest(self) -> str:
        hasher = hashlib.blake2b(digest_size=12)
        hasher.update(self.targets.tobytes())
        hasher.update(self.counts.tobytes())
        hasher.update(str(self.size).encode())
        return hasher.hexdigest()

    def within(self, start: int, stop: int) -> tuple[np.ndarray, RowTargets]:
        """The pieces with rows in the output rows ``start:stop``, and their layout in
        those rows alone."""
        inside = (self.targets >= start) & (self.targets < stop)
        piece = np.repeat(np.arange(len(self.counts)), self.counts)
        kept = np.flatnonzero(np.bincount(piece[inside], minlength=len(self.counts)))
        rows = np.repeat(np.isin(np.arange(len(self.counts)), kept), self.counts)
        local = np.where(inside[rows], self.targets[rows] - start, -1)
        return kept, RowTargets(local, self.counts[kept], stop - start)

    def placed(
        self,
        arrays: list[np.ndarray],
        shape: tuple[int, ...],
        dtype: Any,
        fill: Any,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """The output (written into ``out`` when given): the pieces' rows at their
        targets, ``fill`` in the rows none covers (see :func:`_scatter_rows`)."""
        if out is None:
            out = np.empty(shape, dtype)
        covered = np.zeros(self.size, bool)
        covered[self.targets[self.targets >= 0]] = True
        if not covered.all():
            out[~covered] = fill
        _scatter_rows(out, arrays, self.targets, self.counts)
        return out


def _row_bytes(shape: tuple[int, ...], dtype: Any) -> int:
    return max(1, math.prod(shape[1:]) * np.dtype(dtype).itemsize)


def _scatter_rows(
    out: np.ndarray, arrays: list[np.ndarray], targets: np.ndarray, counts: np.ndarray
) -> None:
    """The rows of ``arrays`` (``counts`` each) written at ``targets`` (-1: left out).

    Pieces are concatenated and scattered by batches of about :data:`BATCH_BYTES`:
    one scatter per piece was measured several times slower on outputs of tens of
    megabytes, and one concatenation of all pieces is a temporary the size of the
    output (fresh memory from the system beyond the allocator's threshold); batches
    reuse the same memory. Writing the pieces straight into the output instead (one
    concatenation into the output's rows when they go to consecutive rows, or one
    into a strided view of it when their rows are interleaved) was measured no
    faster at 100,000 blocks, and slower for interleaved rows: the cost is in reading
    each piece's memory, not in the second copy, which reads a batch still in cache.
    Of rows placed twice, the later piece's is kept.
    """
    bounds = np.concatenate([[0], np.cumsum(counts)])
    if bounds[-1] == 0:
        return
    # the first piece of each batch: a new batch every BATCH_BYTES of rows
    step = max(1, BATCH_BYTES // _row_bytes(out.shape, out.dtype))
    firsts = np.unique(np.searchsorted(bounds, np.arange(0, bounds[-1], step), side="right") - 1)
    ends = [*firsts[1:].tolist(), len(arrays)]
    # one batch array for all batches: a new one each time would be memory from
    # the system each time (beyond the allocator's threshold)
    largest = int(np.max(bounds[ends] - bounds[firsts]))
    scratch = np.empty((largest, *out.shape[1:]), out.dtype)
    keep_all = bool((targets >= 0).all())
    for first, end in zip(firsts.tolist(), ends, strict=True):
        size = int(bounds[end] - bounds[first])
        rows = np.concatenate(arrays[first:end], out=scratch[:size])
        placed = targets[bounds[first] : bounds[end]]
        if keep_all:
            out[placed] = rows
        else:
            kept = placed >= 0
            out[placed[kept]] = rows[kept]


class ColumnStarts:
    """Pieces holding every output row (or rows ``rows`` of them) in order, side by
    side along the last axis.

    Parameters
    ----------
    starts
        The first output column of each piece, increasing.
    widths
        The columns of each piece.
    rows
        ``(start, stop)``: the rows of the pieces that the output holds, or None (all).
    """

    __slots__ = ("rows", "starts", "widths")

    def __init__(self, starts: np.ndarray, widths: np.ndarray, rows: tuple[int, int] | None = None):
        self.starts = np.asarray(starts, np.int64)
        self.widths = np.asarray(widths, np.int64)
        self.rows = rows

    def digest(self) -> str:
        hasher = hashlib.blake2b(digest_size=12)
        hasher.update(self.starts.tobytes())
        hasher.update(self.widths.tobytes())
        hasher.update(repr(self.rows).encode())
        return hasher.hexdigest()

    def within(self, start: int, stop: int) -> tuple[np.ndarray, ColumnStarts]:
        """Every piece, and the layout of the output rows ``start:stop`` alone."""
        kept = np.arange(len(self.starts))
        return kept, ColumnStarts(self.starts, self.widths, (start, stop))

    def placed(
        self,
        arrays: list[np.ndarray],
        shape: tuple[int, ...],
        dtype: Any,
        fill: Any,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """The output (written into ``out`` when given): the pieces side by side,
        ``fill`` in the columns none covers.

        Neighbouring pieces are concatenated by batches of about :data:`BATCH_BYTES`,
        each then copied into its columns: one concatenation of all pieces into the
        output writes a few bytes of every row for each piece, all over an output of
        tens of megabytes (measured about ten times slower).
        """
        if out is None:
            out = np.empty(shape, dtype)
        if self.rows is not None:
            arrays = [array[self.rows[0] : self.rows[1]] for array in arrays]
        column_bytes = max(1, math.prod(shape[:-1]) * np.dtype(dtype).itemsize)
        batch: list[np.ndarray] = []
        first = position = 0
        for start, width, array in zip(
            self.starts.tolist(), self.widths.tolist(), arrays, strict=True
        ):
            if start > position:
                _copy_columns(out, batch, first)
                out[..., position:start] = fill
                batch = []
            if not batch:
                first = start
            batch.append(array)
            position = start + width
            if (position - first) * column_bytes >= BATCH_BYTES:
                _copy_columns(out, batch, first)
                batch = []
        _copy_columns(out, batch, first)
        out[..., position:] = fill
        return out


def _copy_columns(out: np.ndarray, batch: list[np.ndarray], first: int) -> None:
    """The ``batch`` of pieces, side by side, into the columns of ``out`` from ``first``."""
    if batch:
        joined = np.concatenate(batch, axis=-1) if len(batch) > 1 else batch[0]
        out[..., first : first + joined.shape[-1]] = joined


class _General:
    """Any :class:`~._placement.Placement` of the pieces, with the rows of each."""

    __slots__ = ("placement", "rows")

    def __init__(self, placement: Placement, rows: np.ndarray):
        self.placement, self.rows = placement, rows

    def digest(self) -> str:
        return self.placement.digest()

    def within(self, start: int, stop: int) -> tuple[np.ndarray, _General]:
        kept, local = self.placement.rows_within(self.rows.tolist(), start, stop)
        index = np.asarray(kept, np.int64)
        return index, _General(local, self.rows[index])

    def placed(
        self,
        arrays: list[np.ndarray],
        shape: tuple[int, ...],
        dtype: Any,
        fill: Any,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        result = place(*arrays, self.placement, shape, dtype, fill)
        if out is None:
            return result
        out[...] = result
        return out


Layout = RowTargets | ColumnStarts | _General


@without_collector
def merge_pieces_into_buffer(*arguments: Any) -> np.ndarray:
    """:func:`merge_pieces` written into a new :func:`~metatensor_dask._row_buffer.buffer`
    (numpy, for one task)."""
    *chunks, pieces, layout, shape, dtype, fill = arguments
    out = row_buffer.buffer(shape, dtype)
    return layout.placed(pieces.arrays(chunks), shape, np.dtype(dtype), fill, out)


@without_collector
def merge_pieces(*arguments: Any) -> np.ndarray:
    """The array ``(*chunks, pieces, layout, shape, dtype, fill)``: the pieces (the
    chunks being those of their inputs) where the layout puts them (numpy, for one
    task)."""
    *chunks, pieces, layout, shape, dtype, fill = arguments
    return layout.placed(pieces.arrays(chunks), shape, np.dtype(dtype), fill)


def stacked(
    prefix: str,
    pieces: Pieces,
    layout: RowTargets | ColumnStarts | Placement,
    shape: tuple[int, ...],
    dtype: Any,
    fill: float,
) -> Any:
    """The array of ``shape`` holding ``pieces`` where ``layout`` says and ``fill``
    elsewhere: a grouped call, or a dask array of row chunks (see the module's
    documentation)."""
    dtype = np.dtype(dtype)
    where = _General(layout, pieces.rows) if isinstance(layout, Placement) else layout
    limit = row_limit(shape, dtype)
    groups = active_groups()
    extra = (pieces, where, tuple(shape), dtype.str, fill)
    if groups is not None and shape[0] <= limit:
        return groups.record(
            prefix, merge_pieces, pieces.inputs, extra, shape, dtype, pieces.nbytes
        )
    return _row_chunks(prefix, pieces, where, tuple(shape), dtype, fill, limit)


def _row_chunks(
    prefix: str,
    pieces: Pieces,
    layout: Layout,
    shape: tuple[int, ...],
    dtype: np.dtype,
    fill: float,
    limit: int,
) -> Any:
    """The array in chunks of at most ``limit`` rows (see :func:`~._placement.row_chunked`)."""

    def buffered(chunks: list[tuple[Any, int, int]]) -> dict[Any, Any]:
        # a few chunks: one task writes the whole array into a buffer, which computing
        # the array gives whole (no second copy of the rows, see `_row_buffer`), and
        # each piece is read once (the rows of one piece may be in every chunk)
        buffer = f"{chunks[0][0][0]}-buffer"
        refs, picks = picked_arguments(pieces.inputs)
        arguments = (*refs, pieces, layout, shape, dtype.str, fill)
        merge = merge_pieces_into_buffer
        layer = {buffer: _graph.task(buffer, picked_call, merge, tuple(picks), *arguments)}
        for key, start, size in chunks:
            layer[key] = _graph.task(key, row_buffer.rows, _graph.ref(buffer), start, start + size)
        return layer

    def separate(chunks: list[tuple[Any, int, int]]) -> dict[Any, Any]:
        # more chunks stay arrays of their own, so that an array streamed chunk by
        # chunk is never all in memory
        layer = {}
        for key, start, size in chunks:
            kept, local = layout.within(start, start + size)
            part = pieces.subset(kept)
            refs, picks = picked_arguments(part.inputs)
            arguments = (*refs, part, local, (size, *shape[1:]), dtype.str, fill)
            layer[key] = _graph.task(key, picked_call, merge_pieces, tuple(picks), *arguments)
        return layer

    few = 1 < -(-shape[0] // limit) <= BUFFER_CHUNKS
    hashed = [pieces, layout, shape, dtype.str, fill]
    tasks = buffered if few else separate
    return row_chunked(prefix, hashed, shape, dtype, limit, pieces.inputs, tasks)
