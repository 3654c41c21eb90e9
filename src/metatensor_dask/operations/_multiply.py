"""``multiply``: element-wise product of two tensors, or of a tensor and a scalar."""

from __future__ import annotations

import numpy as np

from ..block import TensorBlock
from ..tensor import TensorMap
from ._chunkwise import elementwise
from ._utils import derived_block, scalar_or_tensor_operation
from ._value_rows import ValueRows, gathered_rows, one_block

__all__ = ["multiply"]


def _multiply_constant(values: np.ndarray, constant: float) -> np.ndarray:
    return constant * values


def _multiply_constant_gradient(gradient: np.ndarray, constant: float) -> np.ndarray:
    return gradient * constant


def _multiply_gradient(
    a: np.ndarray, b: np.ndarray, gradient_a: np.ndarray, gradient_b: np.ndarray, index: np.ndarray
) -> np.ndarray:
    # metatensor's `a[s] * grad_b + grad_a * b[s]`; for a large gradient whose arrays
    # have one dtype, block by block (see `ValueRows`) into the result and one
    # block-sized temporary
    dtype = np.result_type(a, b, gradient_a, gradient_b)
    if one_block(gradient_a) or any(x.dtype != dtype for x in (a, b, gradient_a, gradient_b)):
        ndim = gradient_a.ndim
        return gathered_rows(a, index, ndim) * gradient_b + gradient_a * gathered_rows(
            b, index, ndim
        )
    result = np.empty(gradient_a.shape, dtype)
    layout = ValueRows(index, len(a), result.shape, dtype.itemsize)
    out, grad_a, grad_b = layout.shaped_all(result, gradient_a, gradient_b)
    if a is b and gradient_a is gradient_b:
        # a square (`multiply(t, t)`): `x * g + g * x` is `x * g` doubled, bit for bit
        # (IEEE products commute; doubling is exact): one product instead of two
        for block in layout.blocks():
            product = np.multiply(layout.rows(a, block), grad_a[block], out=out[block])
            np.add(product, product, out=product)
        return result
    scratch = layout.scratch(result)
    for block in layout.blocks():
        product = np.multiply(layout.rows(a, block), grad_b[block], out=out[block])
        term = np.multiply(grad_a[block], layout.rows(b, block), out=scratch[: len(product)])
        np.add(product, term, out=product)
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
