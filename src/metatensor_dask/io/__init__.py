"""Reading and writing tensors: metatensor files, Zarr stores, metatensor objects."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names as _lazy_names

# Every name is imported on first access (PEP 562): zarr and dask.array (which imports
# xarray and pandas) take most of the package's import time, a worker appending batches
# to a store needs only some of the modules below, and .mts files need no zarr.
if TYPE_CHECKING:
    from .convert import (
        from_metatensor,
        load_block_buffer,
        load_buffer,
        load_labels_buffer,
        save_buffer,
        to_metatensor,
    )
    from .ingest import write_batches
    from .inspection import Verification, verify
    from .mts import load, load_block, load_labels, save
    from .zarr_discard import discard_append
    from .zarr_read import open_zarr
    from .zarr_write import to_zarr

_LAZY = {
    "discard_append": ".zarr_discard",
    "from_metatensor": ".convert",
    "to_metatensor": ".convert",
    "save_buffer": ".convert",
    "load_buffer": ".convert",
    "load_block_buffer": ".convert",
    "load_labels_buffer": ".convert",
    "load": ".mts",
    "load_block": ".mts",
    "load_labels": ".mts",
    "save": ".mts",
    "open_zarr": ".zarr_read",
    "to_zarr": ".zarr_write",
    "verify": ".inspection",
    "Verification": ".inspection",
    "write_batches": ".ingest",
}


__getattr__, __dir__ = _lazy_names(globals(), _LAZY)

__all__ = [
    "Verification",
    "discard_append",
    "from_metatensor",
    "load",
    "load_block",
    "load_block_buffer",
    "load_buffer",
    "load_labels",
    "load_labels_buffer",
    "open_zarr",
    "save",
    "save_buffer",
    "to_metatensor",
    "to_zarr",
    "verify",
    "write_batches",
]
