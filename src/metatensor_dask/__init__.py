"""metatensor's TensorMap, TensorBlock and operations on Dask arrays stored in Zarr.

Usually imported as ``import metatensor_dask as mtd``.
"""

from __future__ import annotations

from . import config, operations
from .block import TensorBlock
from .errors import (
    DamagedFileError,
    DamagedStoreError,
    IncompleteStoreError,
    MetatensorDaskError,
    MetatensorDaskWarning,
    MetatensorError,
    NotEqualError,
    StoreFormatWarning,
    StoreLockedError,
    UnsafeNameError,
)
from .io import (
    from_metatensor,
    load,
    load_block,
    load_labels,
    open_zarr,
    save,
    to_metatensor,
    to_zarr,
    verify,
)
from .labels import Labels, LabelsEntry
from .operations import *  # noqa: F403  (the operations, as metatensor exports them)
from .tensor import TensorMap

__version__ = "0.1.0.dev0"

__all__ = [
    "DamagedFileError",
    "DamagedStoreError",
    "IncompleteStoreError",
    "Labels",
    "LabelsEntry",
    "MetatensorDaskError",
    "MetatensorDaskWarning",
    "MetatensorError",
    "NotEqualError",
    "StoreFormatWarning",
    "StoreLockedError",
    "TensorBlock",
    "TensorMap",
    "UnsafeNameError",
    "config",
    "from_metatensor",
    "load",
    "load_block",
    "load_labels",
    "save",
    "open_zarr",
    "to_metatensor",
    "to_zarr",
    "verify",
    *operations.__all__,
]
