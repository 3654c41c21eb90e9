"""metatensor's TensorMap, TensorBlock and operations on Dask arrays stored in Zarr.

Usually imported as ``import metatensor_dask as mtd``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# _graph first: it refuses dask settings this package cannot work with
from . import _graph, config, operations  # noqa: F401  (_graph: checked on import)
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
    save,
    to_metatensor,
)
from .labels import Labels, LabelsEntry
from .operations import *  # noqa: F403  (the operations, as metatensor exports them)
from .tensor import TensorMap

__version__ = "0.1.0.dev0"


if TYPE_CHECKING:
    from .io import open_zarr, to_zarr, verify, write_batches


def __getattr__(name):
    # these import zarr: only when first used (see metatensor_dask.io)
    if name in ("open_zarr", "to_zarr", "verify", "write_batches"):
        from . import io

        value = getattr(io, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    "write_batches",
    *operations.__all__,
]
