"""``add``: element-wise sum of two tensors, or of a tensor and a scalar."""

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

__all__ = ["add"]


def _add_constant(values: np.ndarray, constant: float) -> np.ndarray:
    return constant + values


def _add_block_constant(block: TensorBlock, constant: float) -> TensorBlock:
    gradients = {}
    for parameter, gradient in block.gradients():
        no_gradients_of_gradients(gradient)
        gradients[parameter] = gradient.values
    return block_like(block, elementwise(_add_constant, [block.values], (constant,)), gradients)


def _add_block_block(block_1: TensorBlock, block_2: TensorBlock) -> TensorBlock:
    gradients = {}
    for parameter, gradient_1 in block_1.gradients():
        gradient_2 = block_2.gradient(parameter)
        no_gradients_of_gradients(gradient_1)
        no_gradients_of_gradients(gradient_2)
        gradients[parameter] = elementwise(np.add, [gradient_1.values, gradient_2.values])
    values = elementwise(np.add, [block_1.values, block_2.values])
    return block_like(block_1, values, gradients)


def add(A: TensorMap, B: float | int | TensorMap) -> TensorMap:
    r"""The element-wise sum of ``A`` and ``B``, lazily.

    Gradients follow

    .. math::

        \nabla(A + B) = \nabla A \quad (B \text{ scalar}), \qquad
        \nabla(A + B) = \nabla A + \nabla B \quad (B \text{ a TensorMap}).

    Parameters
    ----------
    A
        The first operand.
    B
        A scalar (any real number, numpy scalars included), or a TensorMap with the same
        keys (in any order), samples, components, properties and gradients as ``A``.

    Returns
    -------
    TensorMap
        A new map with ``A``'s metadata. Differently chunked operands are aligned on
        ``A``'s chunks.

    Raises
    ------
    TypeError
        If ``A`` is not a TensorMap, or ``B`` neither a TensorMap nor a scalar.
    NotEqualError
        If the metadata of ``A`` and ``B`` differ.
    """
    check_tensor(A, "A")
    check_scalar_or_tensor(B)
    if is_scalar(B):
        constant = float(B)  # type: ignore[arg-type]
        return TensorMap._trusted(A.keys, [_add_block_constant(b, constant) for b in A.blocks()])
    return map_blocks_pairwise(A, B, "add", _add_block_block)  # type: ignore[arg-type]
