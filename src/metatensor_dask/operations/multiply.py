"""``multiply``: element-wise product of two tensors, or of a tensor and a scalar."""

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

__all__ = ["multiply"]


def _multiply_constant(values: np.ndarray, constant: float) -> np.ndarray:
    return constant * values


def _multiply_constant_gradient(gradient: np.ndarray, constant: float) -> np.ndarray:
    return gradient * constant


def _multiply_gradient(
    a: np.ndarray, b: np.ndarray, gradient_a: np.ndarray, gradient_b: np.ndarray, index: np.ndarray
) -> np.ndarray:
    return rows_for_gradient(a[index], gradient_a) * gradient_b + gradient_a * rows_for_gradient(
        b[index], gradient_a
    )


def _multiply_block_constant(block: TensorBlock, constant: float) -> TensorBlock:
    gradients = {}
    for parameter, gradient in block.gradients():
        no_gradients_of_gradients(gradient)
        gradients[parameter] = elementwise(
            _multiply_constant_gradient, [gradient.values], (constant,)
        )
    values = elementwise(_multiply_constant, [block.values], (constant,))
    return block_like(block, values, gradients)


def _multiply_block_block(block_1: TensorBlock, block_2: TensorBlock) -> TensorBlock:
    gradients = {}
    for parameter, gradient_1 in block_1.gradients():
        gradient_2 = block_2.gradient(parameter)
        no_gradients_of_gradients(gradient_1)
        no_gradients_of_gradients(gradient_2)
        gradients[parameter] = gradient_rows(
            _multiply_gradient,
            [block_1.values, block_2.values],
            [gradient_1.values, gradient_2.values],
            block_1,
            parameter,
        )
    values = elementwise(np.multiply, [block_1.values, block_2.values])
    return block_like(block_1, values, gradients)


def multiply(A: TensorMap, B: float | int | TensorMap) -> TensorMap:
    r"""The element-wise product of ``A`` and ``B``, lazily.

    Gradients follow the product rule, where :math:`A[s]` is the value row that each
    gradient row refers to (its ``"sample"``):

    .. math::

        \nabla(A B) = B \nabla A \quad (B \text{ scalar}), \qquad
        \nabla(A B) = A[s] \, \nabla B + \nabla A \, B[s] \quad (B \text{ a TensorMap}).

    The second form runs chunk by chunk on co-partitioned values and gradient chunks.

    Parameters
    ----------
    A
        The first operand.
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
        blocks = [_multiply_block_constant(b, constant) for b in A.blocks()]
        return TensorMap._trusted(A.keys, blocks)
    return map_blocks_pairwise(A, B, "multiply", _multiply_block_block)  # type: ignore[arg-type]
