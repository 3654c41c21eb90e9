"""``is_contiguous``: whether values and gradients are C-contiguous."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..block import TensorBlock
from ..tensor import TensorMap
from ._chunkwise import is_lazy
from ._utils import check_block, check_tensor, first_order_gradients

__all__ = ["is_contiguous", "is_contiguous_block"]


def _array_is_contiguous(array: Any) -> bool:
    if is_lazy(array):
        # the layout of chunks is only known once they exist; arrays made by
        # `make_contiguous` are contiguous chunk by chunk
        return array.name.startswith("ascontiguousarray-")
    return bool(np.asarray(array).flags["C_CONTIGUOUS"])


def is_contiguous_block(block: TensorBlock) -> bool:
    """Whether the values and gradients of ``block`` are C-contiguous.

    For numpy arrays (a computed block) this is numpy's flag. A dask array has no
    layout until its chunks are computed: it counts as contiguous only when it comes
    straight out of :func:`make_contiguous` (which makes every chunk contiguous), so
    ``is_contiguous(make_contiguous(t))`` holds and nothing is computed.

    Parameters
    ----------
    block
        The block.

    Returns
    -------
    bool
        Whether every array is known to be C-contiguous.
    """
    check_block(block, "block")
    return _array_is_contiguous(block.values) and all(
        _array_is_contiguous(gradient.values) for _, gradient in first_order_gradients(block)
    )


def is_contiguous(tensor: TensorMap) -> bool:
    """Whether every block of ``tensor`` is C-contiguous (see
    :func:`is_contiguous_block`)."""
    check_tensor(tensor, "tensor")
    return all(is_contiguous_block(block) for block in tensor.blocks())
