"""A dask array that also accepts ``values[rows, None, :]``, as the tutorial writes it.

dask 2026.8 fails on an integer-array index combined with ``None`` when the array has a
single chunk of one row (``'Alias' object has no attribute 'args'``). metatensor's
tutorial broadcasts values to gradient rows exactly so
(``block.values[gradient.samples["sample"], None, :]``), so ``TensorBlock.values`` hands
out this subclass, which applies such an index in two steps: the index without
``None``, then the new axes. Every other index goes to dask unchanged.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np

__all__ = ["BlockValues"]


def _is_integer_array(item: Any) -> bool:
    return isinstance(item, (np.ndarray, list, da.Array)) and np.asarray(item).dtype.kind in "iu"


def _split_new_axes(index: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]] | None:
    """``(index without None, index adding the new axes)``, or None to leave as is."""
    if not isinstance(index, tuple):
        return None
    if not any(item is None for item in index) or any(item is Ellipsis for item in index):
        return None
    arrays = [item for item in index if _is_integer_array(item)]
    if len(arrays) != 1 or np.ndim(arrays[0]) != 1:
        return None
    without_none = tuple(item for item in index if item is not None)
    new_axes = []
    for item in index:
        if item is None:
            new_axes.append(None)
        elif not isinstance(item, (int, np.integer)):
            new_axes.append(slice(None))
    return without_none, tuple(new_axes)


class BlockValues(da.Array):
    """A dask array whose ``__getitem__`` also handles ``[int_array, None, ...]``."""

    __slots__ = ()

    @classmethod
    def view_of(cls, array: da.Array) -> BlockValues:
        return cls(array.dask, array.name, array.chunks, meta=array._meta)

    def __getitem__(self, index: Any) -> Any:
        split = _split_new_axes(index)
        if split is None:
            return super().__getitem__(index)
        first, second = split
        return super().__getitem__(first)[second]
