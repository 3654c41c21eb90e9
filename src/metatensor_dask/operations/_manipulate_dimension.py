"""Rename, insert, append, remove and permute the dimensions of keys, samples,
components or properties. Only Labels change: arrays are shared, nothing is computed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..block import TensorBlock
from ..errors import invalid_parameter
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


def _check_axis(axis: str, function: str) -> None:
    """metatensor's check of ``axis``; only ``rename_dimension`` can change components."""
    if axis not in ("keys", "samples", "components", "properties"):
        raise ValueError(
            f"'{axis}' is not a valid axis. Choose from 'keys', 'samples', 'components', "
            "or 'properties'."
        )
    if axis == "components" and function != "rename_dimension":
        raise ValueError(
            f"`{function}` can not change 'components': each component has exactly one "
            "dimension. Use 'keys', 'samples' or 'properties', or `rename_dimension` to "
            "rename a component"
        )


Change = Callable[[Labels], Labels]


def _unchanged(labels: Labels) -> Labels:
    return labels


def _relabelled(
    tensor: TensorMap, axis: str, change: Change, if_present: Change = _unchanged
) -> TensorMap:
    """Apply ``change`` to the keys, or to the samples or properties of every block.

    ``if_present`` (a change that keeps labels lacking the dimension as they are) is
    applied to the components of blocks and gradients for ``axis="components"``, and to
    the gradient samples for ``axis="samples"``; gradient properties follow the block's.
    """
    keys = change(tensor.keys) if axis == "keys" else tensor.keys
    blocks = []
    for block in tensor.blocks():
        samples = change(block.samples) if axis == "samples" else block.samples
        components = _components(block, axis, if_present)
        properties = change(block.properties) if axis == "properties" else block.properties
        gradients = {
            p: _relabelled_gradient(g, axis, if_present, properties) for p, g in block.gradients()
        }
        blocks.append(
            TensorBlock._trusted(block._held_values(), samples, components, properties, gradients)
        )
    return TensorMap._trusted(keys, blocks)


def _components(block: TensorBlock, axis: str, if_present: Change) -> list[Labels]:
    if axis == "components":
        return [if_present(c) for c in block.components]
    return block.components


def _relabelled_gradient(
    gradient: TensorBlock, axis: str, if_present: Change, properties: Labels
) -> TensorBlock:
    samples = if_present(gradient.samples) if axis == "samples" else gradient.samples
    nested = {
        p: _relabelled_gradient(g, axis, if_present, properties) for p, g in gradient.gradients()
    }
    return TensorBlock._trusted(
        gradient._held_values(),
        samples,
        _components(gradient, axis, if_present),
        properties,
        nested,
        row_pointer=gradient.row_pointer,
    )


def _column(values: Any, count: int) -> np.ndarray:
    """``values`` given for every entry, one integer repeated ``count`` times; the range
    of an integer is checked by :class:`Labels`, as the range of an array is."""
    if isinstance(values, (int, np.integer)) and not isinstance(values, bool):
        value = int(values)
        # beyond 64 bits, kept as a Python integer for Labels to refuse
        wide = not np.iinfo(np.int64).min <= value <= np.iinfo(np.int64).max
        return np.full(count, value, dtype=object if wide else np.int64)
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
    _check_axis(axis, "insert_dimension")
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
    Gradient rule: as :func:`insert_dimension`, gradients are unchanged. The dimension
    goes after the existing ones (metatensor-core's ``Labels.append`` inserts at the
    number of *entries* instead; this function, like metatensor-operations', does not).
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
        The dimension to remove. The remaining entries must stay unique, and a
        dimension must remain when there are entries (metatensor counts no entry in
        Labels without dimensions).

    Returns
    -------
    TensorMap
        The map with new labels; arrays are shared.

    Notes
    -----
    Gradient rule: labels do not change values, so gradients are unchanged (their
    properties follow). ``axis="components"`` raises (metatensor 0.5.0 silently does
    nothing).
    """
    check_tensor(tensor, "tensor")
    _check_axis(axis, "remove_dimension")
    return _relabelled(tensor, axis, lambda labels: _removed(labels, axis, name))


def _removed(labels: Labels, axis: str, name: str) -> Labels:
    """``labels`` without ``name``, refusing to remove the last dimension of Labels
    that have entries (metatensor counts no entry in Labels without dimensions, and
    fails on the map or block that holds them)."""
    removed = labels.remove(name)
    if not removed.names and len(removed):
        keys = ", or move the keys into the blocks (`keys_to_samples`, `keys_to_properties`)"
        raise invalid_parameter(
            f"can not remove '{name}', the only dimension of the {axis}: Labels without "
            f"dimensions have no entries, and the {axis} have {len(removed)}; insert "
            "another dimension first (`insert_dimension`)" + (keys if axis == "keys" else "")
        )
    return removed


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
    Gradient rule: labels do not change values, so gradients are unchanged (their
    properties follow). ``axis="components"`` raises (metatensor 0.5.0 silently does
    nothing).
    """
    check_tensor(tensor, "tensor")
    _check_axis(axis, "permute_dimensions")
    return _relabelled(tensor, axis, lambda labels: labels.permute(dimensions_indexes))


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
    Gradient rule: labels do not change values, so gradients are unchanged. Renaming a
    sample dimension also renames it in the gradient samples when they have it, except
    a sample dimension named ``"sample"``: the gradients' own ``"sample"`` dimension
    (the value row of each gradient row) keeps its name, which every gradient's first
    sample dimension must have (metatensor-operations renames it too, and fails on the
    gradient it built). Renaming a component renames it in the gradient components too.
    """
    check_tensor(tensor, "tensor")
    _check_axis(axis, "rename_dimension")
    return _relabelled(
        tensor,
        axis,
        lambda labels: labels.rename(old, new),
        _renamed_in_gradients(axis, old, new),
    )


def _renamed_in_gradients(axis: str, old: str, new: str) -> Change:
    """The renaming of ``old`` to ``new`` in gradient labels that have ``old``, except
    the gradient samples' ``"sample"`` dimension, which indexes value rows and is not
    the values' dimension of that name."""
    if axis == "samples" and old == "sample":
        return _unchanged

    def renamed(labels: Labels) -> Labels:
        return labels.rename(old, new) if old in labels.names else labels

    return renamed
