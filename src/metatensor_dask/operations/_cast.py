"""The arrays of a map cast to another dtype, for ``TensorMap.to``."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._collection import materialized
from ..block import TensorBlock
from ..tensor import TensorMap
from ._chunkwise import elementwise
from ._utils import grouped

__all__ = ["cast"]


def cast_now(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``array`` as ``dtype`` (numpy, for one task)."""
    return array.astype(dtype)


def cast_array(array: Any, dtype: np.dtype) -> Any:
    """``array`` (as a block holds it) as ``dtype``: itself when it already is."""
    if np.dtype(array.dtype) == dtype:
        return array
    return elementwise(cast_now, [materialized(array)], (dtype,))


def _cast_block(block: TensorBlock, dtype: np.dtype) -> TensorBlock:
    arrays = [cast_array(array, dtype) for array in block._raw_arrays()]
    return block._with_arrays(arrays)


def cast(tensor: TensorMap, dtype: Any) -> TensorMap:
    """``tensor`` with its values and gradients (of every block) as ``dtype``.

    Parameters
    ----------
    tensor
        The map; it is not modified.
    dtype
        A numeric dtype.

    Returns
    -------
    TensorMap
        A map with the same metadata and ``info``: computed arrays are cast at once;
        tiny single-chunk dask arrays by a few grouped tasks for the whole map, others
        chunk by chunk. Arrays already of ``dtype`` are kept.
    """
    wanted = np.dtype(dtype)
    return grouped(
        tensor.keys, lambda: [_cast_block(b, wanted) for b in tensor.blocks()], tensor.info()
    )
