"""``remove_gradients``: the same data without some (or all) gradients."""

from __future__ import annotations

from ..block import TensorBlock
from ..tensor import TensorMap
from ._utils import check_block, check_tensor, first_order_gradients

__all__ = ["remove_gradients", "remove_gradients_block"]


def remove_gradients_block(block: TensorBlock, remove: list[str] | None = None) -> TensorBlock:
    """A block sharing ``block``'s arrays, without the gradients listed in ``remove``.

    Parameters
    ----------
    block
        The block.
    remove
        Gradient parameters to drop; ``None`` drops all of them. Unknown names are
        ignored, as metatensor does.

    Returns
    -------
    TensorBlock
        The new block (no data is copied or computed).
    """
    check_block(block, "block")
    if remove is None:
        remove = block.gradients_list()
    kept = dict(
        first_order_gradients(block, [p for p in block.gradients_list() if p not in remove])
    )
    return TensorBlock._trusted(
        block._held_values(), block.samples, block.components, block.properties, kept
    )


def remove_gradients(tensor: TensorMap, remove: list[str] | None = None) -> TensorMap:
    """A map sharing ``tensor``'s arrays, without the gradients listed in ``remove``
    (all of them when ``None``); see :func:`remove_gradients_block`."""
    check_tensor(tensor, "tensor")
    if remove is None and len(tensor) != 0:
        remove = tensor.block(0).gradients_list()
    blocks = [remove_gradients_block(block, remove) for block in tensor.blocks()]
    return TensorMap._trusted(tensor.keys, blocks)
