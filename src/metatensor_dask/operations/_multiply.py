"""``multiply``: element-wise product of two tensors, or of a tensor and a scalar."""

from __future__ import annotations

import numpy as np

from ..block import TensorBlock
from ..tensor import TensorMap
from ._chunkwise import elementwise, rows_for_gradient
from ._utils import derived_block, scalar_or_tensor_operation

__all__ = ["multiply"]


def _multiply_constant(values: np.ndarray, constant: float) -> np.ndarray:
    return constant * values


def _multiply_constant_gradient(gradient: np.ndarray, constant: float) -> np.ndarray:
    return gradient * constant


def _multiply_gradient(
    a: np.ndarray, b: np.ndarray, gradient_a: np.ndarray, gradient_b: np.ndarray, index: np.ndarray
) -> np.ndarray:
    # `a[s] * grad_b + grad_a * b[s]`, the sum made in place when the dtypes allow it:
    # the same bits, one gradient-sized temporary fewer
    result = rows_for_gradient(a[index], gradient_a) * gradient_b
    other = gradient_a * rows_for_gradient(b[index], gradient_a)
    if result.dtype != np.result_type(result, other):
        return result + other
    result += other
    return result


def _multiply_block_constant(block: TensorBlock, constant: float) -> TensorBlock:
    values = elementwise(_multiply_constant, [block.values], (constant,))
    return derived_block(
        [block],
        values,
        lambda _, gradient: elementwise(_multiply_constant_gradient, gradient, (constant,)),
    )


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
    return scalar_or_tensor_operation(
        A,
        B,
        "multiply",
        _multiply_block_constant,
        np.multiply,
        _multiply_gradient,
    )
