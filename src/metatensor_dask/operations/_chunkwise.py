"""Chunk-by-chunk dask graphs for operations on blocks, built by hand.

Every function here returns a dask array whose graph has one task per output chunk
(one layer per output array), or, when all its inputs are numpy arrays (a computed
block), applies the kernel at once and returns a numpy array.

Graphs are written as plain task dictionaries instead of through ``dask.array``
functions because operations on maps of many small blocks are dominated by per-array
bookkeeping: building one array this way costs tens of microseconds, a chain of
``dask.array`` calls a few hundred. :mod:`metatensor_dask._graph` turns the task
dictionaries into dask arrays.

The central piece is :func:`gradient_rows`, which combines value rows with the
gradient rows that refer to them (``A[s] * ∇B`` and the like):

* when the gradient rows are grouped by their ``"sample"`` (the usual case), the
  gradient is co-partitioned with the values (gradient chunk *i* holds the rows of
  values chunk *i*, see :mod:`metatensor_dask._partition`) and each task indexes its
  values chunk with local indices derived from the CSR row pointer: no sample labels
  are read, nothing is gathered. When the gradient samples are still in a store, each
  task takes these indices from the stored ``"sample"`` column of its own rows, checked
  against the pointer (see :func:`~metatensor_dask._partition.stored_local_index`), so
  that a damaged pointer raises instead of pairing the wrong rows;
* otherwise (rows in any order, allowed by metatensor), the ``"sample"`` column is read
  and each gradient chunk's task receives the values chunks its rows refer to. This is
  slower (more inputs per task, an index array in the graph) but exact.

On maps of many tiny blocks, one task per block and array costs far more than the
arithmetic: inside :func:`~metatensor_dask.operations._grouping.grouped_tiny_blocks`,
:func:`elementwise` and :func:`gradient_rows` record calls whose inputs are all single
small chunks, to be run together by one task per group of blocks.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import dask.array as da
import numpy as np

from .. import _graph
from .._graph import chunk_ref, task
from .._partition import (
    block_row_pointer,
    gradient_row_chunks,
    stored_local_index,
    stored_sample_column,
)
from ._grouping import hash_arguments, run_together, single_chunk_shape, tiny_groups
from ._manipulation_utils import as_dask

__all__ = [
    "combine_rows",
    "elementwise",
    "gradient_rows",
    "is_lazy",
    "per_row_chunk",
    "row_chunked",
]


def is_lazy(array: Any) -> bool:
    """Whether ``array`` is a dask array (as opposed to a computed numpy array)."""
    return isinstance(array, da.Array)


def row_chunked(array: da.Array, row_chunks: tuple[int, ...]) -> da.Array:
    """``array`` chunked as ``row_chunks`` along the first axis, whole along the others."""
    target = (tuple(row_chunks), *((int(n),) for n in array.shape[1:]))
    return _graph.rechunked(array, target)


def _new_array(
    prefix: str,
    token: str,
    layer: dict,
    dependencies: Sequence[da.Array],
    chunks: tuple[tuple[int, ...], ...],
    dtype: np.dtype,
) -> da.Array:
    return _graph.array_from_tasks(f"{prefix}-{token}", layer, dependencies, chunks, dtype)


def _token(func: Callable, names: Sequence[str], *extra: Any) -> str:
    """A deterministic name suffix from the kernel, the input array names (dask names
    identify their content) and extra arguments (constants, index arrays)."""
    hasher = hashlib.blake2b(digest_size=12)
    hasher.update(f"{func.__module__}.{func.__qualname__}|{'|'.join(names)}".encode())
    hash_arguments(hasher, extra)
    return hasher.hexdigest()


@functools.lru_cache(maxsize=512)
def _task_name(func: Callable) -> str:
    return getattr(func, "__name__", "op").strip("_").replace("_", "-")


@functools.lru_cache(maxsize=512)
def _cached_dtype(func: Callable, specs: tuple, constants: tuple) -> np.dtype:
    # a trailing axis is a size, or the chunks of a dask array along it
    arrays = [
        np.zeros((0, *(n if isinstance(n, int) else sum(n) for n in tail)), dtype)
        for dtype, tail in specs
    ]
    return np.asarray(func(*arrays, *constants)).dtype


def result_dtype(func: Callable, arrays: Sequence[Any], constants: tuple = ()) -> np.dtype:
    """The dtype of ``func(*arrays, *constants)``, found on empty arrays (cached)."""
    # a dask array's trailing shape as its chunks: adding them up costs more than the
    # rest on maps of many tiny blocks
    specs = tuple(
        (a.dtype, a.chunks[1:] if isinstance(a, da.Array) else a.shape[1:]) for a in arrays
    )
    return _cached_dtype(func, specs, constants)


def elementwise(func: Callable, arrays: Sequence[Any], constants: tuple = ()) -> Any:
    """``func(*arrays, *constants)`` chunk by chunk, for arrays of identical shapes.

    The arrays are aligned on the chunks of the first one; any chunking works.
    """
    if not any(is_lazy(a) for a in arrays):
        return func(*arrays, *constants)
    # computed operands next to lazy ones: single-chunk arrays holding them, which
    # grouped tasks read directly
    arrays = [as_dask(a) for a in arrays]
    groups = tiny_groups(arrays)
    if groups is not None:
        dtype = result_dtype(func, arrays, constants)
        shape = single_chunk_shape(arrays[0])
        return groups.record(_task_name(func), func, arrays, constants, shape, dtype)
    first = arrays[0]
    aligned = [first] + [_graph.rechunked(a, first.chunks) for a in arrays[1:]]
    dtype = result_dtype(func, aligned, constants)
    token = _token(func, [a.name for a in aligned], constants)
    name = f"{_task_name(func)}-{token}"
    layer = {}
    for index in np.ndindex(*first.numblocks):
        key = (name, *index)
        layer[key] = task(key, func, *(chunk_ref(a, *index) for a in aligned), *constants)
    return _new_array(_task_name(func), token, layer, aligned, first.chunks, dtype)


def per_row_chunk(
    func: Callable, array: Any, whole: Sequence[Any], tail: tuple[int, ...], dtype: Any
) -> Any:
    """``func(chunk, *whole)`` for each row chunk of ``array``; ``whole`` arrays are
    given entirely to every task. The result has ``array``'s row chunks and trailing
    shape ``tail``."""
    if not is_lazy(array) and not any(is_lazy(w) for w in whole):
        return func(array, *whole)
    array = as_dask(array)
    array = row_chunked(array, array.chunks[0])
    whole = [as_dask(w) for w in whole]
    whole = [w if w.npartitions == 1 else w.rechunk(w.shape) for w in whole]
    token = _token(func, [array.name, *(w.name for w in whole)])
    name = f"{_task_name(func)}-{token}"
    zeros = (0,) * (array.ndim - 1)
    refs = [chunk_ref(w, *((0,) * w.ndim)) for w in whole]
    layer = {}
    for i in range(array.numblocks[0]):
        key = (name, i, *((0,) * len(tail)))
        layer[key] = task(key, func, chunk_ref(array, i, *zeros), *refs)
    chunks = (array.chunks[0], *((int(n),) for n in tail))
    return _new_array(_task_name(func), token, layer, [array, *whole], chunks, np.dtype(dtype))


def _concatenated_call(func: Callable, counts: tuple[int, ...], kwargs: dict, *chunks: Any) -> Any:
    arrays, start = [], 0
    for count in counts:
        pieces = chunks[start : start + count]
        arrays.append(np.concatenate(pieces, axis=0) if count > 1 else pieces[0])
        start += count
    return func(*arrays, **kwargs)


def _keywords_call(*arguments: Any) -> Any:
    """``func(*arrays, **kwargs)`` for the arguments ``(*arrays, func, kwargs)``."""
    *arrays, func, kwargs = arguments
    return func(*arrays, **kwargs)


def combine_rows(
    func: Callable,
    arrays: Sequence[Any],
    shape: tuple[int, ...],
    dtype: Any,
    kwargs: dict[str, Any] | None = None,
) -> Any:
    """``func(*arrays, **kwargs)`` as a single task whose inputs are the whole arrays
    (their row chunks concatenated inside the task); the result is one chunk of
    ``shape``. For operations that need every row at once (``lstsq``, ``solve``).
    Tiny single-chunk arrays give a grouped call (see :func:`tiny_groups`)."""
    kwargs = dict(kwargs or {})
    if not any(is_lazy(a) for a in arrays):
        return func(*arrays, **kwargs)
    arrays = [as_dask(a) for a in arrays]
    groups = tiny_groups(arrays)
    if groups is not None:
        extra = (func, kwargs)
        return groups.record(_task_name(func), _keywords_call, arrays, extra, shape, dtype)
    arrays = [row_chunked(a, a.chunks[0]) for a in arrays]
    token = _token(func, [a.name for a in arrays], sorted(kwargs.items()))
    prefix = _task_name(func)
    name = f"{prefix}-{token}"
    refs = [chunk_ref(a, i, *((0,) * (a.ndim - 1))) for a in arrays for i in range(a.numblocks[0])]
    counts = tuple(a.numblocks[0] for a in arrays)
    key = (name, *((0,) * len(shape)))
    layer = {key: task(key, _concatenated_call, func, counts, kwargs, *refs)}
    chunks = tuple((int(n),) for n in shape)
    return _new_array(prefix, token, layer, arrays, chunks, np.dtype(dtype))


def _grouped_call(kernel: Callable, counts: np.ndarray, constants: tuple, *chunks: Any) -> Any:
    index = np.repeat(np.arange(len(counts)), counts)
    return kernel(*chunks, index, *constants)


def _gathered_call(
    kernel: Callable,
    n_values: int,
    n_pieces: int,
    index: np.ndarray,
    constants: tuple,
    *chunks: Any,
) -> Any:
    values = [
        np.concatenate(chunks[k * n_pieces : (k + 1) * n_pieces], axis=0)
        if n_pieces > 1
        else chunks[k * n_pieces]
        for k in range(n_values)
    ]
    return kernel(*values, *chunks[n_values * n_pieces :], index, *constants)


def _with_stored_index(*arguments: Any) -> Any:
    """``kernel(*chunks, index, *constants)`` for the arguments ``(*chunks, kernel,
    source, counts, constants)`` of one single-chunk block, its ``index`` read from the
    stored ``"sample"`` column and checked (see
    :meth:`~metatensor_dask.io.zarr_columns.StoredSampleColumn.checked_index`)."""
    *chunks, kernel, source, counts, constants = arguments
    index = source.checked_index(0, (0, int(counts.sum())), 0, counts)
    return kernel(*chunks, index, *constants)


def _with_stored_indices(calls: list[list[Any]]) -> list[Any]:
    """:func:`_with_stored_index` of the arguments of each call (of a group's task),
    the stored columns of all read and checked together (see
    :meth:`~metatensor_dask.io.zarr_columns.StoredSampleColumn.checked_together`)."""
    sources = [(arguments[-3], arguments[-2]) for arguments in calls]
    indices = sources[0][0].checked_together(sources)
    return [
        arguments[-4](*arguments[:-4], index, *arguments[-1])
        for arguments, index in zip(calls, indices, strict=True)
    ]


run_together(_with_stored_index, _with_stored_indices)


@functools.lru_cache(maxsize=256)
def _rows_of_pointer(pointer: bytes) -> np.ndarray:
    """The value row of each gradient row, from the bytes of an int64 row pointer
    (read-only; blocks with the same pointer share it: maps of many tiny blocks often
    have the same gradient structure in every block)."""
    starts = np.asarray(np.frombuffer(pointer, np.int64), dtype=np.int64)
    counts = starts[1:] - starts[:-1]
    index = np.repeat(np.arange(len(counts)), counts)
    index.flags.writeable = False
    return index


def gradient_rows(
    kernel: Callable,
    values: Sequence[Any],
    gradients: Sequence[Any],
    block: Any,
    parameter: str,
    constants: tuple = (),
) -> Any:
    """``kernel(*values, *gradients, index, *constants)`` chunk by chunk, where ``index``
    gives, for each gradient row of the chunk, its value row within the values handed
    to the kernel. The result is shaped and chunked like the gradient rows.

    Parameters
    ----------
    kernel
        Combines values rows (indexed by ``index``) with gradient rows.
    values
        Value arrays with the samples of ``block`` (e.g. the values of A and of B).
    gradients
        Gradient arrays with the samples of ``block.gradient(parameter)``.
    block, parameter
        Where the gradient's ``"sample"`` column (or its row pointer) comes from.
    constants
        Extra arguments of ``kernel``.
    """
    if not any(is_lazy(a) for a in [*values, *gradients]):
        index = block.gradient(parameter).samples.column("sample")
        return kernel(*values, *gradients, index, *constants)
    # computed operands next to lazy ones: single-chunk arrays holding them (see
    # `elementwise`)
    values = [as_dask(v) for v in values]
    gradients = [as_dask(g) for g in gradients]
    groups = tiny_groups([*values, *gradients])
    if groups is not None:
        pointer = block_row_pointer(block, parameter)
        inputs = [*values, *gradients]
        dtype = result_dtype(kernel, [*inputs, np.zeros(0, np.int64)], constants)
        shape = single_chunk_shape(gradients[0])
        source = stored_sample_column(block, parameter, pointer)
        if source is not None and pointer is not None:
            # the group's task reads and checks the index itself: no task of its own
            extra = (kernel, source, np.diff(pointer), constants)
            name = _task_name(kernel)
            return groups.record(name, _with_stored_index, inputs, extra, shape, dtype)
        if pointer is None:
            index = block.gradient(parameter).samples.column("sample").astype(np.int64)
        else:
            index = _rows_of_pointer(np.ascontiguousarray(pointer, np.int64).tobytes())
        return groups.record(_task_name(kernel), kernel, inputs, (index, *constants), shape, dtype)

    values = [row_chunked(values[0], values[0].chunks[0])] + [
        row_chunked(v, values[0].chunks[0]) for v in values[1:]
    ]
    dtype = result_dtype(kernel, [*values, *gradients, np.zeros(0, np.int64)], constants)
    value_chunks = values[0].chunks[0]
    pointer = block_row_pointer(block, parameter)
    zeros_v = (0,) * (values[0].ndim - 1)
    zeros_g = (0,) * (gradients[0].ndim - 1)
    if pointer is not None:
        row_chunks = gradient_row_chunks(pointer, value_chunks)
    else:
        row_chunks = gradients[0].chunks[0]
    gradients = [row_chunked(g, row_chunks) for g in gradients]
    checked = stored_local_index(block, parameter, pointer, value_chunks)
    inputs = [*values, *gradients] if checked is None else [*values, *gradients, checked]
    token = _token(
        kernel,
        [a.name for a in inputs],
        constants,
        pointer if pointer is not None else block.gradient(parameter).samples.column("sample"),
    )
    prefix = _task_name(kernel)
    name = f"{prefix}-{token}"
    layer = {}
    if checked is not None:
        for i in range(len(value_chunks)):
            key = (name, i, *zeros_g)
            refs = [chunk_ref(v, i, *zeros_v) for v in values]
            refs += [chunk_ref(g, i, *zeros_g) for g in gradients]
            layer[key] = task(key, kernel, *refs, chunk_ref(checked, i), *constants)
    elif pointer is not None:
        counts = np.diff(pointer)
        bounds = np.concatenate([[0], np.cumsum(value_chunks)]).astype(np.int64)
        for i in range(len(value_chunks)):
            key = (name, i, *zeros_g)
            refs = [chunk_ref(v, i, *zeros_v) for v in values]
            refs += [chunk_ref(g, i, *zeros_g) for g in gradients]
            local_counts = counts[bounds[i] : bounds[i + 1]]
            layer[key] = task(key, _grouped_call, kernel, local_counts, constants, *refs)
    else:
        samples = np.asarray(block.gradient(parameter).samples.column("sample"), dtype=np.int64)
        value_bounds = np.concatenate([[0], np.cumsum(value_chunks)]).astype(np.int64)
        row_bounds = np.concatenate([[0], np.cumsum(row_chunks)]).astype(np.int64)
        chunk_of = np.searchsorted(value_bounds, samples, side="right") - 1
        for j in range(len(row_chunks)):
            rows = slice(row_bounds[j], row_bounds[j + 1])
            touched = np.unique(chunk_of[rows])
            if len(touched) == 0:
                touched = np.array([0])
            sizes = np.array([value_chunks[t] for t in touched], dtype=np.int64)
            offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            position = np.searchsorted(touched, chunk_of[rows])
            index = samples[rows] - value_bounds[chunk_of[rows]] + offsets[position]
            key = (name, j, *zeros_g)
            refs = [chunk_ref(v, int(t), *zeros_v) for v in values for t in touched]
            refs += [chunk_ref(g, j, *zeros_g) for g in gradients]
            layer[key] = task(
                key, _gathered_call, kernel, len(values), len(touched), index, constants, *refs
            )
    chunks = (tuple(row_chunks), *((int(n),) for n in gradients[0].shape[1:]))
    return _new_array(prefix, token, layer, inputs, chunks, dtype)
