"""Chunk-local segment sums with a tree combine: the engine of reductions over samples.

A segment sum adds the rows of one or several co-partitioned arrays into output rows
given by a ``target`` index computed eagerly from Labels. For every pair (input chunk
*i*, output chunk *j*) that shares rows, one task computes the partial sums of the rows
of chunk *i* falling in chunk *j*, with local indices; the partials of each output
chunk are then summed pairwise in a tree (fan-in :data:`FAN_IN`). When the targets
follow the input order (grouped samples, as featomic writes them), each output chunk
depends on one or two input chunks, and the graph has a few tasks per chunk.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize

from .. import _graph

__all__ = [
    "WIDE_ROW",
    "add_rows_in_order",
    "crossed",
    "output_chunks",
    "rowwise",
    "segment_sum",
    "segment_sum_now",
]

FAN_IN = 8


def output_chunks(target: np.ndarray, input_chunks: tuple[int, ...], n_out: int) -> tuple[int, ...]:
    """Row chunks for an output of ``n_out`` rows receiving input row ``r`` in ``target[r]``.

    When the output rows appear in order in the input (each output row first seen in
    the same or a later chunk than the previous one), output chunk *i* holds the rows
    first seen in input chunk *i*: no output chunk has more rows than its input chunk,
    and each depends on few input chunks. Otherwise the output is cut regularly at the
    largest input chunk size.
    """
    if n_out == 0:
        return (0,)
    bounds = np.concatenate([[0], np.cumsum(input_chunks)]).astype(np.int64)
    owner = np.searchsorted(bounds, np.arange(len(target)), side="right") - 1
    first = np.full(n_out, len(input_chunks), np.int64)
    np.minimum.at(first, target, owner)
    if np.all(first[1:] >= first[:-1]):
        counts = np.bincount(first, minlength=len(input_chunks))
        return tuple(int(c) for c in counts if c > 0)
    size = max(1, *input_chunks)
    return tuple(min(size, n_out - start) for start in range(0, n_out, size))


def crossed(target: np.ndarray, input_chunks: tuple[int, ...], out_chunks: tuple[int, ...]) -> bool:
    """Whether the rows of the input chunks go to output chunks all over (more pairs of
    an input and an output chunk sharing rows than twice the chunks), so that
    :func:`segment_sum` would make a task per pair: rows in any order (an unsorted
    block in many chunks), not grouped as the input goes."""
    in_bounds = np.concatenate([[0], np.cumsum(input_chunks)]).astype(np.int64)
    out_bounds = np.concatenate([[0], np.cumsum(out_chunks)]).astype(np.int64)
    owner_in = np.searchsorted(in_bounds, np.arange(len(target)), side="right") - 1
    owner_out = np.searchsorted(out_bounds, target, side="right") - 1
    pairs = np.unique(owner_in * len(out_chunks) + owner_out)
    return len(pairs) > 2 * (len(input_chunks) + len(out_chunks))


def _block_key(array: da.Array, i: int) -> tuple:
    return (array.name, i, *([0] * (array.ndim - 1)))


def _partial(
    function: Callable[..., np.ndarray],
    row_blocks: list[np.ndarray],
    out_blocks: list[np.ndarray],
    rows: slice | np.ndarray,
    plan: tuple[Any, ...],
    extras: list[np.ndarray],
    shape: tuple[int, ...],
    dtype: Any,
    touched: np.ndarray | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The sums of the ``rows`` of one input chunk into one output chunk, as ``plan``
    (from :func:`_plan`) says: the whole output chunk, or, given the output rows
    ``touched`` (``plan`` then adds into their positions), ``(touched, their sums)``."""
    if touched is None:
        return _added_into(
            np.zeros(shape, dtype), function, row_blocks, out_blocks, rows, plan, extras
        )
    sums = np.zeros((len(touched), *shape[1:]), dtype)
    return touched, _added_into(sums, function, row_blocks, out_blocks, rows, plan, extras)


def _added_into(
    result: np.ndarray,
    function: Callable[..., np.ndarray],
    row_blocks: list[np.ndarray],
    out_blocks: list[np.ndarray],
    rows: slice | np.ndarray,
    plan: tuple[Any, ...],
    extras: list[np.ndarray],
) -> np.ndarray:
    """``result`` with the sums of the ``rows`` of one input chunk added in place, as
    ``plan`` (from :func:`_plan`) says."""
    contributions = function(*[b[rows] for b in row_blocks], *out_blocks, *extras)
    if plan[0] == "runs":
        _, bounds, targets = plan
        for start, stop in pairwise(bounds.tolist()):
            # distinct targets within a run: a fancy-indexed += adds each row once
            result[targets[start:stop]] += contributions[start:stop]
        return result
    # row after row, as metatensor does: the sums are bit for bit metatensor's (a
    # segment sum such as ``np.add.reduceat`` adds in another order)
    add_rows_in_order(result, plan[1], contributions)
    return result


#: Elements per row from which rows may be added in passes (below, ``np.add.at`` is
#: faster), and elements added per pass, on average, that make a pass worth its Python.
WIDE_ROW = 64
PASS_ELEMENTS = 4096


def _passes(targets: np.ndarray) -> list[np.ndarray]:
    """The rows of ``targets`` by pass: pass ``k`` holds the ``k``-th row of every
    target that has one, so that no target appears twice in a pass."""
    order = np.argsort(targets, kind="stable")
    ordered = targets[order]
    starts = np.flatnonzero(np.diff(ordered, prepend=ordered[:1] - 1))
    lengths = np.diff(np.append(starts, len(targets)))
    rank = np.arange(len(targets)) - np.repeat(starts, lengths)
    by_rank = order[np.argsort(rank, kind="stable")]
    bounds = np.concatenate([[0], np.cumsum(np.bincount(rank))])
    return [by_rank[a:b] for a, b in pairwise(bounds.tolist())]


def add_rows_in_order(result: np.ndarray, targets: np.ndarray, rows: np.ndarray) -> None:
    """Add each of ``rows`` into ``result[targets[i]]`` in place, each target receiving
    its rows one after the other, in their order: ``np.add.at(result, targets, rows)``,
    bit for bit.

    ``np.add.at`` adds element by element; for wide floating-point rows and targets of
    several rows each, the rows are added in passes instead (pass ``k`` adds the
    ``k``-th row of every target with one fancy-indexed ``+=``), which keeps the order
    of the additions and is several times faster."""
    width = math.prod(rows.shape[1:])
    if (
        len(targets) == 0
        or width < WIDE_ROW
        or rows.dtype != result.dtype
        or result.dtype.kind not in "fc"
    ):
        np.add.at(result, targets, rows)
        return
    targets = np.asarray(targets)
    # as many passes as the most rows of one target: counted before sorting for them
    if int(np.bincount(targets).max()) * PASS_ELEMENTS > len(targets) * width:
        np.add.at(result, targets, rows)
        return
    for rows_of_pass in _passes(targets):
        result[targets[rows_of_pass]] += rows[rows_of_pass]


#: Rows per run, on average, from which unsorted targets are added run by run.
RUN_LENGTH = 8


def _plan(targets: np.ndarray) -> tuple[Any, ...]:
    """How a task adds its contributions into the output rows ``targets``.

    * ``("at", targets)``: the rows added one by one into ``targets``
      (:func:`add_rows_in_order`);
    * ``("runs", bounds, targets)``: targets made of long increasing runs (gradient rows
      grouped by sample, each run the neighbours of one sample): each run is added with
      one ``+=``.

    Either way, each target receives its rows one by one, in their order, as
    ``np.add.at`` adds them. Computed when building the graph, with chunk-local
    indices as int32 (a 4 GiB store's graph was 16 MB).
    """
    if np.any(targets[1:] < targets[:-1]):
        breaks = np.flatnonzero(targets[1:] <= targets[:-1]) + 1
        if (len(breaks) + 1) * RUN_LENGTH <= len(targets):
            bounds = np.concatenate([[0], breaks, [len(targets)]])
            return "runs", _small(bounds), _small(targets)
    return "at", _small(targets)


def _small(indices: np.ndarray) -> np.ndarray:
    """Chunk-local ``indices`` as int32 when they fit: half the bytes in the graph."""
    if len(indices) == 0 or indices.max() >= 2**31:
        return indices
    return indices.astype(np.int32)


def _as_slice(rows: np.ndarray) -> slice | np.ndarray:
    """Increasing ``rows`` as a slice when they are contiguous: a task then takes a view
    of its input chunk instead of copying the rows (usual for grouped samples)."""
    if rows[-1] - rows[0] + 1 == len(rows):
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return _small(rows)


def segment_sum_now(
    function: Callable[..., np.ndarray],
    row_operands: Sequence[np.ndarray],
    target: np.ndarray,
    out_shape: tuple[int, ...],
    dtype: Any,
    out_operands: Sequence[np.ndarray] = (),
    extras: Sequence[np.ndarray] = (),
) -> np.ndarray:
    """:func:`segment_sum` on numpy arrays, at once (the arithmetic of one chunk)."""
    if len(target) == 0:
        return np.zeros(out_shape, dtype)
    return _added_into(
        np.zeros(out_shape, dtype),
        function,
        list(row_operands),
        list(out_operands),
        slice(0, len(target)),
        _plan(np.asarray(target)),
        list(extras),
    )


Partial = np.ndarray | tuple[np.ndarray, np.ndarray]


def _sum(parts: list[Partial], shape: tuple[int, ...], dtype: Any, whole: bool) -> Partial:
    """The sum of partial sums (whole output chunks, or ``(rows, sums)`` of some of its
    rows), each row's in the order of ``parts``: a whole output chunk when ``whole`` or
    when a part is one, else ``(rows, sums)`` of the rows they touch."""
    if whole or any(isinstance(part, np.ndarray) for part in parts):
        first = parts[0]
        total = first.copy() if isinstance(first, np.ndarray) else np.zeros(shape, dtype)
        for part in parts if not isinstance(first, np.ndarray) else parts[1:]:
            if isinstance(part, np.ndarray):
                total += part
            else:
                # distinct rows within a part: a fancy-indexed += adds each once
                total[part[0]] += part[1]
        return total
    rows = np.concatenate([part[0] for part in parts])
    sums = np.concatenate([part[1] for part in parts])
    order = np.argsort(rows, kind="stable")
    rows = rows[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(rows)) + 1])
    # in the dtype of the sums: numpy adds bools (and small integers) in int64, whose
    # sums could not be added back into the output chunk
    return rows[starts], np.add.reduceat(sums[order], starts, axis=0, dtype=sums.dtype)


#: An output chunk of more than this many times the rows of the largest input chunk is
#: accumulated along a chain rather than summed in a tree (see :func:`_chained`).
CHAIN_RATIO = 2

#: An output chunk fed by at most this many input chunks is accumulated along a chain
#: too: groups in the order of the rows (featomic's samples), one of them split by a
#: chunk boundary. Its rows then add their input rows one by one, in their order, as
#: metatensor does (the same bits), and the two input chunks are added one after the
#: other, while the other output chunks proceed.
CHAINED_PARTS = 2


def _tree(
    name: str,
    j: int,
    out_key: tuple,
    parts: list[tuple[Any, ...]],
    shape: tuple[int, ...],
    dtype: Any,
) -> dict[Any, Any]:
    """Tasks of output chunk ``j``: one partial sum per contributing input chunk, in
    parallel, then summed :data:`FAN_IN` at a time. A partial that adds into less than
    half of the output chunk's rows holds these rows only (reducing over a dimension
    every input chunk shares, each input chunk adds into a few rows of each output
    chunk: partials as large as the output chunk held it many times over)."""
    dsk: dict[Any, Any] = {}
    if not parts:
        dsk[out_key] = (np.zeros, shape, dtype)
        return dsk
    keys = []
    for k, (*arguments, local, extras) in enumerate(parts):
        key = ("partial-" + name, j, k)
        touched = np.unique(local) if len(parts) > 1 else None
        if touched is not None and 2 * len(touched) < shape[0]:
            plan = _plan(np.searchsorted(touched, local))
            dsk[key] = (_partial, *arguments, plan, extras, shape, dtype, _small(touched))
        else:
            dsk[key] = (_partial, *arguments, _plan(local), extras, shape, dtype)
        keys.append(key)
    level = 0
    while len(keys) > FAN_IN:
        grouped = []
        for g in range(0, len(keys), FAN_IN):
            key = (f"combine-{level}-" + name, j, g)
            dsk[key] = (_sum, keys[g : g + FAN_IN], shape, dtype, False)
            grouped.append(key)
        keys, level = grouped, level + 1
    dsk[out_key] = (_sum, keys, shape, dtype, True)
    return dsk


def _chained(
    name: str,
    j: int,
    out_key: tuple,
    parts: list[tuple[Any, ...]],
    shape: tuple[int, ...],
    dtype: Any,
) -> dict[Any, Any]:
    """Tasks of output chunk ``j`` much larger than the input chunks (few groups, such
    as a reduction over every sample, whose merged gradient holds nearly every input
    row): the contributions of input chunk after input chunk are added into one array,
    each task taking the array of the previous one. Partial sums as large as the output
    chunk, summed in a tree, would hold several such arrays at once.

    Each intermediate array has the next task as its only dependent (its key is not
    returned), so adding in place never changes a value another task reads; and each
    task adds into it once (see :class:`_Accumulator`), also when it runs again.
    """
    dsk: dict[Any, Any] = {}
    previous: tuple = ("accumulate-" + name, j, 0)
    dsk[previous] = (_Accumulator.zeros, shape, dtype)
    for k, (*arguments, local, extras) in enumerate(parts, start=1):
        last = k == len(parts)
        key = out_key if last else ("accumulate-" + name, j, k)
        dsk[key] = (_accumulated, previous, k, last, *arguments, _plan(local), extras)
        previous = key
    return dsk


class _Accumulator:
    """The array that the tasks of a chain (see :func:`_chained`) add into, and how many
    of them have added into it.

    distributed runs a task again when it has lost track of it (a worker lost, a batch
    job cancelled), on a worker that may still hold its input: the array the first
    run added into. Added into again, its sums counted that input chunk twice (a wrong
    number, without an error). A task adds only into an array that has the sums of
    the tasks before it and not its own.
    """

    __slots__ = ("added", "array")

    def __init__(self, array: np.ndarray):
        self.array = array
        self.added = 0

    @classmethod
    def zeros(cls, shape: tuple[int, ...], dtype: Any) -> _Accumulator:
        return cls(np.zeros(shape, dtype))

    def __sizeof__(self) -> int:
        # what dask and distributed count for it: its array
        return object.__sizeof__(self) + int(self.array.nbytes)


def _accumulated(
    previous: _Accumulator, step: int, last: bool, *arguments: Any
) -> _Accumulator | np.ndarray:
    """``previous`` with the sums of task ``step`` of its chain added (the arguments of
    :func:`_added_into` after ``result``), unless they are in already (this task ran
    before on this very array, or a later one did); its array for the ``last`` task."""
    if previous.added == step - 1:
        _added_into(previous.array, *arguments)
        previous.added = step
    elif previous.added < step - 1:
        raise RuntimeError(
            f"task {step} of a chain of sums got an array with the sums of only "
            f"{previous.added} tasks: a bug of metatensor-dask, please report it"
        )
    return previous.array if last else previous


def segment_sum(
    function: Callable[..., np.ndarray],
    row_operands: Sequence[da.Array],
    target: np.ndarray,
    out_chunks: tuple[int, ...],
    out_shape: tuple[int, ...],
    dtype: Any,
    out_operands: Sequence[da.Array] = (),
    extras: Sequence[np.ndarray] = (),
) -> da.Array:
    """``out[target[r]] += function(*rows_r, *out_blocks, *extras_r)`` as a dask array.

    Parameters
    ----------
    function
        Receives the selected rows of each row operand, the blocks of each output
        operand (chunked like the output), and the selected entries of each extra
        array; returns the rows to add (one per selected row).
    row_operands
        Arrays with identical row chunks and one chunk along other axes.
    target
        Output row of every input row.
    out_chunks, out_shape, dtype
        The output's row chunks, full shape and dtype.
    out_operands
        Arrays chunked like the output along rows (one chunk along other axes).
    extras
        numpy arrays with one entry per input row (for example local indices).
    """
    first = row_operands[0]
    in_bounds = np.concatenate([[0], np.cumsum(first.chunks[0])]).astype(np.int64)
    out_bounds = np.concatenate([[0], np.cumsum(out_chunks)]).astype(np.int64)
    rest = tuple(out_shape[1:])
    name = "segment-sum-" + tokenize(
        function,
        [a.name for a in row_operands],
        [a.name for a in out_operands],
        target,
        out_chunks,
        out_shape,
        dtype,
        extras,
    )
    dsk: dict[Any, Any] = {}
    contributions: list[list[tuple[Any, ...]]] = [[] for _ in out_chunks]
    owner_out = np.searchsorted(out_bounds, target, side="right") - 1
    for i in range(len(first.chunks[0])):
        start, stop = in_bounds[i], in_bounds[i + 1]
        owners = owner_out[start:stop]
        order = np.argsort(owners, kind="stable")
        split = np.flatnonzero(np.diff(owners[order])) + 1
        for rows in np.split(order, split) if len(order) else []:
            j = int(owners[rows[0]])
            arguments = (
                function,
                [_block_key(a, i) for a in row_operands],
                [_block_key(a, j) for a in out_operands],
                _as_slice(rows),
                target[start:stop][rows] - out_bounds[j],
                [np.asarray(e)[start:stop][rows] for e in extras],
            )
            contributions[j].append(arguments)
    largest_input = max(first.chunks[0])
    for j, parts in enumerate(contributions):
        out_key = (name, j, *([0] * len(rest)))
        shape = (out_chunks[j], *rest)
        chain = len(parts) <= CHAINED_PARTS or out_chunks[j] > CHAIN_RATIO * largest_input
        if len(parts) > 1 and chain:
            dsk.update(_chained(name, j, out_key, parts, shape, dtype))
        else:
            dsk.update(_tree(name, j, out_key, parts, shape, dtype))
    chunks = (tuple(out_chunks), *((n,) for n in rest))
    return _graph.array_from_tasks(name, dsk, [*row_operands, *out_operands], chunks, dtype)


def rowwise(
    function: Callable[..., np.ndarray],
    row_chunks: tuple[int, ...],
    trailing: tuple[int, ...],
    *arrays: Any,
    dtype: Any,
) -> da.Array:
    """``function(*blocks)`` for each row chunk of co-partitioned arrays (same number
    of row chunks, one chunk along other axes); the result has rows chunked as
    ``row_chunks`` and the other axes of size ``trailing`` in one chunk."""
    out_index = tuple(range(len(trailing) + 1))
    args: list[Any] = []
    for k, array in enumerate(arrays):
        args.extend([array, (0, *range(1000 * (k + 1), 1000 * (k + 1) + array.ndim - 1))])
    return da.blockwise(
        function,
        out_index,
        *args,
        adjust_chunks={0: tuple(row_chunks)},
        new_axes={axis: trailing[axis - 1] for axis in out_index[1:]},
        align_arrays=False,
        concatenate=True,
        dtype=dtype,
        meta=np.empty((0,) * len(out_index), dtype),
    )
