"""``divide``: element-wise quotient of two tensors, or of a tensor by a scalar."""

from __future__ import annotations

import numpy as np

from ..block import TensorBlock
from ..tensor import TensorMap
from ._chunkwise import elementwise, gradient_rows, rows_for_gradient
from ._utils import (
    block_like,
    check_scalar_or_tensor,
    check_tensor,
    is_scalar,
    map_blocks_pairwise,
    no_gradients_of_gradients,
)

__all__ = ["divide"]


def _divide_constant(values: np.ndarray, constant: float) -> np.ndarray:
    return values / constant


def _divide_gradient(
    a: np.ndarray, b: np.ndarray, gradient_a: np.ndarray, gradient_b: np.ndarray, index: np.ndarray
) -> np.ndarray:
    b_rows = rows_for_gradient(b[index], gradient_a)
    return -rows_for_gradient(a[index], gradient_a) * gradient_b / b_rows**2 + gradient_a / b_rows


def _divide_block_constant(block: TensorBlock, constant: float) -> TensorBlock:
    gradients = {}
    for parameter, gradient in block.gradients():
        no_gradients_of_gradients(gradient)
        gradients[parameter] = elementwise(_divide_constant, [gradient.values], (constant,))
    values = elementwise(_divide_constant, [block.values], (constant,))
    return block_like(block, values, gradients)


def _divide_block_block(block_1: TensorBlock, block_2: TensorBlock) -> TensorBlock:
    gradients = {}
    for parameter, gradient_1 in block_1.gradients():
        gradient_2 = block_2.gradient(parameter)
        no_gradients_of_gradients(gradient_1)
        no_gradients_of_gradients(gradient_2)
        gradients[parameter] = gradient_rows(
            _divide_gradient,
            [block_1.values, block_2.values],
            [gradient_1.values, gradient_2.values],
            block_1,
            parameter,
        )
    values = elementwise(np.true_divide, [block_1.values, block_2.values])
    return block_like(block_1, values, gradients)


def divide(A: TensorMap, B: float | int | TensorMap) -> TensorMap:
    r"""The element-wise quotient ``A / B``, lazily.

    Division by zero gives ``inf`` or ``nan`` (numpy warns when the chunk is computed).
    Gradients follow the quotient rule, with :math:`X[s]` the value row that each
    gradient row refers to:

    .. math::

        \nabla(A / B) = \nabla A / B \quad (B \text{ scalar}), \qquad
        \nabla(A / B) = -A[s] \, \nabla B / B[s]^2 + \nabla A / B[s]
        \quad (B \text{ a TensorMap}).

    Parameters
    ----------
    A
        The numerator.
    B
        A scalar, or a TensorMap with the same metadata as ``A`` (keys in any order).

    Returns
    -------
    TensorMap
        A new map with ``A``'s metadata.

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
        return TensorMap._trusted(A.keys, [_divide_block_constant(b, constant) for b in A.blocks()])
    return map_blocks_pairwise(A, B, "divide", _divide_block_block)  # type: ignore[arg-type]
