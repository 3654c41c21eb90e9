"""A store for the I/O tests that records the keys read through it."""

from __future__ import annotations

from zarr.storage import WrapperStore


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
