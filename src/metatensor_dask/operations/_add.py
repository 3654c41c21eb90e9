"""``add``: element-wise sum of two tensors, or of a tensor and a scalar."""

from __future__ import annotations

import numpy as np

from ..block import TensorBlock
from ..tensor import TensorMap
from ._cast import cast_array
from ._chunkwise import elementwise
from ._utils import block_like, first_order_gradients, scalar_or_tensor_operation

__all__ = ["add"]


def _add_constant(values: np.ndarray, constant: float) -> np.ndarray:
    return constant + values


def add_block_constant(block: TensorBlock, constant: float) -> TensorBlock:
    """``block + constant``: the gradients are kept as they are, in the dtype of the
    new values when they change it (integers plus a float: float64, where metatensor
    keeps integer gradients that its blocks then refuse)."""
    values = elementwise(_add_constant, [block.values], (constant,))
    # the gradients as held: an item of a group of tiny blocks stays one (no dask
    # array, so no graph node, per block)
    gradients = {
        p: cast_array(g._held_values(), values.dtype) for p, g in first_order_gradients(block)
    }
    return block_like(block, values, gradients)


def add(A: TensorMap, B: float | int | TensorMap) -> TensorMap:
    r"""The element-wise sum of ``A`` and ``B``, lazily.

    Gradients follow

    .. math::

        \nabla(A + B) = \nabla A \quad (B \text{ scalar}), \qquad
        \nabla(A + B) = \nabla A + \nabla B \quad (B \text{ a TensorMap}).

    Parameters
    ----------
    A
        The first operand.
    B
        A scalar (any real number, numpy scalars included), or a TensorMap with the same
        keys (in any order), samples, components, properties and gradients as ``A``.

    Returns
    -------
    TensorMap
        A new map with ``A``'s metadata. Differently chunked operands are aligned on
        ``A``'s chunks.

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
        "add",
        add_block_constant,
        np.add,
    )
