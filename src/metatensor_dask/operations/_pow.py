"""``pow``: element-wise power of a tensor by a scalar exponent."""

from __future__ import annotations

import numpy as np

from ..block import TensorBlock
from ..tensor import TensorMap
from ._chunkwise import elementwise, gradient_rows, row_blocks, rows_for_gradient
from ._utils import check_tensor, derived_block, is_scalar, map_blocks

__all__ = ["pow"]


def _power(values: np.ndarray, exponent: float) -> np.ndarray:
    return values**exponent


def _power_gradient(
    values: np.ndarray, gradient: np.ndarray, index: np.ndarray, exponent: float
) -> np.ndarray:
    # metatensor's `exponent * gradient * rows ** (exponent - 1)`, block by block of rows
    # (see `row_blocks`) into the result: the same bits, no chunk-sized temporary
    result = exponent * gradient[:0]
    if result.dtype != gradient.dtype or result.dtype != values.dtype:
        result = exponent * gradient
        result *= rows_for_gradient(values[index], gradient) ** (exponent - 1)
        return result
    result = np.empty_like(gradient)
    for rows in row_blocks(gradient):
        np.multiply(exponent, gradient[rows], out=result[rows])
        result[rows] *= rows_for_gradient(values[index[rows]], gradient) ** (exponent - 1)
    return result


def _pow_block(block: TensorBlock, exponent: float) -> TensorBlock:
    values = elementwise(_power, [block.values], (exponent,))
    return derived_block(
        [block],
        values,
        lambda parameter, gradient: gradient_rows(
            _power_gradient, [block.values], gradient, block, parameter, (exponent,)
        ),
    )


def pow(A: TensorMap, B: float | int) -> TensorMap:
    r"""The element-wise power ``A ** B`` for a scalar ``B``, lazily.

    Gradients follow, with :math:`A[s]` the value row each gradient row refers to,

    .. math::

        \nabla(A^B) = B \, \nabla A \, A[s]^{B - 1}.

    Parameters
    ----------
    A
        The base.
    B
        The exponent, a real number.

    Returns
    -------
    TensorMap
        A new map with ``A``'s metadata.

    Raises
    ------
    TypeError
        If ``A`` is not a TensorMap or ``B`` is not a scalar.
    """
    check_tensor(A, "A")
    if not is_scalar(B):
        raise TypeError(f"`B` must be a scalar value, not {type(B)}")
    exponent = float(B)
    return map_blocks(A, lambda block: _pow_block(block, exponent))
