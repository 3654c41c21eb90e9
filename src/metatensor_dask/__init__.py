"""metatensor's TensorMap, TensorBlock and operations on Dask arrays stored in Zarr.

Usually imported as ``import metatensor_dask as mtd``.
"""

from __future__ import annotations

# _graph first: it refuses dask settings this package cannot work with
from . import _graph, config, operations  # noqa: F401  (_graph: checked on import)
from .block import TensorBlock
from .errors import (
    DamagedFileError,
    DamagedStoreError,
    IncompleteStoreError,
    MetatensorDaskError,
    MetatensorError,
    NotEqualError,
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
    "MetatensorError",
    "NotEqualError",
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
    *operations.__all__,
]
