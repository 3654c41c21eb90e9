"""The only module that imports zarr-python's private names.

zarr 3.1 has no public equivalent of these two functions; everything else this package
uses from zarr is public (``zarr.Array``, ``zarr.AsyncArray``, ``zarr.storage``,
``zarr.buffer``, ``zarr.abc.store``). They are why ``pyproject.toml`` pins
``zarr>=3.1.6,<3.2``: a zarr release may move or remove them, and
``tests/io/test_zarr_internals.py`` then fails naming the missing one.

* :func:`sync` runs a coroutine on zarr's own event loop. Stores (fsspec ones in
  particular) are bound to that loop, so the asynchronous store API used for bulk I/O
  must run there, not under :func:`asyncio.run`.
* :func:`make_store_path` resolves any ``StoreLike`` (path, URL with
  ``storage_options``, store object) to a store, exactly as ``zarr.open`` does.
"""

from __future__ import annotations

from zarr.core.sync import sync
from zarr.storage._common import make_store_path

__all__ = ["PRIVATE_NAMES", "make_store_path", "sync"]

#: ``(module, name)`` of every private zarr name imported here, for the test.
PRIVATE_NAMES = (("zarr.core.sync", "sync"), ("zarr.storage._common", "make_store_path"))
