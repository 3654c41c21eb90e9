"""Reading and writing tensors: metatensor files, Zarr stores, metatensor objects."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .convert import from_metatensor, to_metatensor
from .mts import load, load_block, load_labels, save

# zarr (and what it imports) takes a third of the package's import time and is not needed
# to work with .mts files: open_zarr, to_zarr and verify are imported on first access.
if TYPE_CHECKING:
    from .ingest import write_batches
    from .inspection import Verification, verify
    from .zarr_read import open_zarr
    from .zarr_write import to_zarr

_LAZY = {
    "open_zarr": ".zarr_read",
    "to_zarr": ".zarr_write",
    "verify": ".inspection",
    "Verification": ".inspection",
    "write_batches": ".ingest",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_LAZY})


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
    "write_batches",
]
