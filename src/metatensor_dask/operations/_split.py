"""``split`` and ``split_block``: several slices of the same tensor at once."""

from __future__ import annotations

from typing import Any

from ..block import TensorBlock
from ..tensor import TensorMap
from ._manipulation_utils import lazy_arrays
from ._slice import Selection, check_selection, slice, slice_one
from ._utils import check_block, check_tensor

__all__ = ["split", "split_block"]


def _check_split_args(block: TensorBlock | None, axis: Any, selections: Any) -> None:
    if not isinstance(axis, str):
        raise TypeError(f"axis must be a string, not {type(axis)}")
    if not isinstance(selections, list):
        raise TypeError(f"`selections` must be a list, not {type(selections)}")
    if axis not in ("samples", "properties"):
        raise ValueError("axis must be either 'samples' or 'properties'")
    if block is not None:
        for selection in selections:
            check_selection(block, axis, selection)


def split_block(block: TensorBlock, axis: str, selections: list[Selection]) -> list[TensorBlock]:
    """One :func:`~metatensor_dask.slice_block` of ``block`` per selection.

    Parameters
    ----------
    block
        The block to split; it is not modified.
    axis
        ``"samples"`` or ``"properties"``.
    selections
        A list of selections (:class:`Labels`, lists or 1-D arrays of positions).

    Returns
    -------
    list[TensorBlock]
        Lazy blocks, each read chunk by chunk from ``block``: splitting never loads a
        whole block, whatever its size.

    Notes
    -----
    Gradient rule: as :func:`~metatensor_dask.slice_block` (the gradient rows of the
    kept samples are kept, with ``"sample"`` renumbered).
    """
    check_block(block, "block")
    _check_split_args(block, axis, selections)
    return [slice_one(block, axis, selection) for selection in selections]


def split(tensor: TensorMap, axis: str, selections: list[Selection]) -> list[TensorMap]:
    """Split every block of ``tensor`` into one map per selection.

    Parameters
    ----------
    tensor
        The map to split; it is not modified.
    axis
        ``"samples"`` or ``"properties"``.
    selections
        A list of selections (:class:`Labels`, lists or 1-D arrays of positions).

    Returns
    -------
    list[TensorMap]
        One lazy map per selection, with the keys of ``tensor`` (blocks can be empty).

    Notes
    -----
    Gradient rule: as :func:`~metatensor_dask.slice`. This is the operation that runs
    out of memory on large datasets with metatensor (upstream issue: ``split`` at 360
    GB): here each output chunk is computed from one input chunk, so memory stays at a
    few chunks whatever the size of the tensor. An empty map gives one empty map per
    selection (metatensor raises an ``IndexError``).
    """
    check_tensor(tensor, "tensor")
    _check_split_args(tensor.block(0) if len(tensor) else None, axis, selections)
    tensor = lazy_arrays(tensor)  # once, not once per selection
    # each selection as `slice`: tiny blocks by grouped tasks, distinct Labels once
    return [slice(tensor, axis, selection) for selection in selections]
