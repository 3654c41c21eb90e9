"""The ``Delayed`` of a write found done, which writes nothing: ``to_zarr(...,
resume=True, compute=False)`` of a store that holds the write (or the append) already.
Its key tells it apart, so that a command says that nothing was written instead of
reporting the store's size as written."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import dask
from dask.delayed import Delayed

__all__ = ["nothing_to_write", "writes_nothing"]

_PREFIX = "metatensor-dask-nothing-to-write-"


def nothing_to_write(function: Callable[[], None]) -> Delayed:
    """The ``Delayed`` of a write found done, calling ``function`` (which releases the
    lock, or does nothing) when it runs."""
    return dask.delayed(function, pure=False)(dask_key_name=f"{_PREFIX}{uuid.uuid4().hex}")


def writes_nothing(delayed: Any) -> bool:
    """Whether ``delayed``, returned by ``to_zarr(..., compute=False)``, is that of a
    write found done: nothing is written when it is computed."""
    key = getattr(delayed, "key", None)
    return isinstance(key, str) and key.startswith(_PREFIX)
