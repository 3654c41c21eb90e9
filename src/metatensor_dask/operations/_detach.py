"""``detach`` and ``requires_grad``: no-ops for numpy and dask arrays, as metatensor
does for numpy (they exist for torch's automatic differentiation)."""

from __future__ import annotations

import warnings

from ..block import TensorBlock
from ..tensor import TensorMap
from ._utils import check_block, check_tensor, first_order_gradients

__all__ = ["detach", "detach_block", "requires_grad", "requires_grad_block"]


def _same_block(block: TensorBlock) -> TensorBlock:
    gradients = dict(first_order_gradients(block))
    return TensorBlock._trusted(
        block._held_values(), block.samples, block.components, block.properties, gradients
    )


def detach_block(block: TensorBlock) -> TensorBlock:
    """A new block sharing the arrays of ``block``: there is no autograd graph to cut.

    Gradients are kept unchanged (the same gradient blocks).
    """
    check_block(block, "block")
    return _same_block(block)


def detach(tensor: TensorMap) -> TensorMap:
    """A new map sharing the arrays, and the gradients, of ``tensor`` (see
    :func:`detach_block`)."""
    check_tensor(tensor, "tensor")
    return TensorMap._trusted(tensor.keys, [_same_block(b) for b in tensor.blocks()])


def _warn(requires_grad: bool) -> None:
    if requires_grad:
        warnings.warn("`requires_grad=True` does nothing for numpy and dask arrays", stacklevel=3)


def requires_grad_block(block: TensorBlock, requires_grad: bool = True) -> TensorBlock:
    """A new block sharing the arrays of ``block``; warns when ``requires_grad`` is
    True, since numpy and dask arrays cannot track gradients. Explicit gradients are
    kept unchanged."""
    check_block(block, "block")
    _warn(requires_grad)
    return _same_block(block)


def requires_grad(tensor: TensorMap, requires_grad: bool = True) -> TensorMap:
    """A new map sharing the arrays, and the gradients, of ``tensor``; warns when
    ``requires_grad`` is True (see :func:`requires_grad_block`)."""
    check_tensor(tensor, "tensor")
    _warn(requires_grad)
    return TensorMap._trusted(tensor.keys, [_same_block(b) for b in tensor.blocks()])
