"""``slice`` and ``slice_block``: keep some samples or properties of every block.

The sliced metadata is found once for each distinct Labels of a map. Blocks whose
arrays are all tiny single chunks are sliced by one numpy call per array, run by a few
grouped tasks for the whole map (see :mod:`._placement`); others chunk by chunk.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize

from .. import _graph
from .._gc import without_collector
from .._partition import co_partitioned, gradient_row_chunks, row_pointer
from ..block import TensorBlock
from ..errors import wrong_type
from ..labels import Labels
from ..tensor import TensorMap
from ._grouping import TinyGroups, tiny_groups
from ._manipulation_utils import (
    as_dask,
    check_no_gradients_of_gradients,
    coalesce,
    lazy_arrays,
    max_rows,
    take_rows,
)
from ._placement import taken
from ._utils import check_block, check_tensor, map_blocks

__all__ = ["slice", "slice_block"]

Selection = Labels | list | np.ndarray


def check_axis(axis: str) -> None:
    """metatensor's check of a slicing axis (same message)."""
    if axis not in ("samples", "properties"):
        raise ValueError(
            f"``axis``: {axis} is not known as a slicing axis. Please use'samples' or 'properties'"
        )


def _is_sequence(entry: Any) -> bool:
    """Whether a list entry is itself a sequence (not a position)."""
    return isinstance(entry, list | tuple) or (isinstance(entry, np.ndarray) and entry.ndim > 0)


def check_selection(block: TensorBlock, axis: str, selection: Any) -> None:
    """metatensor's checks of a slicing axis and selection (same messages), and of
    the shape of positions (where metatensor fails with numpy's or Labels' errors)."""
    check_axis(axis)
    if isinstance(selection, np.ndarray):
        if selection.ndim > 1:
            raise ValueError("`selection` must be a 1-D array of integers")
        if selection.ndim == 0:
            raise ValueError(
                "`selection` must be a 1-D array of integers, got a 0-D array: give a "
                "single position in a list, as [position]"
            )
        return
    if isinstance(selection, list):
        if any(_is_sequence(entry) for entry in selection):
            raise ValueError(
                "`selection` must be a list of integers, got a list holding sequences: "
                "flatten it, or select samples or properties by their values with Labels"
            )
        return
    if not isinstance(selection, Labels):
        raise wrong_type(
            f"`selection` must be metatensor Labels, an array or List[int], not {type(selection)}",
            selection,
        )
    labels = block.samples if axis == "samples" else block.properties
    what = "sample" if axis == "samples" else "property"
    for name in selection.names:
        if name not in labels.names:
            raise ValueError(f"invalid {what} name '{name}' which is not part of the input")


def selected_indices(labels: Labels, selection: Selection, what: str) -> np.ndarray:
    """Positions selected in ``labels``: Labels match as ``Labels.select`` orders them; a list
    or array gives positions (negative ones count from the end) in its own order, each
    once (repeated sample positions raise, repeated property positions are kept)."""
    if isinstance(selection, Labels):
        return labels.select(selection).astype(np.int64)
    array = np.asarray(selection)
    if array.dtype == bool:
        if len(array) != len(labels):
            raise ValueError(
                f"a boolean `selection` must have one entry per {what} ({len(labels)}), "
                f"got {len(array)}"
            )
        return np.nonzero(array)[0].astype(np.int64)
    if array.size == 0:
        return np.zeros(0, np.int64)
    if array.dtype.kind not in "iu":
        raise TypeError(f"`selection` must contain integers, got {array.dtype}")
    indices = array.astype(np.int64)
    if indices.max() >= len(labels) or indices.min() < -len(labels):
        bad = indices[(indices >= len(labels)) | (indices < -len(labels))][0]
        raise IndexError(
            f"index {bad} is out of bounds for the {len(labels)} {what} entries of this block"
        )
    indices = np.where(indices < 0, indices + len(labels), indices)
    # along properties metatensor applies a mask, so a repeated position is kept once;
    # along samples it would duplicate the sample
    if what == "sample" and len(np.unique(indices)) != len(indices):
        raise ValueError(
            f"`selection` contains the same {what} more than once; metatensor would create "
            f"duplicated {what} entries, remove the repeated indices"
        )
    return indices


def occupied_chunks(chunks: tuple[int, ...], rows: np.ndarray) -> np.ndarray:
    """The row chunks, of sizes ``chunks``, that hold some of the increasing ``rows``."""
    bounds = np.cumsum(chunks, dtype=np.int64)
    return np.unique(np.searchsorted(bounds, rows, side="right"))


def rows_of_chunks(
    array: Any, rows: np.ndarray, chunk_ids: np.ndarray, source: Any = None
) -> da.Array:
    """The increasing ``rows`` of ``array``, which all lie in its row chunks
    ``chunk_ids`` (increasing): output chunk *j* holds those of input chunk
    ``chunk_ids[j]`` (possibly none), so that arrays co-partitioned with each other
    stay so when given the same ``chunk_ids``; without ``chunk_ids``, one empty chunk.
    The rows are read from ``source`` (the same rows chunked otherwise, of which
    ``array`` is a rechunking) when given, see :func:`gathered_chunks`."""
    array = as_dask(array)
    bounds = np.concatenate([[0], np.cumsum(array.chunks[0])]).astype(np.int64)
    ids = np.asarray(chunk_ids, dtype=np.int64)
    counts = np.diff(np.searchsorted(rows, bounds))[ids]
    assert int(counts.sum()) == len(rows), "every row is in one of the chunks"
    rows = np.asarray(rows, dtype=np.int64)
    return gathered_chunks(array if source is None else source, rows, counts)


def _source(array: da.Array) -> da.Array:
    """The array of which ``array`` is a rechunking along rows, when it was opened
    so (a stored gradient cut along the chunks of its values: ``rechunked_from``,
    see :func:`~metatensor_dask.io.zarr_read.read_array`), else ``array``."""
    source = getattr(array, "rechunked_from", None)
    if source is None or source.shape != array.shape or source.chunks[1:] != array.chunks[1:]:
        return array
    return source


def gathered_chunks(array: Any, rows: np.ndarray, counts: np.ndarray) -> da.Array:
    """The increasing ``rows`` of ``array``, output chunk *j* holding the next
    ``counts[j]`` of them (without ``counts``, one empty chunk); empty chunks are
    made from nothing.

    Each output chunk is one task reading the chunks that hold its rows (of the
    stored array, when ``array`` cuts stored chunks anew, see :func:`_source`), and
    the other chunks get no task: the graph and the reads of a few rows of a large
    stored array grow with the chunks they are in, not with the array's chunks.
    """
    source = _source(as_dask(array))
    counts = counts if len(counts) else np.zeros(1, np.int64)
    bounds = np.concatenate([[0], np.cumsum(source.chunks[0])]).astype(np.int64)
    owner = np.searchsorted(bounds, rows, side="right") - 1
    name = f"slice-rows-{tokenize(source.name, rows, counts)}"
    tails = list(itertools.product(*(range(len(c)) for c in source.chunks[1:])))
    ends = np.cumsum(counts, dtype=np.int64)
    tasks = {}
    for j, (start, end) in enumerate(zip((ends - counts).tolist(), ends.tolist(), strict=True)):
        chunks, local = _pieces(owner[start:end], rows[start:end], bounds)
        for tail in tails:
            key = (name, j, *tail)
            refs = [_graph.chunk_ref(source, chunk, *tail) for chunk in chunks]
            if not refs:
                shape = (0, *(source.chunks[1 + k][i] for k, i in enumerate(tail)))
                tasks[key] = _graph.task(key, np.empty, shape, source.dtype)
            elif len(refs) == 1:
                tasks[key] = _graph.task(key, operator.getitem, refs[0], local[0])
            else:
                tasks[key] = _graph.task(key, _joined_rows, local, *refs)
    grid = (tuple(int(n) for n in counts), *source.chunks[1:])
    return _graph.array_from_tasks(name, tasks, [source], grid, source.dtype)


def _pieces(
    owner: np.ndarray, rows: np.ndarray, bounds: np.ndarray
) -> tuple[list[int], list[np.ndarray]]:
    """The chunks holding ``rows`` (increasing, in chunks ``owner``), and the rows in
    each, local to it."""
    if not len(rows):
        return [], []
    chunks, starts = np.unique(owner, return_index=True)
    pieces = np.split(rows, starts[1:])
    local = [piece - bounds[chunk] for chunk, piece in zip(chunks, pieces, strict=True)]
    return chunks.tolist(), local


def _joined_rows(local: list[np.ndarray], *chunks: np.ndarray) -> np.ndarray:
    """The rows ``local[i]`` of ``chunks[i]``, one after the other."""
    return np.concatenate([chunk[rows] for chunk, rows in zip(chunks, local, strict=True)])


def selected_rows(array: Any, rows: np.ndarray) -> da.Array:
    """The increasing ``rows`` of ``array``, by :func:`rows_of_chunks` over the chunks
    holding them."""
    array = as_dask(array)
    return rows_of_chunks(array, rows, occupied_chunks(array.chunks[0], rows))


def reordered_rows(array: Any, indices: np.ndarray) -> da.Array:
    """``array[indices]`` for distinct ``indices`` in any order: the rows are read in
    increasing order from the chunks holding them (as :func:`selected_rows`), then
    put in the order asked for among themselves, so that a few rows in random order
    read a few chunks, not all of them."""
    array = as_dask(array)
    order = np.argsort(indices, kind="stable")
    (increasing,) = coalesce([selected_rows(array, indices[order])], [max_rows(array)])
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return take_rows(increasing, inverse)


def _tiny_groups(block: TensorBlock) -> TinyGroups | None:
    """The active groups when the arrays of ``block`` are tiny single chunks (see
    :func:`~metatensor_dask.operations._grouping.tiny_groups`)."""
    return tiny_groups([block.values, *(g.values for _, g in block.gradients())])


class _Memo:
    """Sliced metadata, found once for each distinct input (keyed by Labels digests):
    the blocks of a map often have the same samples, properties or gradient samples,
    and then share the sliced Labels too."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, ...], Any] = {}

    def get(self, key: tuple[str, ...], compute: Callable[[], Any]) -> Any:
        value = self._entries.get(key)
        if value is None:
            value = self._entries[key] = compute()
        return value


def _sliced_samples(labels: Labels, indices: np.ndarray) -> tuple[bool, np.ndarray, Labels]:
    """Whether ``indices`` increase, the new position of each sample (-1 when it is
    not kept), and the new samples."""
    in_order = bool(np.all(indices[1:] > indices[:-1]))
    sample_map = np.full(len(labels), -1, np.int64)
    sample_map[indices] = np.arange(len(indices))
    return in_order, sample_map, Labels._made_from(labels.names, labels.values[indices], labels)


def _gradient_rows(
    gradient: TensorBlock, sample_map: np.ndarray, n_samples: int
) -> tuple[np.ndarray, Labels, np.ndarray | None]:
    """The gradient rows of the kept samples, their samples with ``"sample"``
    renumbered by ``sample_map`` (-1 for a sample that is not kept), and their row
    pointer over the ``n_samples`` kept samples (None when not grouped by sample)."""
    samples = gradient.samples.values
    new_column = sample_map[samples[:, 0]]
    kept = np.flatnonzero(new_column >= 0)
    new_samples = samples[kept]
    new_samples[:, 0] = new_column[kept]
    pointer = row_pointer(new_samples[:, 0], n_samples)
    sliced = Labels._made_from(gradient.samples.names, new_samples, gradient.samples)
    return kept, sliced, pointer


def _grouped_samples(
    block: TensorBlock,
    indices: np.ndarray,
    samples: Labels,
    gradient_rows: Callable[[str, TensorBlock], tuple[np.ndarray, Labels, np.ndarray | None]],
) -> TensorBlock | None:
    """The sliced block as grouped calls (see :mod:`._placement`), or None when its
    arrays are not all tiny single chunks."""
    groups = _tiny_groups(block)
    if groups is None:
        return None
    values = taken(groups, "slice-samples", block.values, indices, "rows")
    gradients = {}
    for parameter, gradient in block.gradients():
        kept, gradient_samples, pointer = gradient_rows(parameter, gradient)
        array = taken(groups, "slice-samples-gradient", gradient.values, kept, "rows")
        gradients[parameter] = TensorBlock._trusted(
            array, gradient_samples, gradient._components, block.properties, row_pointer=pointer
        )
    return TensorBlock._trusted(values, samples, block._components, block.properties, gradients)


def slice_samples(
    block: TensorBlock, indices: np.ndarray, memo: _Memo | None = None
) -> TensorBlock:
    """The block restricted to the samples at ``indices`` (unique, any order);
    ``memo`` shares metadata between the blocks of a map."""
    check_no_gradients_of_gradients(block)
    memo = memo or _Memo()
    key = block.samples.digest()
    in_order, sample_map, samples = memo.get(
        ("samples", key), lambda: _sliced_samples(block.samples, indices)
    )

    def gradient_rows(
        parameter: str, gradient: TensorBlock
    ) -> tuple[np.ndarray, Labels, np.ndarray | None]:
        rows_key = ("gradient", key, gradient.samples.digest())
        return memo.get(rows_key, lambda: _gradient_rows(gradient, sample_map, len(indices)))

    grouped_block = _grouped_samples(block, indices, samples, gradient_rows)
    if grouped_block is not None:
        return grouped_block

    values = as_dask(block.values)
    occupied = occupied_chunks(values.chunks[0], indices) if in_order else None
    gradient_parts = {}
    for parameter, gradient in block.gradients():
        pairs = co_partitioned(block, parameter) if in_order else None
        gradient_values = pairs[1] if pairs is not None else as_dask(gradient.values)
        kept, gradient_samples, _ = gradient_rows(parameter, gradient)
        gradient_parts[parameter] = (
            selected_rows(gradient_values, kept)
            if occupied is None or pairs is None
            else rows_of_chunks(gradient_values, kept, occupied, gradient.values),
            gradient_samples,
            gradient,
            pairs is not None,
        )

    if occupied is None:
        new_values = reordered_rows(values, indices)
    else:
        new_values = rows_of_chunks(values, indices, occupied)
    aligned = [p for p, part in gradient_parts.items() if part[3]]
    if occupied is not None:
        arrays = [new_values, *(gradient_parts[p][0] for p in aligned)]
        limits = [max_rows(values)] + [max_rows(as_dask(block.gradient(p).values)) for p in aligned]
        merged = coalesce(arrays, limits)
        new_values = merged[0]
        for parameter, array in zip(aligned, merged[1:], strict=False):
            part = gradient_parts[parameter]
            gradient_parts[parameter] = (array, *part[1:])

    gradients = {}
    for parameter, (array, gradient_samples, gradient, is_aligned) in gradient_parts.items():
        pointer = gradient_rows(parameter, gradient)[2]
        if not is_aligned and pointer is not None and len(gradient_samples):
            # rows that were not grouped by sample (or values reordered) may be grouped
            # once sliced: co-partition them with the new values, as a grouped input's
            array = array.rechunk({0: gradient_row_chunks(pointer, new_values.chunks[0])})
        gradients[parameter] = TensorBlock._trusted(
            array, gradient_samples, gradient._components, block.properties, row_pointer=pointer
        )
    return TensorBlock._trusted(new_values, samples, block._components, block.properties, gradients)


def _sliced_properties(labels: Labels, indices: np.ndarray) -> tuple[np.ndarray, Labels]:
    indices = np.asarray(indices)
    increasing = len(indices) < 2 or bool(np.all(indices[1:] > indices[:-1]))
    kept = indices if increasing else np.unique(indices)
    return kept, Labels._made_from(labels.names, labels.values[kept], labels)


def _columns(array: Any, kept: np.ndarray) -> Any:
    """The properties ``kept`` (increasing positions) of ``array``: a slice, which
    dask reads as a view, when they are a range of neighbouring properties."""
    array = as_dask(array)
    if len(kept) and int(kept[-1]) - int(kept[0]) + 1 == len(kept):
        return array[..., int(kept[0]) : int(kept[-1]) + 1]
    return array[..., kept]


def slice_properties(
    block: TensorBlock, indices: np.ndarray, memo: _Memo | None = None
) -> TensorBlock:
    """The block restricted to the properties at ``indices``, kept in their order;
    ``memo`` shares metadata between the blocks of a map."""
    check_no_gradients_of_gradients(block)
    memo = memo or _Memo()
    kept, properties = memo.get(
        ("properties", block.properties.digest()),
        lambda: _sliced_properties(block.properties, indices),
    )
    grouped_block = _grouped_properties(block, kept, properties)
    if grouped_block is not None:
        return grouped_block
    gradients = {
        parameter: TensorBlock._trusted(
            _columns(gradient.values, kept),
            gradient.samples,
            gradient._components,
            properties,
            row_pointer=gradient.row_pointer,
        )
        for parameter, gradient in block.gradients()
    }
    return TensorBlock._trusted(
        _columns(block.values, kept), block.samples, block._components, properties, gradients
    )


def _grouped_properties(
    block: TensorBlock, kept: np.ndarray, properties: Labels
) -> TensorBlock | None:
    """The block restricted to the properties ``kept`` as grouped calls (see
    :mod:`._placement`), or None when its arrays are not all tiny single chunks."""
    groups = _tiny_groups(block)
    if groups is None:
        return None
    values = taken(groups, "slice-properties", block.values, kept, "columns")
    gradients = {}
    for parameter, gradient in block.gradients():
        array = taken(groups, "slice-properties-gradient", gradient.values, kept, "columns")
        gradients[parameter] = TensorBlock._trusted(
            array,
            gradient.samples,
            gradient._components,
            properties,
            row_pointer=gradient.row_pointer,
        )
    return TensorBlock._trusted(values, block.samples, block._components, properties, gradients)


def slice_one(block: TensorBlock, axis: str, selection: Selection) -> TensorBlock:
    """Slice one block whose arguments were checked."""
    if axis == "samples":
        return slice_samples(block, selected_indices(block.samples, selection, "sample"))
    return slice_properties(block, selected_indices(block.properties, selection, "property"))


def slice_block(block: TensorBlock, axis: str, selection: Selection) -> TensorBlock:
    """Keep the samples or properties of ``block`` given by ``selection``.

    Parameters
    ----------
    block
        The block to slice; it is not modified.
    axis
        ``"samples"`` or ``"properties"``.
    selection
        :class:`Labels` (entries matching any of them on their dimensions are kept),
        or a list / 1-D array of positions (negative positions count from the end).
        Along properties the block's order is kept; along samples, positions are kept
        in the given order, and Labels in the order :meth:`Labels.select` gives (the
        selection's order when it has every sample dimension, in the same order).

    Returns
    -------
    TensorBlock
        A lazy block. Along samples, values are selected chunk by chunk: only the
        chunks holding selected rows are read, and each gives the rows it holds (small
        neighbouring ones merged); positions in another order are read so, then
        ordered among themselves. The gradient rows of the kept samples follow with
        their ``"sample"`` renumbered, still co-partitioned with the values.
        Within :func:`slice`, a tiny single-chunk block is sliced by one numpy call
        per array, grouped with other blocks' calls.

    Notes
    -----
    Gradient rule: slicing is linear and local, so the gradient of a kept entry is
    the gradient of that entry. Along samples, gradient rows whose ``"sample"`` is not
    kept are dropped and the others keep their order; along properties the same
    properties are kept in the gradients. Unlike metatensor, repeated sample positions
    raise (metatensor would create duplicated samples with wrong gradients), and a
    position out of range raises an ``IndexError`` naming it.
    """
    check_block(block, "block")
    check_selection(block, axis, selection)
    return slice_one(block, axis, selection)


@without_collector
def slice(tensor: TensorMap, axis: str, selection: Selection) -> TensorMap:
    """Keep the samples or properties given by ``selection`` in every block.

    Parameters
    ----------
    tensor
        The map to slice; it is not modified.
    axis
        ``"samples"`` or ``"properties"``.
    selection
        :class:`Labels`, or a list / 1-D array of positions, as for
        :func:`slice_block`.

    Returns
    -------
    TensorMap
        A map with the same keys, where blocks may become empty.

    Notes
    -----
    Gradient rule: as :func:`slice_block`, the gradients of the kept entries are
    kept. An empty map is returned as is
    (metatensor raises an ``IndexError`` looking for its first block). As in
    metatensor-operations, the result has no ``info``.
    """
    check_tensor(tensor, "tensor")
    if len(tensor) == 0:
        check_axis(axis)
        return tensor
    check_selection(tensor.block(0), axis, selection)
    tensor = lazy_arrays(tensor)
    # blocks often have the same Labels: each distinct one is sliced once
    memo = _Memo()
    what = "sample" if axis == "samples" else "property"

    def one(block: TensorBlock) -> TensorBlock:
        labels = block.samples if axis == "samples" else block.properties
        indices = memo.get(
            ("selection", labels.digest()), lambda: selected_indices(labels, selection, what)
        )
        if axis == "samples":
            return slice_samples(block, indices, memo)
        return slice_properties(block, indices, memo)

    return map_blocks(tensor, one)
