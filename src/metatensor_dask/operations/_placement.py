"""New arrays made of the rows and columns of tiny single-chunk arrays, in numpy.

``slice``, ``join`` and the ``keys_to_*`` operations on maps of many tiny blocks do
numpy's work on each block (take some rows, stack blocks, place each block's columns
in a wider array): through dask's fancy indexing and concatenation, each would be a
dozen tasks and arrays per block. Here each output array is one numpy call on whole
input arrays:

* :func:`taken` records ``array[index]`` (rows) or ``array[..., index]`` (columns)
  in the active groups;
* :func:`assembled` records the placement of several arrays into one new array
  (:class:`Placement` says where each goes, the rest is a fill value).

Inside :func:`~metatensor_dask.operations._grouping.grouped_tiny_blocks` the calls run
in the grouped tasks (one per group of blocks). An output larger than the configured
``metatensor_dask.chunk-size``, or one made outside that context, becomes a dask array
of row chunks, one task each, that reads only the inputs its rows come from. Inputs
in several chunks, or large, are left to the chunk-by-chunk paths (the functions
return None).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import _graph, config
from .._gc import without_collector
from ._grouping import (
    TinyGroups,
    active_groups,
    hash_arguments,
    picked_arguments,
    picked_call,
    single_chunk_bytes,
    single_chunk_shape,
)

__all__ = ["Placement", "Target", "assembled", "place", "row_chunked", "row_limit", "taken"]

Target = int | np.ndarray
"""Where a piece goes along an axis: the first of consecutive positions, or positions."""

BATCH_BYTES = 4 * 2**20
"""Bytes of pieces concatenated at once when placing rows (see :func:`place`)."""


class Placement:
    """Where each piece of an assembled array goes.

    Parameters
    ----------
    rows
        For each piece, its first output row (its rows are consecutive there), or the
        output row of each of its rows.
    columns
        For each piece, its first output column (last axis), or the output column of
        each of its columns.
    sources
        For each piece, None (all its rows), or the rows of it that are placed.
    """

    __slots__ = ("_digest", "_spans", "columns", "rows", "sources")

    def __init__(
        self,
        rows: Sequence[Target],
        columns: Sequence[Target],
        sources: Sequence[np.ndarray | None] | None = None,
    ):
        self.rows = list(rows)
        self.columns = list(columns)
        self.sources = list(sources) if sources is not None else [None] * len(self.rows)
        self._digest: bytes | None = None
        self._spans: _RowSpans | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def digest(self) -> str:
        """A hash of the whole placement (names the tasks that use it)."""
        if self._digest is None:
            # one description of every target (-1: a start, -2: None, else the length
            # of an index), then the starts, then the indices, hashed at once
            kinds, starts, indices = [], [], []
            for target in (*self.rows, *self.columns, *self.sources):
                if isinstance(target, np.ndarray):
                    kinds.append(len(target))
                    indices.append(target)
                elif target is None:
                    kinds.append(-2)
                else:
                    kinds.append(-1)
                    starts.append(target)
            hasher = hashlib.blake2b(digest_size=16)
            hasher.update(np.asarray(kinds, np.int64).tobytes())
            hasher.update(np.asarray(starts, np.int64).tobytes())
            if indices:
                hasher.update(np.concatenate(indices).astype(np.int64).tobytes())
            self._digest = hasher.digest()
        return self._digest.hex()

    def rows_within(
        self, piece_rows: Sequence[int], start: int, stop: int
    ) -> tuple[list[int], Placement]:
        """The pieces with rows in the output rows ``start:stop`` (``piece_rows`` gives
        each piece's number of rows), and their placement in those rows alone."""
        if len(piece_rows) != len(self.rows):
            raise ValueError("one number of rows per piece is needed")
        if any(source is not None for source in self.sources):
            raise ValueError("a placement with source rows can not be cut again")
        spans = self._row_spans(piece_rows)
        # only the pieces whose rows may overlap are looked at: a map of many blocks
        # cut in many row chunks would otherwise look at every piece for every chunk
        candidates = np.flatnonzero((spans.last >= start) & (spans.first < stop))
        found: dict[int, tuple[Target, np.ndarray | None]] = {}
        if spans.scattered[candidates].any():
            found.update(spans.scattered_within(start, stop))
        for i in candidates[~spans.scattered[candidates]].tolist():
            target, n = self.rows[i], piece_rows[i]
            low, high = max(start, target), min(stop, target + n)
            if low < high:
                whole = low == target and high == target + n
                found[i] = (low - start, None if whole else np.arange(low - target, high - target))
        kept = sorted(found)
        rows = [found[i][0] for i in kept]
        sources = [found[i][1] for i in kept]
        return kept, Placement(rows, [self.columns[i] for i in kept], sources)

    def _row_spans(self, piece_rows: Sequence[int]) -> _RowSpans:
        """Where the rows of each piece go, found once (the pieces, so their rows, are
        those of this placement)."""
        if self._spans is None:
            self._spans = _RowSpans(self.rows, piece_rows)
        return self._spans


class _RowSpans:
    """The first and last output row of each piece of a placement (last < first for
    none), and the rows of the pieces placed row by row (``scattered``), all of them in
    one array, to cut in row ranges with a few numpy calls whatever the pieces."""

    __slots__ = ("counts", "first", "last", "offsets", "pieces", "scattered", "targets")

    def __init__(self, rows: Sequence[Target], piece_rows: Sequence[int]):
        count = len(rows)
        self.scattered = np.fromiter(
            (isinstance(target, np.ndarray) for target in rows), dtype=bool, count=count
        )
        starts = np.fromiter(
            (0 if isinstance(target, np.ndarray) else target for target in rows),
            dtype=np.int64,
            count=count,
        )
        self.first = starts
        self.last = starts + np.asarray(piece_rows, dtype=np.int64) - 1
        targets = [np.asarray(t, np.int64) for t in rows if isinstance(t, np.ndarray)]
        lengths = np.fromiter((len(t) for t in targets), dtype=np.int64, count=len(targets))
        self.targets = np.concatenate(targets) if targets else np.empty(0, np.int64)
        # for each scattered piece (by its index among all pieces): where its rows start
        # in `targets`, how many; for each row of `targets`: its piece
        offsets = np.cumsum(lengths) - lengths
        self.offsets = np.zeros(count, np.int64)
        self.offsets[self.scattered] = offsets
        self.counts = np.zeros(count, np.int64)
        self.counts[self.scattered] = lengths
        self.pieces = np.repeat(np.flatnonzero(self.scattered), lengths)
        # first and last row of each scattered piece, all at once (none: last < first)
        scattered = np.flatnonzero(self.scattered)
        some = lengths > 0
        self.first[scattered] = 0
        self.last[scattered] = -1
        if some.any():
            at = offsets[some]
            self.first[scattered[some]] = np.minimum.reduceat(self.targets, at)
            self.last[scattered[some]] = np.maximum.reduceat(self.targets, at)

    def scattered_within(
        self, start: int, stop: int
    ) -> dict[int, tuple[Target, np.ndarray | None]]:
        """For each scattered piece with rows in ``start:stop``: the output rows there
        (counted from ``start``) and which of its rows they are (None: all)."""
        # positions in `targets`, so grouped by piece, in each piece in its row order
        inside = np.flatnonzero((self.targets >= start) & (self.targets < stop))
        if not len(inside):
            return {}
        pieces = self.pieces[inside]
        boundaries = np.flatnonzero(np.diff(pieces)) + 1
        local = inside - self.offsets[pieces]
        targets = self.targets[inside] - start
        firsts = pieces[np.r_[0, boundaries]]
        # slices, not numpy.split (which costs microseconds per piece)
        bounds = np.r_[0, boundaries, len(inside)].tolist()
        whole = (np.diff(bounds) == self.counts[firsts]).tolist()
        found: dict[int, tuple[Target, np.ndarray | None]] = {}
        for j, piece in enumerate(firsts.tolist()):
            a, b = bounds[j], bounds[j + 1]
            found[piece] = (targets[a:b], None if whole[j] else local[a:b])
        return found


@without_collector
def place(*arguments: Any) -> np.ndarray:
    """The array ``(*pieces, placement, shape, dtype, fill)``: ``fill`` everywhere but
    where ``placement`` puts the pieces (numpy, for one task)."""
    *pieces, placement, shape, dtype, fill = arguments
    if _stacked_rows(pieces, placement, shape):
        # pieces spanning every column, rows anywhere (keys_to_samples, join, and their
        # row chunks, which take some rows of a few pieces)
        return _rows_placed(pieces, placement, shape, dtype, fill)
    out = np.full(shape, fill, dtype=dtype)
    middle = [np.arange(n) for n in shape[1:-1]]
    for piece, rows, columns, source in zip(
        pieces, placement.rows, placement.columns, placement.sources, strict=True
    ):
        if source is not None:
            piece = piece[source]
        if not isinstance(rows, np.ndarray):
            rows = slice(rows, rows + piece.shape[0])
        if not isinstance(columns, np.ndarray):
            columns = slice(columns, columns + piece.shape[-1])
        if isinstance(rows, np.ndarray) and isinstance(columns, np.ndarray):
            out[np.ix_(rows, *middle, columns)] = piece
        else:
            out[rows, ..., columns] = piece
    return out


def _rows_placed(
    pieces: list[np.ndarray], placement: Placement, shape: tuple[int, ...], dtype: Any, fill: float
) -> np.ndarray:
    """The pieces (their ``placement.sources`` rows) in their rows of a new array,
    ``fill`` in the rows none of them covers.

    Pieces are concatenated and scattered by batches of about :data:`BATCH_BYTES`, in
    order: one scatter per piece, whose rows may be spread over the whole output, was
    measured several times slower on outputs of tens of megabytes, and one
    concatenation of all pieces is a temporary the size of the output, which beyond
    the allocator's threshold (32 MiB) is fresh memory from the system each time,
    paid in page faults; batches reuse the same memory. The rows the pieces cover of
    an output larger than a batch get no first pass of ``fill`` (a smaller one is
    filled first, which costs less than finding the rows none covers).
    """
    large = math.prod(shape) * np.dtype(dtype).itemsize > BATCH_BYTES
    out = np.empty(shape, dtype=dtype) if large else np.full(shape, fill, dtype=dtype)
    covered = np.zeros(shape[0], dtype=bool) if large else None
    batch: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    size = 0
    for piece, target, source in zip(pieces, placement.rows, placement.sources, strict=True):
        if source is not None:
            piece = piece[source]
        if not isinstance(target, np.ndarray):
            target = np.arange(target, target + piece.shape[0])
        batch.append(piece)
        targets.append(target)
        size += piece.nbytes
        if size >= BATCH_BYTES:
            _scatter(out, covered, batch, targets)
            batch, targets, size = [], [], 0
    if batch:
        _scatter(out, covered, batch, targets)
    if covered is not None and not covered.all():
        out[~covered] = fill
    return out


def _scatter(
    out: np.ndarray,
    covered: np.ndarray | None,
    pieces: list[np.ndarray],
    targets: list[np.ndarray],
) -> None:
    """``pieces`` written into the rows ``targets`` of ``out``, marked in ``covered``
    (if given)."""
    rows = np.concatenate(targets) if len(targets) > 1 else targets[0]
    out[rows] = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
    if covered is not None:
        covered[rows] = True


def _stacked_rows(pieces: list[np.ndarray], placement: Placement, shape: tuple[int, ...]) -> bool:
    """Whether each piece fills whole rows of the output (every column)."""
    if not pieces:
        return False
    return all(
        not isinstance(columns, np.ndarray) and columns == 0 and piece.shape[-1] == shape[-1]
        for piece, columns in zip(pieces, placement.columns, strict=True)
    )


def take_rows_now(array: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``array[index]`` (numpy, for one task)."""
    return array[index]


def take_columns_now(array: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``array[..., index]`` (numpy, for one task)."""
    return array[..., index]


def row_limit(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Rows per output chunk: the configured chunk size, at least one row."""
    row_bytes = dtype.itemsize
    for n in shape[1:]:
        row_bytes *= n
    return max(1, config.chunk_size() // max(1, row_bytes))


def taken(groups: TinyGroups, prefix: str, array: Any, index: np.ndarray, axis: str) -> Any:
    """``array[index]`` along ``axis`` (``"rows"`` or ``"columns"``), recorded in
    ``groups`` for a tiny single-chunk ``array`` (see
    :func:`~metatensor_dask.operations._grouping.tiny_groups`)."""
    shape = list(single_chunk_shape(array))
    shape[0 if axis == "rows" else -1] = len(index)
    func = take_rows_now if axis == "rows" else take_columns_now
    return groups.record(prefix, func, [array], (index,), tuple(shape), array.dtype)


def assembled(
    prefix: str,
    pieces: Sequence[Any],
    placement: Placement,
    shape: tuple[int, ...],
    dtype: Any,
    fill: float,
    nbytes: int | None = None,
) -> Any:
    """The array of ``shape`` holding ``pieces`` where ``placement`` says and ``fill``
    elsewhere, as a grouped call or a dask array of row chunks (see the module's
    documentation); None unless every piece is a tiny single-chunk dask array.
    ``nbytes``, when given, are those of the pieces, already checked to be tiny
    single chunks.
    """
    dtype = np.dtype(dtype)
    if nbytes is None:
        nbytes = single_chunk_bytes(pieces) if pieces else None
    if nbytes is None or not pieces:
        return None
    # the dtype by its string: its repr, hashed into the task name, costs more
    extra = (placement, tuple(shape), dtype.str, fill)
    limit = row_limit(shape, dtype)
    groups = active_groups()
    if groups is not None and shape[0] <= limit:
        return groups.record(prefix, place, list(pieces), extra, tuple(shape), dtype, nbytes)
    return _row_chunks(prefix, list(pieces), placement, tuple(shape), dtype, fill, limit)


def _row_chunks(
    prefix: str,
    pieces: list[Any],
    placement: Placement,
    shape: tuple[int, ...],
    dtype: np.dtype,
    fill: float,
    limit: int,
) -> Any:
    """The assembled array in chunks of at most ``limit`` rows, one task each."""
    piece_rows = [int(piece.chunks[0][0]) for piece in pieces]
    # inputs held as data are given to the tasks directly, items of groups read from
    # their groups' results (as in grouped tasks)
    arguments, picks = picked_arguments(pieces)

    def tasks(chunks: list[tuple[Any, int, int]]) -> dict[Any, Any]:
        layer = {}
        for key, start, size in chunks:
            kept, local = placement.rows_within(piece_rows, start, start + size)
            refs = [arguments[i] for i in kept]
            kept_picks = tuple(picks[i] for i in kept)
            chunk_shape = (size, *shape[1:])
            arguments_of_chunk = (*refs, local, chunk_shape, dtype, fill)
            layer[key] = _graph.task(key, picked_call, place, kept_picks, *arguments_of_chunk)
        return layer

    names = "\0".join(piece.name for piece in pieces)
    hashed = [names, placement, shape, dtype, fill]
    return row_chunked(prefix, hashed, shape, dtype, limit, pieces, tasks)


def row_chunked(
    prefix: str,
    hashed: Sequence[Any],
    shape: tuple[int, ...],
    dtype: np.dtype,
    limit: int,
    inputs: Sequence[Any],
    tasks: Callable[[list[tuple[Any, int, int]]], dict[Any, Any]],
) -> Any:
    """A dask array of ``shape`` in chunks of at most ``limit`` rows.

    Its name is ``prefix`` and a hash of ``hashed`` (see
    :func:`~._grouping.hash_arguments`); ``tasks(chunks)`` gives the tasks that make
    the row chunks, given for each its key, first row and rows, and any task they
    need; the graph is those tasks and the tasks of ``inputs``, flat (thousands of
    pieces as dependencies made thousands of graph layers to merge).
    """
    hasher = hashlib.blake2b(digest_size=12)
    hasher.update(prefix.encode())
    hash_arguments(hasher, hashed)
    name = f"{prefix}-{hasher.hexdigest()}"
    starts = list(range(0, shape[0], limit)) or [0]
    sizes = tuple(min(limit, shape[0] - start) for start in starts)
    zeros = (0,) * (len(shape) - 1)
    chunks = [
        ((name, j, *zeros), start, size)
        for j, (start, size) in enumerate(zip(starts, sizes, strict=True))
    ]
    graph = _graph.flat_tasks(inputs)
    graph.update(tasks(chunks))
    return _graph.array_from_tasks(name, graph, [], (sizes, *((n,) for n in shape[1:])), dtype)
