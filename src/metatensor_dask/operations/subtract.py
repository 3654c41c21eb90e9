"""``subtract``: element-wise difference of two tensors, or of a tensor and a scalar."""

from __future__ import annotations

import numpy as np

from ..block import TensorBlock
from ..tensor import TensorMap
from ._chunkwise import elementwise
from ._utils import (
    block_like,
    check_scalar_or_tensor,
    check_tensor,
    is_scalar,
    map_blocks_pairwise,
    no_gradients_of_gradients,
)
from .add import add

__all__ = ["subtract"]


def _subtract_block_block(block_1: TensorBlock, block_2: TensorBlock) -> TensorBlock:
    gradients = {}
    for parameter, gradient_1 in block_1.gradients():
        gradient_2 = block_2.gradient(parameter)
        no_gradients_of_gradients(gradient_1)
        no_gradients_of_gradients(gradient_2)
        gradients[parameter] = elementwise(np.subtract, [gradient_1.values, gradient_2.values])
    values = elementwise(np.subtract, [block_1.values, block_2.values])
    return block_like(block_1, values, gradients)


def subtract(A: TensorMap, B: float | int | TensorMap) -> TensorMap:
    r"""The element-wise difference ``A - B``, lazily.

    Gradients follow

    .. math::

        \nabla(A - B) = \nabla A \quad (B \text{ scalar}), \qquad
        \nabla(A - B) = \nabla A - \nabla B \quad (B \text{ a TensorMap}).

    Parameters
    ----------
    A
        The first operand.
    B
        A scalar, or a TensorMap with the same metadata as ``A`` (keys in any order).

    Returns
    -------
    TensorMap
        A new map with ``A``'s metadata (bit-identical to metatensor's
        ``add(A, multiply(B, -1))``).

    Raises
    ------
    TypeError
        If ``A`` is not a TensorMap, or ``B`` neither a TensorMap nor a scalar.
    NotEqualError
        If the metadata of ``A`` and ``B`` differ (the message names ``'add'``, as
        metatensor's does).
    """
    check_tensor(A, "A")
    check_scalar_or_tensor(B)
    if is_scalar(B):
        return add(A, -float(B))  # type: ignore[arg-type]
    # metatensor subtracts by adding -B: its checks and messages name 'add'
    return map_blocks_pairwise(A, B, "add", _subtract_block_block)  # type: ignore[arg-type]
