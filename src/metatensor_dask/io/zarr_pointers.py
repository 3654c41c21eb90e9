"""Row pointers of an opened store, read and checked on first use.

A gradient whose rows are grouped by sample has a stored row pointer (see
:mod:`metatensor_dask._partition`). Opening a store needs it only to cut the gradient
of a block of several values chunks into matching chunks; for a block of one chunk
(most blocks of a map of many small blocks), nothing needs it until an operation pairs
value rows with gradient rows, or the gradient samples are loaded. Such pointers are
read then, through :class:`StoredPointers`, and checked before any number of them is
used: a damaged pointer still raises
:class:`~metatensor_dask.errors.DamagedStoreError`, at its first use.

The gradient samples of such a block are :class:`PointedSamples`: lazy Labels that
answer the request for their row pointer (:meth:`Labels._derived
<metatensor_dask.labels.Labels._derived>` with the key of
:func:`~metatensor_dask._partition.block_row_pointer`) with the stored one, instead of
the one computed from the entries, which would load them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ..errors import MetatensorDaskError
from ..labels import Labels
from .zarr_identity import overwrite_told
from .zarr_integrity import damaged
from .zarr_store import ArrayRef, _local_root, read_arrays

if TYPE_CHECKING:
    from zarr.abc.store import Store

    from .zarr_layout import ArrayInfo

__all__ = ["PointedSamples", "StoredPointers", "checked_pointer"]


def checked_pointer(where: str, path: str, pointer: Any, parent_rows: int, rows: int) -> np.ndarray:
    """``pointer`` as read-only int64, once checked to be a row pointer over
    ``parent_rows`` value rows ending at ``rows`` gradient rows.

    Raises
    ------
    DamagedStoreError
        When it does not start at 0, end at ``rows`` or decreases somewhere.
    """
    pointer = np.asarray(pointer, dtype=np.int64)
    if (
        pointer.shape != (parent_rows + 1,)
        or pointer[0] != 0
        or pointer[-1] != rows
        or (pointer[1:] < pointer[:-1]).any()
    ):
        raise damaged(where, f"'{path}' is not a non-decreasing row pointer from 0 to {rows}")
    if pointer.flags.writeable:
        pointer = pointer.view()
        pointer.flags.writeable = False
    return pointer


class StoredPointers:
    """The row pointers of one opened store, each read and checked once.

    On a local store a pointer is read when first asked for (a few small files); on
    other stores, where each read is a round trip, the first one asked for brings every
    pointer registered in one concurrent batch (operations go through all the blocks
    of a map), each still checked only when asked for.

    Parameters
    ----------
    store
        The store.
    where
        Its description, for messages.
    store_id
        Its id when opened (format 4): a pointer that is missing, or not a row pointer
        over its rows, in a store overwritten since, is refused as such (see
        :func:`~.zarr_identity.overwrite_told`).
    """

    def __init__(self, store: Store, where: str, store_id: str | None = None):
        self._store = store
        self._where = where
        self._store_id = store_id
        #: Whether pointers are read one by one (local stores, or after the batch).
        self._one_by_one = _local_root(store) is not None
        #: Pointers registered, not asked for yet: path -> (array, parent rows, rows).
        self._pending: dict[str, tuple[ArrayInfo, int, int]] = {}
        #: Pointers read in a batch, not checked yet.
        self._read: dict[str, np.ndarray] = {}
        self._checked: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def add(self, info: ArrayInfo, parent_rows: int, rows: int) -> Callable[[], np.ndarray]:
        """Register the pointer ``info`` over ``parent_rows`` value rows and ``rows``
        gradient rows; returns the function that reads (once) and checks it."""
        self._pending[info.path] = (info, parent_rows, rows)
        path = info.path
        return lambda: self.get(path)

    def read_now(self, infos: list[tuple[ArrayInfo, int, int]]) -> list[np.ndarray]:
        """The pointers ``(array, parent rows, rows)``, read together now and checked."""
        with self._told("the row pointers"):
            values = read_arrays([self._ref(info) for info, _, _ in infos])
        found = []
        for (info, parent_rows, rows), value in zip(infos, values, strict=True):
            with self._told(f"the row pointer '{info.path}'"):
                pointer = checked_pointer(self._where, info.path, value, parent_rows, rows)
            self._checked[info.path] = pointer
            found.append(pointer)
        return found

    def get(self, path: str) -> np.ndarray:
        """The checked pointer at ``path`` (registered with :meth:`add`); threads
        asking for pointers at once read each once."""
        found = self._checked.get(path)
        if found is not None:
            return found
        with self._lock:
            found = self._checked.get(path)
            if found is not None:
                return found
            _, parent_rows, rows = self._pending[path]
            with self._told(f"the row pointer '{path}'"):
                value = self._read.pop(path, None)
                if value is None:
                    value = self._fetch(path)
                pointer = checked_pointer(self._where, path, value, parent_rows, rows)
            self._checked[path] = pointer
            del self._pending[path]
            return pointer

    def _fetch(self, path: str) -> np.ndarray:
        """The stored content of the pointer at ``path``, and on a remote store those of
        every pointer not read yet (kept for their first use)."""
        (info, _, _) = self._pending[path]
        if not self._one_by_one:
            self._one_by_one = True
            others = [p for p in self._pending if p != path]
            refs = [self._ref(info), *(self._ref(self._pending[p][0]) for p in others)]
            try:
                values = read_arrays(refs)
            except MetatensorDaskError:
                pass  # one of them is damaged: each raises when asked for
            else:
                self._read.update(zip(others, values[1:], strict=True))
                return values[0]
        (value,) = read_arrays([self._ref(info)])
        return value

    def _told(self, what: str) -> AbstractContextManager[None]:
        return overwrite_told(self._store, self._where, self._store_id, what)

    def _ref(self, info: ArrayInfo) -> ArrayRef:
        return ArrayRef(self._store, info.path, info.document)


class PointedSamples(Labels):
    """Lazy gradient samples (see :meth:`Labels.lazy`) whose row pointer is stored:
    asked for it (by :func:`~metatensor_dask._partition.block_row_pointer`), they give
    the stored one, read and checked on first use, without loading their entries."""

    _pointer: Callable[[], np.ndarray]
    _parent_rows: int

    @classmethod
    def stored(
        cls,
        names: list[str],
        count: int,
        load: Callable[[], np.ndarray],
        digest: str | None,
        stored: Any,
        pointer: Callable[[], np.ndarray],
        parent_rows: int,
    ) -> PointedSamples:
        """:meth:`Labels.lazy` with these arguments, whose row pointer over
        ``parent_rows`` value rows is ``pointer()``."""
        samples = cast(PointedSamples, cls.lazy(names, count, load, digest, stored))
        samples._pointer = pointer
        samples._parent_rows = parent_rows
        return samples

    def _derived(self, key: Any, make: Callable[[], Any]) -> Any:
        # the key of `block_row_pointer`; were it changed, the tests of stored
        # pointers read on first use find the samples loaded instead
        if key == ("row pointer", self._parent_rows):
            return super()._derived(key, self._pointer)
        return super()._derived(key, make)
