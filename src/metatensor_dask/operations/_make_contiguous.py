"""``make_contiguous``: C-contiguous arrays for values and gradients."""

from __future__ import annotations

import numpy as np

from ..block import TensorBlock
from ..tensor import TensorMap
from ._chunkwise import elementwise
from ._utils import check_block, check_tensor, derived_block, map_blocks

__all__ = ["make_contiguous", "make_contiguous_block"]


def make_contiguous_block(block: TensorBlock) -> TensorBlock:
    """A block whose values and gradients are C-contiguous: ``numpy.ascontiguousarray``
    on numpy arrays, and on every chunk of dask arrays (lazily).

    Parameters
    ----------
    block
        The block.

    Returns
    -------
    TensorBlock
        A block with the same metadata.
    """
    check_block(block, "block")
    values = elementwise(np.ascontiguousarray, [block.values])
    return derived_block(
        [block], values, lambda _, gradient: elementwise(np.ascontiguousarray, gradient)
    )


def make_contiguous(tensor: TensorMap) -> TensorMap:
    """A map whose values and gradients are C-contiguous (see
    :func:`make_contiguous_block`)."""
    check_tensor(tensor, "tensor")
    return map_blocks(tensor, make_contiguous_block)
