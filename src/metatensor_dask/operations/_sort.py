"""``sort`` and ``sort_block``: order keys, samples, components and properties."""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np

from ..block import TensorBlock
from ..labels import Labels
from ..tensor import TensorMap
from ._manipulation_utils import (
    as_dask,
    check_no_gradients_of_gradients,
    gradient_chunks_for,
    inverse_permutation,
    lexsort_rows,
    take_rows,
)

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


def _take(array: da.Array, order: np.ndarray, axis: int) -> da.Array:
    if np.array_equal(order, np.arange(len(order))):
        return array
    return da.take(array, order, axis=axis)


def _sorted_labels(labels: Labels, descending: bool) -> tuple[Labels, np.ndarray]:
    order = lexsort_rows(labels.values, descending)
    return Labels._trusted(labels.names, labels.values[order]), order


def _sort_trailing(
    values: da.Array,
    components: list[Labels],
    properties: Labels,
    axes: list[str],
    descending: bool,
) -> tuple[da.Array, list[Labels], Labels]:
    """Sort the components (every one of them) and properties of one array."""
    components = list(components)
    if "components" in axes:
        for i, component in enumerate(components):
            components[i], order = _sorted_labels(component, descending)
            values = _take(values, order, axis=i + 1)
    if "properties" in axes:
        properties, order = _sorted_labels(properties, descending)
        values = _take(values, order, axis=values.ndim - 1)
    return values, components, properties


def _sort_one(block: TensorBlock, axes: list[str], descending: bool) -> TensorBlock:
    check_no_gradients_of_gradients(block)
    values = as_dask(block.values)
    samples = block.samples
    inverse = None
    if "samples" in axes:
        samples, order = _sorted_labels(block.samples, descending)
        values = take_rows(values, order)
        inverse = inverse_permutation(order)
    values, components, properties = _sort_trailing(
        values, block.components, block.properties, axes, descending
    )
    gradients = {}
    for parameter, gradient in block.gradients():
        gradient_values = as_dask(gradient.values)
        gradient_samples = gradient.samples
        if inverse is not None:
            renumbered = gradient.samples.values.copy()
            renumbered[:, 0] = inverse[renumbered[:, 0]]
            order = lexsort_rows(renumbered, descending)
            gradient_samples = Labels._trusted(gradient.samples.names, renumbered[order])
            gradient_values = take_rows(gradient_values, order)
            chunks = gradient_chunks_for(gradient_samples, values.chunks[0])
            if chunks is not None and len(gradient_samples):
                gradient_values = gradient_values.rechunk({0: chunks})
        gradient_values, gradient_components, _ = _sort_trailing(
            gradient_values, gradient.components, gradient.properties, axes, descending
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
    ones too) and properties are sorted like the values'.
    """
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
    blocks = [_sort_one(tensor.block_by_id(int(i)), axes_list, descending) for i in order]
    return TensorMap._trusted(keys, blocks)
