"""``add``: element-wise sum of two tensors, or of a tensor and a scalar."""

from __future__ import annotations

import numpy as np

from ..block import TensorBlock, short_dtype
from ..errors import invalid_parameter
from ..tensor import TensorMap
from ._chunkwise import elementwise
from ._utils import block_like, first_order_gradients, scalar_or_tensor_operation

__all__ = ["add"]


def _add_constant(values: np.ndarray, constant: float) -> np.ndarray:
    return constant + values


def add_block_constant(block: TensorBlock, constant: float) -> TensorBlock:
    """``block + constant``: the gradients are kept as they are (refused, as metatensor
    refuses them, when the values change dtype: integers plus a float)."""
    values = elementwise(_add_constant, [block.values], (constant,))
    if values.dtype != block.dtype and block.gradients_list():
        raise invalid_parameter(
            f"the gradient values have dtype '{short_dtype(block.dtype)}' but the "
            f"block values have dtype '{short_dtype(values.dtype)}'"
        )
    # the gradients as held: an item of a group of tiny blocks stays one (no dask
    # array, so no graph node, per block)
    gradients = {p: g._held_values() for p, g in first_order_gradients(block)}
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
