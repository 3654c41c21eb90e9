"""``unique_metadata`` and ``unique_metadata_block``: the distinct values of some label
dimensions across blocks."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..block import TensorBlock
from ..labels import Labels
from ..tensor import TensorMap
from ._manipulation_utils import (
    unique_rows,
)
from ._utils import check_block, check_tensor

__all__ = ["unique_metadata", "unique_metadata_block"]


def _names_list(names: Any) -> list[str]:
    if isinstance(names, str):
        return [names]
    if isinstance(names, tuple):
        return list(names)
    return names


def _check_args(axis: Any, names: Any, gradient: Any) -> None:
    if not isinstance(axis, str):
        raise TypeError(f"`axis` must be a string, not {type(axis)}")
    if not isinstance(names, list):
        raise TypeError(f"`names` must be a list of strings, not {type(names)}")
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"`names` elements must be a strings, not {type(name)}")
    if gradient is not None and not isinstance(gradient, str):
        raise TypeError(f"`gradient` must be a string, not {type(gradient)}")
    if axis not in ("samples", "properties"):
        raise ValueError(f"`axis` must be either 'samples' or 'properties', not '{axis}'")


def _unique(blocks: list[TensorBlock], axis: str, names: list[str]) -> Labels:
    pieces = []
    for block in blocks:
        labels = block.samples if axis == "samples" else block.properties
        columns = []
        for name in names:
            if name not in labels.names:
                raise ValueError(f"'{name}' not found in the dimensions of these Labels")
            columns.append(labels.names.index(name))
        pieces.append(labels.values[:, columns])
    values = np.concatenate(pieces) if pieces else np.zeros((0, len(names)), np.int32)
    if len(values) == 0:
        return Labels._trusted(names, np.zeros((0, len(names)), np.int32))
    return Labels._trusted(names, unique_rows(values)[0])


def unique_metadata(
    tensor: TensorMap,
    axis: str,
    names: list[str] | tuple[str, ...] | str,
    gradient: str | None = None,
) -> Labels:
    """The distinct entries of the ``names`` dimensions of ``axis``, over all blocks.

    Parameters
    ----------
    tensor
        The map to inspect. Only labels are read (sample labels of stored blocks are
        loaded); no values are computed.
    axis
        ``"samples"`` or ``"properties"``.
    names
        One or several dimension names of that axis.
    gradient
        Read the labels of this gradient of every block instead of the values'.

    Returns
    -------
    Labels
        Sorted, unique entries.

    Notes
    -----
    Gradient rule: none applies; the result is labels, not values (with ``gradient``,
    the labels of that gradient are read instead).
    """
    check_tensor(tensor, "tensor")
    names = _names_list(names)
    _check_args(axis, names, gradient)
    blocks = tensor.blocks()
    if gradient is not None:
        blocks = [block.gradient(gradient) for block in blocks]
    return _unique(blocks, axis, names)


def unique_metadata_block(
    block: TensorBlock,
    axis: str,
    names: list[str] | tuple[str, ...] | str,
    gradient: str | None = None,
) -> Labels:
    """The distinct entries of the ``names`` dimensions of ``axis`` in one block.

    Parameters are those of :func:`unique_metadata`, for a single block.

    Notes
    -----
    Gradient rule: none applies, as for :func:`unique_metadata`.
    """
    check_block(block, "block")
    names = _names_list(names)
    _check_args(axis, names, gradient)
    return _unique([block.gradient(gradient) if gradient is not None else block], axis, names)
