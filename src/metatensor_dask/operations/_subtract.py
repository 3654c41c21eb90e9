"""``subtract``: element-wise difference of two tensors, or of a tensor and a scalar."""

from __future__ import annotations

import numpy as np

from ..block import TensorBlock
from ..tensor import TensorMap
from ._add import add_block_constant
from ._utils import scalar_or_tensor_operation

__all__ = ["subtract"]


def _subtract(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a - b`` in the dtype of metatensor's ``a + b * -1.0`` (float64 for integers).
    The same bits for real dtypes, where negating is exact; for complex ones the IEEE
    difference, where the complex product ``b * -1.0`` has NaN parts (inf * 0)."""
    dtype = np.result_type(a.dtype, np.result_type(b.dtype, -1.0))
    return np.subtract(a, b, dtype=dtype)


def _subtract_block_constant(block: TensorBlock, constant: float) -> TensorBlock:
    # metatensor subtracts a scalar by adding its negation
    return add_block_constant(block, -constant)


def subtract(A: TensorMap, B: float | int | TensorMap) -> TensorMap:
    r"""The element-wise difference ``A - B``, lazily.

    Gradients follow

    .. math::

        \nabla(A - B) = \nabla A \quad (B \text{ scalar}), \qquad
        \nabla(A - B) = \nabla A - \nabla B \quad (B \text{ a TensorMap}).

    Parameters
    ----------
    A
        The first operand.
    B
        A scalar, or a TensorMap with the same metadata as ``A`` (keys in any order).

    Returns
    -------
    TensorMap
        A new map with ``A``'s metadata (bit-identical to metatensor's
        ``add(A, multiply(B, -1))`` for real dtypes; for complex ones, ``A - B`` where
        metatensor's complex product by -1 turns parts next to an infinite part into
        NaN and negative zeros into positive ones).

    Raises
    ------
    TypeError
        If ``A`` is not a TensorMap, or ``B`` neither a TensorMap nor a scalar.
    NotEqualError
        If the metadata of ``A`` and ``B`` differ (the message names ``'add'``, as
        metatensor's does).
    """
    # metatensor subtracts by adding -B: its checks and messages name 'add'
    return scalar_or_tensor_operation(
        A,
        B,
        "add",
        _subtract_block_constant,
        _subtract,
    )
