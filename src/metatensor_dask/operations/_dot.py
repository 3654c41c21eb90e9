"""``dot``: contraction of the properties of two tensors, ``A @ B.T`` per block."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..block import TensorBlock
from ..tensor import TensorMap
from ._chunkwise import is_lazy, per_row_chunk
from ._grouping import single_chunk_shape, tiny_groups
from ._manipulation_utils import as_dask
from ._utils import (
    blocks_by_key,
    check_same_keys_raise,
    check_tensor,
    derived_block,
    grouped,
)

__all__ = ["dot"]


def _dot_rows(rows: np.ndarray, other: np.ndarray) -> np.ndarray:
    # the same numpy calls as metatensor, so that results match bit for bit
    if rows.ndim == 2:
        return rows @ other.T
    return np.dot(rows, other.T)


def _dotted(array: Any, other: Any, tail: tuple[int, ...], dtype: Any) -> Any:
    """``_dot_rows`` of ``array`` and ``other``: a call of the active groups for tiny
    single chunks (one task for many blocks), else one task per row chunk."""
    groups = None
    if is_lazy(array) or is_lazy(other):
        # a computed operand next to a lazy one: a single-chunk array holding it
        array, other = as_dask(array), as_dask(other)
        groups = tiny_groups([array, other])
    if groups is not None:
        shape = (single_chunk_shape(array)[0], *tail)
        return groups.record("dot", _dot_rows, [array, other], (), shape, dtype)
    return per_row_chunk(_dot_rows, array, [other], tail, dtype)


def _dot_block(block_1: TensorBlock, block_2: TensorBlock) -> TensorBlock:
    if block_1.properties != block_2.properties:
        raise ValueError("TensorBlocks in `dot` should have the same properties")
    if len(block_2.components) > 0:
        raise ValueError("the second TensorMap in `dot` should not have components")
    if len(block_2.gradients_list()) > 0:
        raise ValueError("the second TensorMap in `dot` should not have gradients")
    dtype = np.result_type(block_1.dtype, block_2.dtype)
    n_out = len(block_2.samples)
    values = _dotted(block_1.values, block_2.values, (*block_1.shape[1:-1], n_out), dtype)
    return derived_block(
        [block_1],
        values,
        lambda _, gradient: _dotted(
            gradient[0], block_2.values, (*gradient[0].shape[1:-1], n_out), dtype
        ),
        properties=block_2.samples,
    )


def dot(tensor_1: TensorMap, tensor_2: TensorMap) -> TensorMap:
    r"""The product of the values of each block with the transposed values of the block
    with the same key in ``tensor_2``, lazily: ``A @ B.T``, contracting properties.

    The result has the samples and components of ``tensor_1`` and, as properties, the
    samples of ``tensor_2``. Only ``tensor_1`` may have gradients:

    .. math::

        \nabla (A \cdot B^T) = \nabla A \cdot B^T.

    Each row chunk of ``tensor_1`` (values and gradients) gives one task; the blocks
    of ``tensor_2`` are given whole to every task, they should be small (weights).

    Parameters
    ----------
    tensor_1
        The first operand.
    tensor_2
        The second operand: same keys (in any order) and properties, no components,
        no gradients.

    Returns
    -------
    TensorMap
        A new map with the keys of ``tensor_1``.

    Raises
    ------
    TypeError
        If an operand is not a TensorMap.
    NotEqualError
        If the keys differ.
    ValueError
        If properties differ, or ``tensor_2`` has components or gradients.
    """
    check_tensor(tensor_1, "tensor_1")
    check_tensor(tensor_2, "tensor_2")
    check_same_keys_raise(tensor_1, tensor_2, "dot")
    pairs = zip(tensor_1.blocks(), blocks_by_key(tensor_1, tensor_2), strict=True)
    # tiny blocks are multiplied by a few grouped tasks
    return grouped(tensor_1.keys, lambda: [_dot_block(a, b) for a, b in pairs])
