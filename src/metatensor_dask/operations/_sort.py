"""``sort`` and ``sort_block``: order keys, samples, components and properties."""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np

from .._collection import GroupItem, materialized
from ..block import TensorBlock
from ..labels import Labels
from ..tensor import TensorMap
from ._grouping import TinyGroups, single_chunk_shape, tiny_groups
from ._manipulation_utils import (
    as_dask,
    check_no_gradients_of_gradients,
    gradient_chunks_for,
    inverse_permutation,
    lazy_arrays,
    lexsort_rows,
    take_rows,
)
from ._utils import check_block, grouped

__all__ = ["sort", "sort_block"]

_BLOCK_AXES = ("samples", "components", "properties")


def _axes_list(axes: Any) -> list[str]:
    if isinstance(axes, str):
        return list(_BLOCK_AXES) if axes == "all" else [axes]
    if isinstance(axes, list):
        return list(axes)
    raise TypeError(f"'axes' should be a string or list of strings, not {type(axes)}")


def _check_descending(descending: Any) -> None:
    """metatensor hands ``descending`` to ``list.sort(reverse=...)``, which takes integers
    only; any truthy object (``"no"``) would otherwise sort in decreasing order."""
    if not isinstance(descending, (bool, int, np.bool_, np.integer)):
        raise TypeError(f"`descending` must be a boolean, not {type(descending)}")


def _check_block_axes(axes: list[str]) -> None:
    for axis in axes:
        if axis not in _BLOCK_AXES:
            raise ValueError(
                f"`axes` must be one of 'samples', 'components' or 'properties', not '{axis}'"
            )


def _changed(order: np.ndarray) -> np.ndarray | None:
    """``order``, or None when it keeps every entry in place."""
    return None if np.array_equal(order, np.arange(len(order))) else order


def _sorted_labels(labels: Labels, descending: bool) -> tuple[Labels, np.ndarray]:
    order = lexsort_rows(labels.values, descending)
    return Labels._made_from(labels.names, labels.values[order], labels), order


def _sort_trailing(
    components: list[Labels], properties: Labels, axes: list[str], descending: bool
) -> tuple[list[Labels], Labels, list[np.ndarray | None]]:
    """The sorted components (every one of them) and properties of one array, and the
    order of each of its axes after the first (None where nothing moves)."""
    components = list(components)
    orders: list[np.ndarray | None] = [None] * (len(components) + 1)
    if "components" in axes:
        for i, component in enumerate(components):
            components[i], order = _sorted_labels(component, descending)
            orders[i] = _changed(order)
    if "properties" in axes:
        properties, order = _sorted_labels(properties, descending)
        orders[-1] = _changed(order)
    return components, properties, orders


def permuted_now(array: np.ndarray, *orders: np.ndarray | None) -> np.ndarray:
    """``array`` with axis ``i`` in the order ``orders[i]`` (None: unchanged), numpy,
    for one task."""
    for axis, order in enumerate(orders):
        if order is not None:
            array = np.take(array, order, axis=axis)
    return array


def _lazy(held: Any) -> bool:
    """Whether a block's held values are lazy (a dask array or an item of a group)."""
    return isinstance(held, (da.Array, GroupItem))


def _taken_along(array: da.Array, order: np.ndarray, axis: int) -> da.Array:
    """``array`` with axis ``axis`` in ``order``. Chunks of zero entries are dropped
    first: dask's ``take`` fails on an axis in more chunks than entries."""
    sizes = array.chunks[axis]
    if 0 in sizes and len(sizes) > 1:
        array = array.rechunk({axis: tuple(n for n in sizes if n) or (0,)})
    return da.take(array, order, axis=axis)


def _reordered(
    held: Any, orders: list[np.ndarray | None], groups: TinyGroups | None, rows: tuple | None
) -> Any:
    """The array ``held`` (a block's held values) with each axis in its order of
    ``orders`` (None: unchanged): as it is when nothing moves (a lazy array; a
    computed one becomes a dask array, as sorted ones do), one grouped call when
    ``groups`` are given (a tiny single-chunk array), else chunk by chunk, its rows
    then in the chunks ``rows`` (when given: the rows of the sorted values)."""
    if all(order is None for order in orders) and rows is None and _lazy(held):
        return held
    array = as_dask(materialized(held))
    if groups is not None and any(order is not None for order in orders):
        shape = single_chunk_shape(array)
        return groups.record("sort", permuted_now, [array], tuple(orders), shape, array.dtype)
    if orders[0] is not None:
        array = take_rows(array, orders[0])
    for axis, order in enumerate(orders[1:], start=1):
        if order is not None:
            array = _taken_along(array, order, axis)
    if rows is not None and array.chunks[0] != tuple(rows):
        array = array.rechunk({0: rows})
    return array


def _sorted_gradient_rows(
    gradient: TensorBlock, inverse: np.ndarray, descending: bool
) -> tuple[Labels, np.ndarray]:
    """The gradient samples with ``"sample"`` renumbered by ``inverse`` (the new
    position of each sample), sorted, and the order of the gradient rows."""
    renumbered = gradient.samples.values.copy()
    renumbered[:, 0] = inverse[renumbered[:, 0]]
    order = lexsort_rows(renumbered, descending)
    return Labels._made_from(gradient.samples.names, renumbered[order], gradient.samples), order


def _sort_one(block: TensorBlock, axes: list[str], descending: bool) -> TensorBlock:
    check_no_gradients_of_gradients(block)
    groups = tiny_groups([block.values, *(g.values for _, g in block.gradients())])
    samples, row_order, inverse = block.samples, None, None
    if "samples" in axes:
        samples, order = _sorted_labels(block.samples, descending)
        row_order, inverse = _changed(order), inverse_permutation(order)
    components, properties, orders = _sort_trailing(
        block.components, block.properties, axes, descending
    )
    values = _reordered(block._held_values(), [row_order, *orders], groups, None)
    gradients = {}
    for parameter, gradient in block.gradients():
        gradient_samples, gradient_rows, chunks = gradient.samples, None, None
        if inverse is not None:
            gradient_samples, order = _sorted_gradient_rows(gradient, inverse, descending)
            gradient_rows = _changed(order)
            if groups is None and len(gradient_samples):
                value_chunks = as_dask(materialized(values)).chunks[0]
                chunks = gradient_chunks_for(gradient_samples, value_chunks)
        gradient_components, _, gradient_orders = _sort_trailing(
            gradient.components, gradient.properties, axes, descending
        )
        gradient_values = _reordered(
            gradient._held_values(), [gradient_rows, *gradient_orders], groups, chunks
        )
        gradients[parameter] = TensorBlock._trusted(
            gradient_values, gradient_samples, gradient_components, properties
        )
    return TensorBlock._trusted(values, samples, components, properties, gradients)


def sort_block(
    block: TensorBlock, axes: str | list[str] = "all", descending: bool = False
) -> TensorBlock:
    """Sort the entries of the samples, components and/or properties of a block.

    Parameters
    ----------
    block
        The block to sort; it is not modified.
    axes
        ``"all"``, or one or a list of ``"samples"``, ``"components"``,
        ``"properties"``. Entries are sorted lexicographically (first dimension first).
    descending
        Sort in decreasing order.

    Returns
    -------
    TensorBlock
        A lazy block. Arrays are only reordered where the order changes: sorting an
        already sorted block adds nothing to the graph.

    Notes
    -----
    Gradient rule: sorting permutes entries, so gradients are permuted the same way.
    When samples are sorted, the gradient ``"sample"`` column is renumbered and the
    gradient rows are sorted lexicographically (which groups them by sample, so they
    are co-partitioned with the sorted values); components of the gradients (its own
    ones too) and properties are sorted like the values'. Every block is sorted, also
    one without samples or without properties, and one whose gradients have no rows:
    metatensor-operations 0.5.0 leaves the components and properties of a block
    without samples in their order, and fails on the others.
    """
    check_block(block, "block")
    axes_list = _axes_list(axes)
    _check_block_axes(axes_list)
    _check_descending(descending)
    return _sort_one(block, axes_list, bool(descending))


def sort(tensor: TensorMap, axes: str | list[str] = "all", descending: bool = False) -> TensorMap:
    """Sort the keys and/or the entries of every block.

    Parameters
    ----------
    tensor
        The map to sort; it is not modified.
    axes
        ``"all"`` (keys, samples, components and properties), ``"keys"``, one of the
        block axes, or a list of them (which may include ``"keys"``).
    descending
        Sort in decreasing order.

    Returns
    -------
    TensorMap
        A lazy map.

    Notes
    -----
    Gradient rule: as :func:`sort_block`. Unlike metatensor, a list given
    as ``axes`` is not modified.
    """
    axes_list = _axes_list(axes)
    sort_keys = axes == "all" or "keys" in axes_list
    axes_list = [axis for axis in axes_list if axis != "keys"]
    _check_block_axes(axes_list)
    _check_descending(descending)
    descending = bool(descending)
    if sort_keys:
        keys, order = _sorted_labels(tensor.keys, descending)
    else:
        keys, order = tensor.keys, np.arange(len(tensor))
    tensor = lazy_arrays(tensor)
    return grouped(
        keys,
        lambda: [_sort_one(tensor.block_by_id(int(i)), axes_list, descending) for i in order],
    )
