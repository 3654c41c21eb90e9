"""Reading and writing tensors: metatensor files, Zarr stores, metatensor objects."""

from __future__ import annotations

from .convert import from_metatensor, to_metatensor

__all__ = ["from_metatensor", "to_metatensor"]
