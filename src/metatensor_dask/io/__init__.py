"""Reading and writing tensors: metatensor files, Zarr stores, metatensor objects."""

from __future__ import annotations

from .convert import from_metatensor, to_metatensor
from .inspection import Verification, verify
from .mts import load, load_block, load_labels, save
from .zarr_read import open_zarr
from .zarr_write import to_zarr

__all__ = [
    "Verification",
    "from_metatensor",
    "load",
    "load_block",
    "load_labels",
    "open_zarr",
    "save",
    "to_metatensor",
    "to_zarr",
    "verify",
]
