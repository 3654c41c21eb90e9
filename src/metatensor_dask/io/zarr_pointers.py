"""Row pointers of an opened store, read and checked on first use.

A gradient whose rows are grouped by sample has a stored row pointer (see
:mod:`metatensor_dask._partition`). Opening a store needs it only to cut the gradient
of a block of several values chunks into matching chunks; for a block of one chunk
(most blocks of a map of many small blocks), nothing needs it until an operation pairs
value rows with gradient rows, or the gradient samples are loaded. Such pointers are
read then, through :class:`StoredPointers` (with the next ones, which an operation over
the blocks asks for next), and each is checked before any number of it is used: a
damaged pointer still raises :class:`~metatensor_dask.errors.DamagedStoreError`, at its
first use.

The gradient samples of such a block are :class:`PointedSamples`: lazy Labels that
answer the request for their row pointer (:meth:`Labels._derived
<metatensor_dask.labels.Labels._derived>` with the key of
:func:`~metatensor_dask._partition.block_row_pointer`) with the stored one, instead of
the one computed from the entries, which would load them.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ..labels import Labels
from .zarr_identity import overwrite_told
from .zarr_integrity import damaged
from .zarr_store import ArrayRef, _local_root, read_arrays, read_healthy_arrays

if TYPE_CHECKING:
    from zarr.abc.store import Store

    from .zarr_layout import ArrayInfo

__all__ = ["READ_AHEAD", "READ_AHEAD_BYTES", "PointedSamples", "StoredPointers", "checked_pointer"]


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


READ_AHEAD = 1024
"""Row pointers read together from a local store, at most: the one asked for and those
registered after it, each a few small files whose read call costs more than their
bytes (a map's operations go through its blocks in order)."""

READ_AHEAD_BYTES = 4 * 2**20
"""Bytes of the row pointers read together from a local store, at most."""


class StoredPointers:
    """The row pointers of one opened store, each read and checked once.

    The first time a pointer is asked for, it is read together with the pointers not
    read yet that were registered after it (then those before it), in one bulk read: on
    a local store at most :data:`READ_AHEAD` pointers and :data:`READ_AHEAD_BYTES`; on
    other stores, where each read is a round trip, every pointer not read yet, in one
    concurrent batch. Each is checked only when asked for; one that could not be read
    in a batch (a chunk missing or damaged) is read alone then, which raises.

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
        #: Whether a batch is bounded (local stores) or brings every pointer not read.
        self._bounded = _local_root(store) is not None
        #: Pointers registered: path -> (array, parent rows, rows), in registration order.
        self._registered: dict[str, tuple[ArrayInfo, int, int]] = {}
        self._order: list[str] = []
        self._place: dict[str, int] = {}
        #: No pointer registered before this place is unread.
        self._lowest_unread = 0
        #: Pointers registered and not read yet, candidates for the next batch.
        self._unread: set[str] = set()
        #: Pointers read in a batch, not checked yet.
        self._read: dict[str, np.ndarray] = {}
        self._checked: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def add(self, info: ArrayInfo, parent_rows: int, rows: int) -> Callable[[], np.ndarray]:
        """Register the pointer ``info`` over ``parent_rows`` value rows and ``rows``
        gradient rows; returns the function that reads (once) and checks it."""
        path = info.path
        self._registered[path] = (info, parent_rows, rows)
        self._place[path] = len(self._order)
        self._order.append(path)
        self._unread.add(path)
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
            info, parent_rows, rows = self._registered[path]
            with self._told(f"the row pointer '{path}'"):
                value = self._read.pop(path, None)
                if value is None and path in self._unread:
                    value = self._read_batch(path)
                if value is None:  # not read, or damaged: read alone, raising the damage
                    (value,) = read_arrays([self._ref(info)])
                pointer = checked_pointer(self._where, path, value, parent_rows, rows)
            self._checked[path] = pointer
            return pointer

    def _read_batch(self, path: str) -> np.ndarray | None:
        """The stored content of the pointer at ``path``, read with the next ones not
        read yet (kept for their first use); ``None`` when it could not be read."""
        paths = self._next_unread(path)
        values = read_healthy_arrays([self._ref(self._registered[p][0]) for p in paths])
        self._unread.difference_update(paths)
        while (
            self._lowest_unread < len(self._order)
            and self._order[self._lowest_unread] not in self._unread
        ):
            self._lowest_unread += 1
        for other, value in zip(paths[1:], values[1:], strict=True):
            if value is not None:
                self._read[other] = value
        return values[0]

    def _next_unread(self, path: str) -> list[str]:
        """``path``, then the pointers not read yet registered after it, then those
        before it, within the bounds of a batch."""
        first = self._place[path]
        found, size = [path], _nbytes(self._registered[path][0])
        after = range(first + 1, len(self._order))
        for index in itertools.chain(after, range(self._lowest_unread, first)):
            if self._bounded and len(found) == READ_AHEAD:
                break
            other = self._order[index]
            if other not in self._unread:
                continue
            size += _nbytes(self._registered[other][0])
            if self._bounded and size > READ_AHEAD_BYTES:
                break
            found.append(other)
        return found

    def _told(self, what: str) -> AbstractContextManager[None]:
        return overwrite_told(self._store, self._where, self._store_id, what)

    def _ref(self, info: ArrayInfo) -> ArrayRef:
        return ArrayRef(self._store, info.path, info.document, store_id=info.store_id)


def _nbytes(info: ArrayInfo) -> int:
    return math.prod(info.shape) * info.dtype.itemsize


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
