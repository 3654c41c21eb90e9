"""metatensor's TensorMap, TensorBlock and operations on Dask arrays stored in Zarr.

Usually imported as ``import metatensor_dask as mtd``.

The public names are imported on first use (PEP 562): ``dask.array`` (which imports
xarray and pandas when they are installed) and zarr take most of the package's import
time, and a process that only appends batches to a store (a worker of
``write_batches``) needs neither ``dask.array`` nor the operations.
"""

from __future__ import annotations

import sys as _sys
from typing import TYPE_CHECKING

from dask import config as _dask_config

from . import _huge_pages, config
from ._lazy import lazy_names as _lazy_names
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
from .operations import __all__ as _operations

__version__ = "0.1.0.dev0"

_huge_pages.apply()

if TYPE_CHECKING:
    from . import block, errors, io, labels, operations, tensor  # noqa: F401
    from .block import TensorBlock
    from .io import (
        discard_append,
        from_metatensor,
        load,
        load_block,
        load_labels,
        open_zarr,
        save,
        to_metatensor,
        to_zarr,
        verify,
        write_batches,
    )
    from .labels import Labels, LabelsEntry
    from .operations import *  # noqa: F403  (the operations, as metatensor exports them)
    from .tensor import TensorMap

#: Where each public name lives, imported on first access.
_LAZY = {
    "TensorBlock": ".block",
    "Labels": ".labels",
    "LabelsEntry": ".labels",
    "TensorMap": ".tensor",
    **dict.fromkeys(
        [
            "discard_append",
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
        ],
        ".io",
    ),
    **dict.fromkeys(_operations, ".operations"),
}
#: The modules that an ``import metatensor_dask`` used to make attributes of the package.
_SUBMODULES = ("block", "errors", "io", "labels", "operations", "tensor")


__getattr__, __dir__ = _lazy_names(globals(), _LAZY, _SUBMODULES)


def _refuse_query_planning() -> None:
    """Refuse dask's array expressions now, on import, without importing ``dask.array``
    when it is not imported yet: ``dask.array`` chooses them from the
    ``array.query-planning`` setting on its first import. Otherwise ``_graph`` checks
    when first imported: by ``TensorBlock``'s module, before any array of this package
    is built."""
    if "dask.array" in _sys.modules or _dask_config.get("array.query-planning", None):
        from . import _graph  # noqa: F401  (raises when refused)


_refuse_query_planning()


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
    "discard_append",
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
    *_operations,
]
