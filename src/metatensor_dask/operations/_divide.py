"""``divide``: element-wise quotient of two tensors, or of a tensor by a scalar."""

from __future__ import annotations

import numpy as np

from ..block import TensorBlock
from ..tensor import TensorMap
from ._chunkwise import elementwise, rows_for_gradient
from ._utils import derived_block, scalar_or_tensor_operation

__all__ = ["divide"]


def _divide_constant(values: np.ndarray, constant: float) -> np.ndarray:
    return values / constant


def _divide_gradient(
    a: np.ndarray, b: np.ndarray, gradient_a: np.ndarray, gradient_b: np.ndarray, index: np.ndarray
) -> np.ndarray:
    b_rows = rows_for_gradient(b[index], gradient_a)
    return -rows_for_gradient(a[index], gradient_a) * gradient_b / b_rows**2 + gradient_a / b_rows


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
