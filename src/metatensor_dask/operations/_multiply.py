"""``multiply``: element-wise product of two tensors, or of a tensor and a scalar."""

from __future__ import annotations

import numpy as np

from ..block import TensorBlock
from ..tensor import TensorMap
from ._chunkwise import elementwise, row_blocks, rows_for_gradient
from ._utils import derived_block, scalar_or_tensor_operation

__all__ = ["multiply"]


def _multiply_constant(values: np.ndarray, constant: float) -> np.ndarray:
    return constant * values


def _multiply_constant_gradient(gradient: np.ndarray, constant: float) -> np.ndarray:
    return gradient * constant


def _multiply_gradient(
    a: np.ndarray, b: np.ndarray, gradient_a: np.ndarray, gradient_b: np.ndarray, index: np.ndarray
) -> np.ndarray:
    # `a[s] * grad_b + grad_a * b[s]`; when every array has one dtype, block by block of
    # rows (see `row_blocks`), into one result and one block-sized temporary
    dtype = np.result_type(a, b, gradient_a, gradient_b)
    if any(x.dtype != dtype for x in (a, b, gradient_a, gradient_b)):
        return rows_for_gradient(a[index], gradient_a) * gradient_b + gradient_a * (
            rows_for_gradient(b[index], gradient_a)
        )
    result = np.empty(np.broadcast_shapes(gradient_a.shape, gradient_b.shape), dtype)
    blocks = list(row_blocks(result))
    other = np.empty_like(result[blocks[0]] if blocks else result)
    for rows in blocks:
        values = index[rows]
        np.multiply(rows_for_gradient(a[values], gradient_a), gradient_b[rows], out=result[rows])
        term = other[: len(values)]
        np.multiply(gradient_a[rows], rows_for_gradient(b[values], gradient_a), out=term)
        result[rows] += term
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
