"""``pow``: element-wise power of a tensor by a scalar exponent."""

from __future__ import annotations

import numpy as np

from ..block import TensorBlock
from ..tensor import TensorMap
from ._chunkwise import elementwise, gradient_rows
from ._utils import check_tensor, derived_block, is_scalar, map_blocks
from ._value_rows import ValueRows, gathered_rows, one_block

__all__ = ["pow"]


def _power(values: np.ndarray, exponent: float) -> np.ndarray:
    return values**exponent


def _power_gradient(
    values: np.ndarray, gradient: np.ndarray, index: np.ndarray, exponent: float
) -> np.ndarray:
    if exponent == 0.0:
        # A ** 0 is 1 everywhere, zero values included: its gradient is 0, where the
        # general formula gives 0 * inf = nan at zero values
        return np.zeros_like(exponent * gradient[:0], shape=gradient.shape)
    # metatensor's `exponent * gradient * rows ** (exponent - 1)`; for a large gradient
    # of the values' dtype, the power taken on the values chunk once (the same bits as on
    # gathered rows: it acts element by element), the gradient scaled block by block
    # (see `ValueRows`)
    dtype = values.dtype
    if one_block(gradient) or gradient.dtype != dtype or (exponent * gradient[:0]).dtype != dtype:
        rows = gathered_rows(values, index, gradient.ndim)
        return exponent * gradient * rows ** (exponent - 1)
    powered = values ** (exponent - 1)
    result = np.empty_like(gradient)
    layout = ValueRows(index, len(values), gradient.shape, gradient.itemsize)
    out, grad = layout.shaped(result), layout.shaped(gradient)
    for block in layout.blocks():
        scaled = np.multiply(exponent, grad[block], out=out[block])
        np.multiply(scaled, layout.rows(powered, block), out=scaled)
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

    For ``B = 0`` the gradients are zeros: ``A ** 0`` is 1 everywhere, zero values
    included, where metatensor-operations 0.5.0 gives ``0 * inf = nan`` for the
    gradient rows of zero values.

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
