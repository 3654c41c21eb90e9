"""Type aliases of the public API's arguments, shared by the signatures that take them."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

if TYPE_CHECKING:
    from zarr.abc.store import Store
    from zarr.storage import StorePath

__all__ = ["ChunksLike", "PathLike", "StoreLike", "ZarrMode"]

PathLike: TypeAlias = "str | os.PathLike[str]"
"""A file system path."""

StoreLike: TypeAlias = "str | os.PathLike[str] | Store | StorePath | dict[str, Any]"
"""Where a Zarr store lives: a directory path, an fsspec URL such as ``"s3://b/x.zarr"``
(with ``storage_options``), or a zarr store object; as zarr's own ``StoreLike``."""

ChunksLike: TypeAlias = "int | str | None"
"""How to chunk the sample axis: ``None`` (the stored or default chunking), an int
(value rows per chunk) or a size such as ``"64MiB"`` (target for the largest of a block's
co-partitioned arrays, usually a gradient)."""

ZarrMode = Literal["w-", "w", "a", "r+"]
"""Write modes, as xarray's: ``"w-"`` create (fail if it exists), ``"w"`` overwrite,
``"a"`` add blocks or gradients to a complete store, ``"r+"`` rewrite the data of
existing arrays with identical metadata."""
