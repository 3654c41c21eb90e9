"""``abs``: element-wise absolute value."""

from __future__ import annotations

import numpy as np

from ..block import TensorBlock
from ..tensor import TensorMap
from ._chunkwise import elementwise, gradient_rows
from ._utils import check_tensor, derived_block, map_blocks
from ._value_rows import ValueRows, gathered_rows, one_block

__all__ = ["abs"]


def _abs_values(values: np.ndarray) -> np.ndarray:
    # the modulus of complex values stays in their complex dtype, as in metatensor, so
    # that values and gradients keep one dtype
    return np.abs(values).astype(values.dtype, copy=False)


def _complex_abs_gradient(signs: np.ndarray, gradient: np.ndarray, index: np.ndarray) -> np.ndarray:
    # |z| is real: its derivative along a real parameter is Re(conj(z / |z|) dz)
    rows = gathered_rows(np.conj(signs), index, gradient.ndim)
    return (gradient * rows).real.astype(gradient.dtype)


def _abs_gradient(values: np.ndarray, gradient: np.ndarray, index: np.ndarray) -> np.ndarray:
    # metatensor's `gradient * sign(values)[s]`; block by block (see `ValueRows`) for a
    # large gradient of the values' dtype
    signs = np.sign(values)
    if np.iscomplexobj(signs):
        return _complex_abs_gradient(signs, gradient, index)
    if one_block(gradient) or signs.dtype != gradient.dtype:
        return gradient * gathered_rows(signs, index, gradient.ndim)
    result = np.empty_like(gradient)
    layout = ValueRows(index, len(values), gradient.shape, gradient.itemsize)
    out, grad = layout.shaped(result), layout.shaped(gradient)
    for block in layout.blocks():
        np.multiply(grad[block], layout.rows(signs, block), out=out[block])
    return result


def _abs_block(block: TensorBlock) -> TensorBlock:
    return derived_block(
        [block],
        elementwise(_abs_values, [block.values]),
        lambda parameter, gradient: gradient_rows(
            _abs_gradient, [block.values], gradient, block, parameter
        ),
    )


def abs(A: TensorMap) -> TensorMap:
    r"""The element-wise absolute value of ``A``, lazily.

    Gradients follow, with :math:`A[s]` the value row each gradient row refers to,

    .. math::

        \nabla |A| = \nabla A \, \mathrm{sign}(A[s])

    (zero where :math:`A[s] = 0`, as numpy's ``sign``). For complex values, the
    modulus keeps their complex dtype (as in metatensor) and its gradient is
    :math:`\mathrm{Re}(\overline{\mathrm{sign}(A[s])} \, \nabla A)`, with
    :math:`\mathrm{sign}(z) = z / |z|`: metatensor-operations 0.5.0 gives
    :math:`\mathrm{sign}(A[s]) \, \nabla A`, which is right only for real values.

    Parameters
    ----------
    A
        The tensor.

    Returns
    -------
    TensorMap
        A new map with ``A``'s metadata.

    Raises
    ------
    TypeError
        If ``A`` is not a TensorMap.
    """
    check_tensor(A, "A")
    return map_blocks(A, _abs_block)
