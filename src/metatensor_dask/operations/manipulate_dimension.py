"""Rename, insert, append, remove and permute the dimensions of keys, samples,
components or properties. Only Labels change: arrays are shared, nothing is computed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..block import TensorBlock
from ..labels import Labels
from ..tensor import TensorMap
from ._utils import check_tensor

__all__ = [
    "append_dimension",
    "insert_dimension",
    "permute_dimensions",
    "remove_dimension",
    "rename_dimension",
]


def _check_axis(axis: str) -> None:
    if axis not in ("keys", "samples", "components", "properties"):
        raise ValueError(
            f"'{axis}' is not a valid axis. Choose from 'keys', 'samples', 'components', "
            "or 'properties'."
        )


def _no_components(axis: str, function: str) -> None:
    if axis == "components":
        raise ValueError(
            f"`{function}` can not change 'components': each component has exactly one "
            "dimension. Use 'keys', 'samples' or 'properties', or `rename_dimension` to "
            "rename a component"
        )


def _relabelled(
    tensor: TensorMap,
    axis: str,
    change: Callable[[Labels], Labels],
) -> TensorMap:
    """Apply ``change`` to the keys, or to the samples or properties of every block."""
    keys = change(tensor.keys) if axis == "keys" else tensor.keys
    blocks = []
    for block in tensor.blocks():
        samples = change(block.samples) if axis == "samples" else block.samples
        properties = change(block.properties) if axis == "properties" else block.properties
        gradients = {
            parameter: _with_properties(gradient, properties)
            for parameter, gradient in block.gradients()
        }
        blocks.append(
            TensorBlock._trusted(block.values, samples, block.components, properties, gradients)
        )
    return TensorMap._trusted(keys, blocks)


def _with_properties(gradient: TensorBlock, properties: Labels) -> TensorBlock:
    nested = {p: _with_properties(g, properties) for p, g in gradient.gradients()}
    return TensorBlock._trusted(
        gradient.values,
        gradient.samples,
        gradient.components,
        properties,
        nested,
        row_pointer=gradient._row_pointer,
    )


def _column(values: Any, count: int) -> np.ndarray:
    if isinstance(values, (int, np.integer)) and not isinstance(values, bool):
        return np.full(count, int(values), dtype=np.int32)
    return values


def insert_dimension(
    tensor: TensorMap, axis: str, index: int, name: str, values: np.ndarray | int
) -> TensorMap:
    """Insert a dimension ``name`` at position ``index`` of the keys, samples or
    properties.

    Parameters
    ----------
    tensor
        The input map; it is not modified.
    axis
        ``"keys"``, ``"samples"`` or ``"properties"``.
    index
        Position of the new dimension among the existing ones.
    name
        Name of the new dimension.
    values
        One value per entry (a 1-D integer array), or one integer for all entries.

    Returns
    -------
    TensorMap
        The map with new labels; the arrays are shared.

    Notes
    -----
    Gradient rule: labels do not change values, so gradients are unchanged; their
    properties follow the new properties, and their samples (indexing value rows) are
    kept. ``axis="components"`` raises, where metatensor 0.5.0 silently does nothing:
    components have exactly one dimension each.
    """
    check_tensor(tensor, "tensor")
    _check_axis(axis)
    _no_components(axis, "insert_dimension")
    return _relabelled(
        tensor, axis, lambda labels: labels.insert(index, name, _column(values, len(labels)))
    )


def append_dimension(
    tensor: TensorMap, axis: str, name: str, values: np.ndarray | int
) -> TensorMap:
    """Add a last dimension ``name`` to the keys, samples or properties.

    Parameters are those of :func:`insert_dimension` without ``index``.

    Notes
    -----
    Gradients are unchanged (see :func:`insert_dimension`). The dimension goes after
    the existing ones (metatensor-core's ``Labels.append`` inserts at the number of
    *entries* instead; this function, like metatensor-operations', does not).
    """
    check_tensor(tensor, "tensor")
    if axis == "keys":
        index = len(tensor.keys.names)
    elif axis == "samples":
        index = len(tensor.sample_names)
    elif axis == "properties":
        index = len(tensor.property_names)
    else:
        raise ValueError(
            f"'{axis}' is not a valid axis. Choose from 'keys', 'samples' or 'properties'."
        )
    return insert_dimension(tensor, axis, index, name, values)


def remove_dimension(tensor: TensorMap, axis: str, name: str) -> TensorMap:
    """Remove the dimension ``name`` from the keys, samples or properties.

    Parameters
    ----------
    tensor
        The input map; it is not modified.
    axis
        ``"keys"``, ``"samples"`` or ``"properties"``.
    name
        The dimension to remove. The remaining entries must stay unique.

    Returns
    -------
    TensorMap
        The map with new labels; arrays are shared.

    Notes
    -----
    Gradients are unchanged (their properties follow). ``axis="components"`` raises
    (metatensor 0.5.0 silently does nothing).
    """
    check_tensor(tensor, "tensor")
    _check_axis(axis)
    _no_components(axis, "remove_dimension")
    return _relabelled(tensor, axis, lambda labels: labels.remove(name))


def permute_dimensions(tensor: TensorMap, axis: str, dimensions_indexes: list[int]) -> TensorMap:
    """Reorder the dimensions of the keys, samples or properties.

    Parameters
    ----------
    tensor
        The input map; it is not modified.
    axis
        ``"keys"``, ``"samples"`` or ``"properties"``.
    dimensions_indexes
        The old position of each new dimension.

    Returns
    -------
    TensorMap
        The map with new labels; arrays are shared.

    Notes
    -----
    Gradients are unchanged (their properties follow). ``axis="components"`` raises
    (metatensor 0.5.0 silently does nothing).
    """
    check_tensor(tensor, "tensor")
    _check_axis(axis)
    _no_components(axis, "permute_dimensions")
    return _relabelled(tensor, axis, lambda labels: labels.permute(dimensions_indexes))


def _rename_components(components: list[Labels], old: str, new: str) -> list[Labels]:
    return [c.rename(old, new) if old in c.names else c for c in components]


def _renamed_gradient(
    gradient: TensorBlock, axis: str, old: str, new: str, properties: Labels
) -> TensorBlock:
    samples = gradient.samples
    if axis == "samples" and old in samples.names:
        samples = samples.rename(old, new)
    components = gradient.components
    if axis == "components":
        components = _rename_components(components, old, new)
    nested = {p: _renamed_gradient(g, axis, old, new, properties) for p, g in gradient.gradients()}
    pointer = gradient._row_pointer
    return TensorBlock._trusted(
        gradient.values, samples, components, properties, nested, row_pointer=pointer
    )


def rename_dimension(tensor: TensorMap, axis: str, old: str, new: str) -> TensorMap:
    """Rename the dimension ``old`` of the keys, samples, components or properties.

    Parameters
    ----------
    tensor
        The input map; it is not modified.
    axis
        ``"keys"``, ``"samples"``, ``"components"`` or ``"properties"``.
    old, new
        Current and new name.

    Returns
    -------
    TensorMap
        The map with new labels; arrays are shared.

    Notes
    -----
    Gradients are unchanged. Renaming a sample dimension also renames it in the
    gradient samples when they have it; renaming a component renames it in the
    gradient components too.
    """
    check_tensor(tensor, "tensor")
    _check_axis(axis)
    keys = tensor.keys.rename(old, new) if axis == "keys" else tensor.keys
    blocks = []
    for block in tensor.blocks():
        samples = block.samples.rename(old, new) if axis == "samples" else block.samples
        components = block.components
        if axis == "components":
            components = _rename_components(components, old, new)
        properties = block.properties
        if axis == "properties":
            properties = properties.rename(old, new)
        gradients = {
            p: _renamed_gradient(g, axis, old, new, properties) for p, g in block.gradients()
        }
        blocks.append(
            TensorBlock._trusted(block.values, samples, components, properties, gradients)
        )
    return TensorMap._trusted(keys, blocks)
