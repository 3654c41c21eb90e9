"""``divide``: element-wise quotient of two tensors, or of a tensor by a scalar."""

from __future__ import annotations

import numpy as np

from ..block import TensorBlock
from ..tensor import TensorMap
from ._chunkwise import elementwise
from ._utils import derived_block, scalar_or_tensor_operation
from ._value_rows import ValueRows, gathered_rows, one_block

__all__ = ["divide"]


def _divide_constant(values: np.ndarray, constant: float) -> np.ndarray:
    return values / constant


def _divide_gradient(
    a: np.ndarray, b: np.ndarray, gradient_a: np.ndarray, gradient_b: np.ndarray, index: np.ndarray
) -> np.ndarray:
    # metatensor's `-a[s] * grad_b / b[s] ** 2 + grad_a / b[s]`; for a large gradient
    # whose arrays have one dtype, `-a` and `b ** 2` on the values chunks once (element
    # by element: the same bits as on gathered rows), the rest block by block (see
    # `ValueRows`)
    dtype = np.result_type(a, b, gradient_a, gradient_b)
    mixed = dtype.kind not in "fc" or any(x.dtype != dtype for x in (a, b, gradient_a, gradient_b))
    if one_block(gradient_a) or mixed:
        b_rows = gathered_rows(b, index, gradient_a.ndim)
        a_rows = gathered_rows(a, index, gradient_a.ndim)
        return -a_rows * gradient_b / b_rows**2 + gradient_a / b_rows
    negated, squared = -a, b**2
    result = np.empty(gradient_a.shape, dtype)
    layout = ValueRows(index, len(a), result.shape, dtype.itemsize)
    out, grad_a, grad_b = layout.shaped_all(result, gradient_a, gradient_b)
    scratch = layout.scratch(result)
    for block in layout.blocks():
        first = np.multiply(layout.rows(negated, block), grad_b[block], out=out[block])
        np.divide(first, layout.rows(squared, block), out=first)
        second = np.divide(grad_a[block], layout.rows(b, block), out=scratch[: len(first)])
        np.add(first, second, out=first)
    return result


def _divide_block_constant(block: TensorBlock, constant: float) -> TensorBlock:
    values = elementwise(_divide_constant, [block.values], (constant,))
    return derived_block(
        [block], values, lambda _, gradient: elementwise(_divide_constant, gradient, (constant,))
    )


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
    return scalar_or_tensor_operation(
        A,
        B,
        "divide",
        _divide_block_constant,
        np.true_divide,
        _divide_gradient,
    )
