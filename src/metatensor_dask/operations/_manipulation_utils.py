"""Helpers shared by the manipulation, selection, reduction and key-moving operations.

Everything here works on the *rows* of dask arrays (the samples axis, or the rows of a
gradient) chunk by chunk, with indices computed eagerly from Labels in numpy:

* :func:`select_rows` keeps some rows, in order, one task per input chunk, so that a
  selection never gathers a whole block;
* :func:`take_rows` gathers rows in any order (dask's fancy indexing), optionally
  filling missing rows (index ``-1``) with a constant;
* :func:`coalesce` merges neighbouring chunks of arrays that are co-partitioned (values
  and their gradients) without letting any of them grow past its input chunk size;
* :func:`values_at_gradient_rows` gives, for every gradient row, the row of values it
  belongs to, chunked like the gradient (no gather when rows are grouped by sample).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import dask.array as da
import numpy as np

from .. import config
from .._graph import MAX_GATHER_SOURCES, BlockValues, gathered_rows, rechunked
from .._partition import (
    block_row_pointer,
    co_partitioned,
    gradient_row_chunks,
    local_sample_index,
    stored_local_index,
)
from ..block import TensorBlock, as_block_array
from ..labels import Labels, packed_row_keys
from ..tensor import TensorMap

__all__ = [
    "as_dask",
    "block_arrays",
    "broadcast_rows",
    "check_no_gradients_of_gradients",
    "checked_names",
    "coalesce",
    "concatenate_rows",
    "documented_reduction",
    "in_reduction_dtype",
    "inverse_permutation",
    "largest_chunk_bytes",
    "lazy_arrays",
    "lexsort_rows",
    "max_rows",
    "merged_row_chunks",
    "output_chunk_bytes",
    "reduction_groups",
    "row_bytes",
    "rows_only",
    "same_labels",
    "select_rows",
    "take_rows",
    "unique_rows",
    "values_at_gradient_rows",
]


def check_no_gradients_of_gradients(block: TensorBlock, not_yet: bool = False) -> None:
    """metatensor-operations refuse gradients of gradients (same message: "not yet
    supported" where ``not_yet``, as its ``join`` words it)."""
    for _, gradient in block.gradients():
        if gradient.gradients_list():
            support = "not yet supported" if not_yet else "not supported"
            raise NotImplementedError(f"gradients of gradients are {support}")


def as_dask(array: Any) -> da.Array:
    """A dask array (numpy arrays of computed blocks become one chunk)."""
    return array if isinstance(array, da.Array) else as_block_array(np.asarray(array))


Container = TypeVar("Container", TensorMap, TensorBlock)


def lazy_arrays(container: Container) -> Container:
    """``container`` (a map or a block) with its computed (numpy) arrays as single-chunk
    dask arrays holding them, as :func:`~metatensor_dask.from_metatensor` makes them:
    the tiny blocks of a computed map are then grouped as those of a map built in
    memory (the grouped tasks take the arrays as data), where each array of each block
    became a dask array, and tasks, of its own."""
    arrays = container._raw_arrays()
    if not any(isinstance(array, np.ndarray) for array in arrays):
        return container
    return container._with_arrays(
        [as_block_array(a) if isinstance(a, np.ndarray) else a for a in arrays]
    )


def rows_only(array: da.Array) -> da.Array:
    """The array with a single chunk along every axis but the first."""
    return rechunked(array, (array.chunks[0], *((n,) for n in array.shape[1:])))


# -- label arithmetic (numpy) --------------------------------------------------------


def lexsort_rows(values: np.ndarray, descending: bool = False) -> np.ndarray:
    """Indices sorting the rows of a 2-D int array lexicographically (first column first)."""
    values = np.asarray(values)
    if values.shape[1] == 0 or len(values) == 0:
        return np.arange(len(values), dtype=np.int64)
    keys = packed_row_keys(values) if values.dtype == np.int32 else None
    if keys is None:
        order = np.lexsort(values.T[::-1])
    elif bool((keys[1:] >= keys[:-1]).all()):
        order = np.arange(len(keys), dtype=np.int64)
    else:
        order = np.argsort(keys, kind="stable")
    return order[::-1].copy() if descending else order


def inverse_permutation(order: np.ndarray) -> np.ndarray:
    """``rank`` such that ``rank[order[i]] == i``."""
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    return rank


def unique_rows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique rows and, for each input row, the index of its unique row."""
    values = np.asarray(values, dtype=np.int32)
    if values.shape[1] == 0:
        n = len(values)
        return np.zeros((min(n, 1), 0), np.int32), np.zeros(n, np.int64)
    # ``np.unique(axis=0)`` costs several times more than this: the rows are packed
    # (order-preserving) into one int64 key when their ranges allow, else lexsorted
    keys = packed_row_keys(values)
    if keys is None and values.shape[1] <= 2:
        # few rows (or ranges too wide) of one or two columns: their int32 values,
        # shifted to be non-negative, side by side in one uint64 key
        shifted = (values.astype(np.int64) + 2**31).astype(np.uint64)
        keys = shifted[:, 0]
        if values.shape[1] == 2:
            keys = (keys << np.uint64(32)) | shifted[:, 1]
    if keys is None:
        order = lexsort_rows(values)
        ordered = values[order]
        starts = np.ones(len(values), bool)
        starts[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
        inverse = np.empty(len(values), np.int64)
        inverse[order] = np.cumsum(starts) - 1
        return ordered[starts], inverse
    return _unique_keys(values, keys)


def _unique_keys(values: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`unique_rows` of ``values`` from their packed, order-preserving ``keys``;
    rows already in order (the samples of most blocks) are not sorted."""
    ordered: np.ndarray | None = None
    if len(keys) > 1 and not bool((keys[1:] >= keys[:-1]).all()):
        ordered = np.argsort(keys, kind="stable")
        keys = keys[ordered]
    starts = np.ones(len(keys), bool)
    np.not_equal(keys[1:], keys[:-1], out=starts[1:])
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    if ordered is None:
        return values[first], group
    inverse = np.empty(len(keys), np.int64)
    inverse[ordered] = group
    return values[ordered[first]], inverse


def same_labels(labels: Sequence[Labels], reference: Labels) -> bool:
    """Whether all of ``labels`` equal ``reference`` (one numpy comparison for all,
    instead of one per Labels: maps may hold 100,000 blocks)."""
    others = [item for item in labels if item is not reference]
    if not others:
        return True
    names, count = reference.names, len(reference)
    if any(len(item) != count or item.names != names for item in others):
        return False
    stacked = np.stack([item.values for item in others])
    return bool(np.array_equal(stacked, np.broadcast_to(reference.values, stacked.shape)))


class NameOfWrongTypeError(ValueError, TypeError):
    """A dimension name that is not a string, in a list of names: metatensor raises a
    ``ValueError`` (the name is not one of the dimensions); it is also a ``TypeError``,
    as a single name that is not a string is."""


def checked_names(names: str | Sequence[str], present: Sequence[str], what: str) -> list[str]:
    """``names`` as a list, each checked to be one of the ``what`` dimensions ``present``
    (metatensor's message for the reductions)."""
    listed = [names] if isinstance(names, str) else list(names) if _iterable(names) else None
    if listed is None or isinstance(names, Labels):
        raise TypeError(
            f"the {what} names to reduce over must be a string or a list of strings, got "
            f"{names!r} ({type(names).__name__}); e.g. {list(present)[:1]}"
        )
    for name in listed:
        if not isinstance(name, str):
            raise NameOfWrongTypeError(
                f"{_missing(name, what)}: the {what} names to reduce over must be a string "
                f"or a list of strings, got {names!r}; e.g. {list(present)[:1]}"
            )
    for name in listed:
        if name not in present:
            raise ValueError(_missing(name, what))
    return listed


def _missing(name: object, what: str) -> str:
    return f"one of the requested {what} name ({name}) is not part of this TensorMap"


def _iterable(value: Any) -> bool:
    try:
        iter(value)
    except TypeError:
        return False
    return True


def reduction_dtype(dtype: np.dtype, reduction: str) -> np.dtype:
    """The dtype of a ``"sum"``, ``"mean"``, ``"var"`` or ``"std"`` of ``dtype`` values."""
    if reduction == "sum":
        return np.dtype(dtype)
    return np.true_divide(np.ones(1, dtype), np.ones(1, dtype)).dtype


def in_reduction_dtype(block: TensorBlock, reduction: str) -> TensorBlock:
    """``block`` (with its gradients) in the dtype of its ``reduction``, for a block (or
    gradient) with nothing to reduce, left as it is otherwise: its arrays take the dtype
    of the reduced ones (integers give float64 means), as one map or block has one
    dtype."""
    gradients = {p: in_reduction_dtype(g, reduction) for p, g in block.gradients()}
    # as held: an item of a group of tiny blocks stays one (no array per block)
    values = block._held_values()
    dtype = reduction_dtype(values.dtype, reduction)
    if values.dtype != dtype:
        values = block.values.astype(dtype)
    return TensorBlock._trusted(
        values,
        block.samples,
        block.components,
        block.properties,
        gradients,
        row_pointer=block.row_pointer,
    )


def reduction_groups(labels: Labels, reduced: Sequence[str]) -> tuple[Labels, np.ndarray]:
    """The entries left when the ``reduced`` dimensions of ``labels`` are summed over, and
    the group (left entry) of each entry of ``labels``.

    Left entries are the sorted unique values of the remaining dimensions, ``_=0`` when
    none remains. Empty ``labels`` give no entry, with the remaining names, or ``_`` when
    none remains: the name that non-empty blocks get from their entries. (metatensor
    gives no name there: a map of such and other blocks fails, and a map of such blocks
    only is saved to a file that metatensor cannot load.)
    """
    remaining = [n for n in labels.names if n not in reduced]
    if len(labels) == 0:
        return Labels.empty(remaining or ["_"]), np.zeros(0, np.int64)
    if not remaining:
        return Labels.single(), np.zeros(len(labels), np.int64)
    columns = [labels.names.index(n) for n in remaining]
    unique, group = unique_rows(labels.values[:, columns])
    return Labels._trusted(remaining, unique), group


Function = TypeVar("Function", bound=Callable[..., Any])


def documented_reduction(
    kind: str, axis: str, returns: str, rule: str
) -> Callable[[Function], Function]:
    """Append the numpydoc sections shared by the reductions over ``axis`` (``"samples"``
    or ``"properties"``) of a ``kind`` (``"TensorBlock"`` or ``"TensorMap"``) to the
    decorated function's docstring, with its ``returns`` text and gradient ``rule``."""
    what = "block" if kind == "TensorBlock" else "tensor"
    entry = "sample" if axis == "samples" else "property"

    def decorate(function: Function) -> Function:
        if function.__doc__ is None:  # python -OO strips docstrings
            return function
        function.__doc__ += f"""

    Parameters
    ----------
    {what}
        The input; it is not modified.
    {entry}_names
        The {entry} dimension(s) to reduce over (they disappear). The remaining
        dimensions define the groups; reducing over all of them gives the single
        {entry} ``_=0``.

    Returns
    -------
    {kind}
        {returns}

    Notes
    -----
    Gradient rule: {rule}
    """
        return function

    return decorate


def broadcast_rows(rows: np.ndarray, ndim: int) -> np.ndarray:
    """Value rows reshaped to broadcast against gradient rows with ``ndim`` axes (the
    gradient's own components come right after the row axis)."""
    extra = ndim - rows.ndim
    return rows.reshape(rows.shape[:1] + (1,) * extra + rows.shape[1:])


# -- row selection ------------------------------------------------------------------


def _take_local(block: np.ndarray, index: np.ndarray) -> np.ndarray:
    """The rows ``index`` (local to the chunk) of one chunk."""
    return block[index]


def select_rows(array: Any, rows: np.ndarray) -> da.Array:
    """Rows ``rows`` (sorted, increasing) of ``array``, selected chunk by chunk.

    Output chunk *i* holds the selected rows of input chunk *i* (possibly none), so the
    selection of co-partitioned arrays stays co-partitioned. One task per chunk.
    """
    array = as_dask(array)
    rows = np.asarray(rows, dtype=np.int64)
    bounds = np.concatenate([[0], np.cumsum(array.chunks[0])]).astype(np.int64)
    owner = np.searchsorted(bounds, rows, side="right") - 1
    counts = tuple(int(c) for c in np.bincount(owner, minlength=len(array.chunks[0])))
    local = rows - bounds[owner]
    index = da.from_array(local, chunks=(counts,))
    axes = tuple(range(array.ndim))
    return da.blockwise(
        _take_local,
        axes,
        array,
        axes,
        index,
        (0,),
        adjust_chunks={0: counts},
        align_arrays=False,
        dtype=array.dtype,
        meta=np.empty((0,) * array.ndim, array.dtype),
    )


def take_rows(
    array: Any,
    index: np.ndarray,
    fill: Any = None,
    rows_per_chunk: int = 1,
    merge_small_chunks: bool = False,
) -> da.Array:
    """``array[index]`` along rows, in any order; ``-1`` entries give rows of ``fill``.

    Sorted increasing indices without fill go through :func:`select_rows`; others are
    gathered with one task per output chunk (output chunks no larger than the input's,
    or than ``rows_per_chunk`` rows when that is more, unless a task would then read too
    many input chunks), or, when even a task of the input's chunk size would read too
    many input chunks, with dask's fancy indexing.

    With ``merge_small_chunks``, when a task would read too many input chunks, the
    input's neighbouring small chunks are first merged up to a
    :data:`~metatensor_dask._graph.MAX_GATHER_SOURCES`-th of the configured chunk size
    (a task then reads at most about that size of input), and the output is gathered
    from them in chunks of ``rows_per_chunk`` rows: a tiny block of a store grown by
    appends (a chunk per append) spread over the rows of a large block otherwise made a
    task per output row. Only for callers that cut the output's rows themselves
    afterwards: the row chunks of a gathered array decide those of the gradients that
    follow it (``sort``, ``keys_to_samples``, ``slice``), which hold many rows per row.
    """
    array = as_dask(array)
    index = np.asarray(index, dtype=np.int64)
    if len(index) == array.shape[0] and np.array_equal(index, np.arange(len(index))):
        return array
    missing = index < 0
    if len(index) and (missing.any() or np.any(index[1:] < index[:-1])):
        gathered = gathered_rows(array, index, fill, rows_per_chunk)
        if gathered is None and merge_small_chunks:
            gathered = _gathered_from_merged_chunks(array, index, fill, rows_per_chunk)
        if gathered is None and rows_per_chunk > 1:
            # chunks of the input's size read fewer input chunks each
            gathered = gathered_rows(array, index, fill)
        if gathered is not None:
            return gathered
    if missing.any():
        filler = da.full((1, *array.shape[1:]), fill, dtype=array.dtype)
        array = da.concatenate([array, filler], axis=0)
        index = np.where(missing, array.shape[0] - 1, index)
    if len(index) == 0:
        return array[:0]
    if np.all(index[1:] >= index[:-1]):
        return select_rows(array, index)
    if 0 in array.chunks[0]:
        # dask 2026.8's fancy indexing divides by the mean chunk length, which is 0
        # when there are more (empty) chunks than rows: drop the empty chunks first
        array = array.rechunk({0: tuple(n for n in array.chunks[0] if n)})
    return array[index]


def _merged_rows_limit(array: da.Array, parts: int = 1) -> int:
    """Rows of a chunk of ``array`` at a ``parts``-th of the configured chunk size, and
    at least as many as its largest chunk (merging never cuts a chunk)."""
    one_row = array.dtype.itemsize * int(np.prod(array.shape[1:], dtype=np.int64))
    return max(1, config.chunk_size() // parts // max(1, one_row), max_rows(array))


def _gathered_from_merged_chunks(
    array: da.Array, index: np.ndarray, fill: Any, rows_per_chunk: int
) -> BlockValues | None:
    """``array[index]`` as :func:`gathered_rows` gives it in chunks of ``rows_per_chunk``
    rows, from ``array`` with its neighbouring row chunks merged up to a
    :data:`~metatensor_dask._graph.MAX_GATHER_SOURCES`-th of the configured chunk size;
    ``None`` when no chunks merge, or when an output chunk would still read too many."""
    limit = _merged_rows_limit(array, MAX_GATHER_SOURCES)
    (merged,) = coalesce([array], [limit])
    if merged is array:
        return None
    return gathered_rows(merged, index, fill, rows_per_chunk)


def merged_row_chunks(block: TensorBlock) -> TensorBlock:
    """``block`` with neighbouring row chunks merged up to the configured chunk size:
    its values with the gradients grouped by sample (they stay co-partitioned), each
    other gradient on its own. A block of gradients of gradients is returned as it is.

    For operations that pair every input chunk with every output chunk (rows reduced
    into groups that every chunk feeds): a block grown by appends keeps a chunk per
    append, and such an operation then makes a task per pair of chunks.
    """
    if any(gradient._gradients for _, gradient in block.gradients()):
        return block
    values = as_dask(block.values)
    arrays, together = [values], []
    for parameter, _ in block.gradients():
        pair = co_partitioned(block, parameter)
        if pair is not None:
            together.append(parameter)
            arrays.append(pair[1])
    merged = coalesce(arrays, [_merged_rows_limit(array) for array in arrays])
    by_parameter = dict(zip(together, merged[1:], strict=True))
    gradients = []
    for parameter, gradient in block.gradients():
        array = by_parameter.get(parameter)
        if array is None:
            gradient_values = as_dask(gradient.values)
            (array,) = coalesce([gradient_values], [_merged_rows_limit(gradient_values)])
        gradients.append(array)
    return block._with_arrays([merged[0], *gradients])


def concatenate_rows(arrays: Sequence[da.Array]) -> da.Array:
    """``da.concatenate`` along rows keeping every input chunk, even empty ones (dask
    drops empty inputs), so that concatenations of co-partitioned arrays stay so.

    Arrays of no entries are first made one chunk along every axis but the first: dask
    can not bring an array empty along every axis into the chunks of the others (see
    :func:`~metatensor_dask._graph.rechunked`), and its concatenation of one in other
    chunks than the rest fails when computed.
    """
    arrays = [rows_only(array) if array.size == 0 else array for array in arrays]
    joined = da.concatenate(arrays, axis=0)
    expected = tuple(n for array in arrays for n in array.chunks[0])
    return rechunked(joined, (expected, *joined.chunks[1:]))


def coalesce(arrays: Sequence[da.Array], limits: Sequence[int]) -> list[da.Array]:
    """Merge neighbouring row chunks of co-partitioned arrays.

    ``arrays`` have the same number of row chunks; chunk *i* of each belongs together.
    Consecutive chunks are merged as long as every array stays within its ``limits``
    (rows per chunk), and empty chunks disappear, so a selection keeping few rows per
    chunk does not leave thousands of tiny chunks. The arrays stay co-partitioned.
    """
    sizes = [np.asarray(a.chunks[0], dtype=np.int64) for a in arrays]
    n_chunks = len(sizes[0])
    groups: list[list[int]] = []
    current = np.zeros(len(arrays), np.int64)
    for i in range(n_chunks):
        here = np.array([s[i] for s in sizes])
        if groups and np.all(current + here <= np.asarray(limits)):
            groups[-1].append(i)
            current += here
        else:
            groups.append([i])
            current = here.copy()
    if len(groups) == n_chunks:
        return list(arrays)
    result = []
    for array, size in zip(arrays, sizes, strict=False):
        chunks = tuple(int(size[g].sum()) for g in groups)
        result.append(rechunked(array, (chunks, *array.chunks[1:])))
    return result


def block_arrays(blocks: Sequence[TensorBlock]) -> list[Any]:
    """The values and every gradient's values of ``blocks``."""
    return [block.values for block in blocks] + [
        gradient.values for block in blocks for _, gradient in block.gradients()
    ]


def largest_chunk_bytes(arrays: list[Any]) -> int:
    """Bytes of the largest chunk of ``arrays`` (a whole numpy array is one chunk)."""
    largest = 0
    for array in arrays:
        array = as_dask(array)
        rows = max([0, *array.chunks[0]])
        largest = max(largest, rows * row_bytes(array, array.shape[-1]))
    return largest


def output_chunk_bytes(arrays: list[Any]) -> int:
    """The most bytes of a row chunk of an output made of ``arrays`` side by side: the
    configured chunk size, or their largest chunk when larger.

    Bounded by the largest input chunk alone, the blocks of a store grown by appends
    (a chunk per append, of a few rows) made outputs of as many chunks, or more: a task
    per few rows for every block placed beside them.
    """
    return max(largest_chunk_bytes(arrays), config.chunk_size())


def row_bytes(array: Any, width: int) -> int:
    """Bytes of a row of ``array`` with its last axis ``width`` long."""
    return int(np.prod(array.shape[1:-1], dtype=np.int64)) * width * array.dtype.itemsize


def max_rows(array: da.Array) -> int:
    """The largest row chunk of ``array`` (at least 1)."""
    return max([1, *array.chunks[0]])


# -- values next to gradient rows -----------------------------------------------------


def values_at_gradient_rows(block: TensorBlock, parameter: str) -> tuple[da.Array, da.Array]:
    """The ``parameter`` gradient values and, chunked like them, the value row of each
    gradient row (``values[gradient.samples.column("sample")]``).

    When the gradient rows are grouped by sample, chunk *i* of both comes from values
    chunk *i* with local indices (no gather); otherwise dask gathers the value rows.
    """
    gradient = block.gradient(parameter)
    pairs = co_partitioned(block, parameter) if len(gradient.samples) else None
    if pairs is not None:
        values, gradient_values = (rows_only(a) for a in pairs)
        pointer = block_row_pointer(block, parameter)
        assert pointer is not None, "co-partitioned gradients have a row pointer"
        local = stored_local_index(block, parameter, pointer, values.chunks[0])
        if local is None:
            local = local_sample_index(pointer, values.chunks[0])
        axes = tuple(range(values.ndim))
        expanded = da.blockwise(
            _take_local,
            axes,
            values,
            axes,
            local,
            (0,),
            adjust_chunks={0: gradient_values.chunks[0]},
            align_arrays=False,
            dtype=values.dtype,
            meta=np.empty((0,) * values.ndim, values.dtype),
        )
        return gradient_values, expanded
    values = rows_only(as_dask(block.values))
    gradient_values = rows_only(as_dask(gradient.values))
    column = np.asarray(gradient.samples.column("sample"), dtype=np.int64)
    expanded = take_rows(values, column)
    if len(column):
        expanded = expanded.rechunk({0: gradient_values.chunks[0]})
    else:
        expanded = da.zeros((0, *values.shape[1:]), dtype=values.dtype)
        gradient_values = rechunked(gradient_values, ((0,), *gradient_values.chunks[1:]))
    return gradient_values, expanded


def gradient_chunks_for(samples: Labels, value_chunks: tuple[int, ...]) -> tuple[int, ...] | None:
    """Row chunks co-partitioning a gradient with samples ``samples`` with values chunked
    as ``value_chunks``, or ``None`` when its rows are not grouped by ``"sample"``."""
    from .._partition import row_pointer

    pointer = row_pointer(samples.column("sample"), int(sum(value_chunks)))
    if pointer is None:
        return None
    return gradient_row_chunks(pointer, value_chunks)
