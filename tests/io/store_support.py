"""For the I/O tests: a store that records the keys read through it, and a tensor whose
values fail when computed (an append of it is interrupted)."""

from __future__ import annotations

import metatensor
import numpy as np
from zarr.storage import WrapperStore

import metatensor_dask as mtd


def _fail(rows: np.ndarray) -> np.ndarray:
    raise RuntimeError("the source failed")


def failing(tensor: metatensor.TensorMap) -> mtd.TensorMap:
    """``tensor`` (one block), whose values fail when computed, its gradients kept: an
    append of it stops after its record and documents are written."""
    theirs = mtd.from_metatensor(tensor)
    block = theirs.block(0)
    values = block.values.map_blocks(_fail, dtype=block.values.dtype)
    failed = mtd.TensorBlock(values, block.samples, block.components, block.properties)
    for parameter, gradient in block.gradients():
        failed.add_gradient(parameter, gradient)
    return mtd.TensorMap(theirs.keys, [failed])


class CountingStore(WrapperStore):
    """Records every key read (``reads``, in order)."""

    def __init__(self, store):
        super().__init__(store)
        self.reads: list[str] = []

    async def get(self, key, prototype, byte_range=None):
        self.reads.append(key)
        return await super().get(key, prototype, byte_range)

    async def get_partial_values(self, prototype, key_ranges):
        key_ranges = list(key_ranges)
        self.reads.extend(key for key, _ in key_ranges)
        return await super().get_partial_values(prototype, key_ranges)

    def _with_store(self, store):
        return self  # keep counting when zarr asks for a read-only copy

    def with_read_only(self, read_only=False):
        return self
