"""Reading and writing tensors: metatensor files, Zarr stores, metatensor objects."""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING
from typing import Any as _Any

# Every name is imported on first access (PEP 562): zarr and dask.array (which imports
# xarray and pandas) take most of the package's import time, a worker appending batches
# to a store needs only some of the modules below, and .mts files need no zarr.
if TYPE_CHECKING:
    from .convert import from_metatensor, to_metatensor
    from .ingest import write_batches
    from .inspection import Verification, verify
    from .mts import load, load_block, load_labels, save
    from .zarr_read import open_zarr
    from .zarr_write import to_zarr

_LAZY = {
    "from_metatensor": ".convert",
    "to_metatensor": ".convert",
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


def __getattr__(name: str) -> _Any:
    if name in _LAZY:
        value = getattr(_importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
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
