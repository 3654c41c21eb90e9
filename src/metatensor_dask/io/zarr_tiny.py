"""The tiny blocks of Zarr stores, read by groups.

A store of many tiny blocks would give one dask array (a graph layer, a task, a name
hashed) per values array of every block and gradient. Instead, the values arrays of
neighbouring tiny blocks are items of a group: one task reads their chunk files and
returns their arrays. Each chunk is read as when read alone
(:func:`~metatensor_dask.io.zarr_store.read_plain_region` for plain codecs, whose
files a group fetches together, :func:`~metatensor_dask.io.zarr_store.read_region` for
the others), so every check of a single read happens for each chunk of a group: sizes
and checksums, the chunk table and store id of format 4 (:mod:`.zarr_identity`),
missing chunks (zeros only where the layout says so). A block holds a
:class:`~metatensor_dask._collection.GroupItem` per values array; computing one array
alone (``block.values.compute()``) reads its chunk alone.

A block is tiny when each values array (its own and its gradients') is opened in one
chunk, and all of them hold at most :data:`TINY_BYTES`: decided from the layout,
without reading anything. Stored chunks do not matter: the block of a store grown by
appends of a few rows each holds a chunk per append, and opened in one values chunk
(``open_zarr(store, chunks="auto")``), its group task reads them all (a gradient whose
rows are not grouped by sample is opened in its stored chunks, so it must be stored in
one).
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.storage import LocalStore

from .. import _graph
from .._collection import GroupItem
from .._gc import without_collector
from ._mts_tiny import GROUP_BYTES, TINY_BYTES
from .chunks import unpointed_gradient_rows
from .zarr_store import ArrayRef, read_plain_region, read_plain_regions, read_region

if TYPE_CHECKING:
    from zarr.abc.store import Store

    from . import zarr_layout as layout

__all__ = ["GROUP_BYTES", "GROUP_FILES", "TINY_BYTES", "group_items", "tiny_values"]

GROUP_FILES = 1024
"""Chunk files that one group task reads at most: files of a few KiB cost a system call
or a store request each, and several groups keep every thread busy."""


def tiny_values(block: layout.BlockLayout, rows: tuple[int, ...]) -> list[layout.ArrayInfo]:
    """The values arrays of ``block`` and of its gradients (depth first, values first)
    when the block is tiny (see the module), opened with values chunks ``rows``; an
    empty list when it is not."""
    if len(rows) != 1:
        return []
    found = _single_chunk_values(block)
    if found is None or sum(_nbytes(info) for info in found) > TINY_BYTES:
        return []
    return found


def _single_chunk_values(block: layout.BlockLayout) -> list[layout.ArrayInfo] | None:
    """The values arrays of ``block`` (opened in one values chunk) and of its
    gradients, or ``None`` when one of them is opened in more than one chunk: a
    gradient whose rows are not grouped by sample (no row pointer) is opened in its
    stored chunks; one whose rows are, in one chunk with its values."""
    found = [block.values]
    for gradient in block.gradients.values():
        stored = gradient.values
        if (
            gradient.row_pointer is None
            and len(unpointed_gradient_rows(stored.shape, stored.chunk_rows)) > 1
        ):
            return None
        inner = _single_chunk_values(gradient)
        if inner is None:
            return None
        found.extend(inner)
    return found


def _nbytes(info: layout.ArrayInfo) -> int:
    return int(np.prod(info.shape)) * info.dtype.itemsize


@dataclass(frozen=True)
class _Group:
    """What a group task reads: the whole of each array of ``infos``, in ``store``
    (opaque to dask: one argument, not walked)."""

    store: Store
    infos: tuple[layout.ArrayInfo, ...]


def group_source(argument: Any) -> tuple[Store, str] | None:
    """The store and the first array that a task reads, when ``argument`` (the first
    argument of the task) is a group of tiny blocks, else ``None``."""
    if isinstance(argument, _Group) and argument.infos:
        return argument.store, argument.infos[0].path
    return None


def group_items(
    store: Store, metadata: str, where: str, infos: list[layout.ArrayInfo]
) -> list[GroupItem]:
    """An item per array of ``infos`` (in order), consecutive arrays gathered in groups
    of at most :data:`GROUP_BYTES` and :data:`GROUP_FILES` arrays. ``metadata`` digests
    the store's metadata and ``where`` describes the store (see
    :func:`~metatensor_dask.io.zarr_read.read_layout`): with the paths read, they name
    each group's content."""
    items: list[GroupItem] = []
    first = 0
    while first < len(infos):
        last, total = first + 1, _nbytes(infos[first])
        while last < len(infos) and last - first < GROUP_FILES:
            total += _nbytes(infos[last])
            if total > GROUP_BYTES:
                break
            last += 1
        items.extend(_items(_Group(store, tuple(infos[first:last])), metadata, where))
        first = last
    return items


def _items(group: _Group, metadata: str, where: str) -> list[GroupItem]:
    # a plain hash of what identifies the arrays read (the metadata gives their
    # shapes): dask's tokenize costs more
    paths = "\0".join(info.path for info in group.infos)
    named = f"{where}\0{metadata}\0{paths}"
    token = hashlib.blake2b(named.encode(), digest_size=16).hexdigest()
    key = f"open_zarr-group-{token}"
    layer = _graph.group_layer({key: _graph.task(key, read_group, group)})
    own = _OwnRead(group, token)
    return [
        GroupItem(key, layer, position, info.shape, info.dtype, own)
        for position, info in enumerate(group.infos)
    ]


class _OwnRead:
    """The task of one item of a group alone (``GroupItem.call``): the read of its
    array's chunk, as a map opened without groups would run it. Made when asked for, so
    that a map of many blocks holds nothing per item for it."""

    __slots__ = ("group", "token")

    def __init__(self, group: _Group, token: str):
        self.group, self.token = group, token

    def __call__(self, position: int) -> tuple[str, Any, tuple]:
        read, ref, region = _chunk_read(self.group.store, self.group.infos[position])
        return f"open_zarr-item-{self.token}-{position}", read, (ref, region)


def _chunk_read(store: Store, info: layout.ArrayInfo) -> tuple[Any, ArrayRef, tuple[slice, ...]]:
    """The function reading the whole array ``info`` alone, and its arguments."""
    ref = ArrayRef(store, info.path, info.document, info.missing_ok, info.store_id)
    read = read_plain_region if info.plain else read_region
    return read, ref, tuple([slice(0, n) for n in info.shape])


@without_collector
def read_group(group: _Group) -> tuple[np.ndarray, ...]:
    """The arrays of the group, each checked as if read alone. The chunk files of those
    with plain codecs are fetched together (see :func:`read_plain_regions`); the others
    are read through zarr one by one, from a few threads when the store is not a local
    directory (each request then waits on the network). The garbage collector is
    paused meanwhile: its passes, triggered by the objects made per array, walk the
    whole map held by the caller."""
    arrays: list[Any] = [None] * len(group.infos)
    plain: list[tuple[int, ArrayRef, tuple]] = []
    others: list[tuple[int, ArrayRef, tuple]] = []
    for position, info in enumerate(group.infos):
        _, ref, region = _chunk_read(group.store, info)
        (plain if info.plain else others).append((position, ref, region))
    found = read_plain_regions([(ref, region) for _, ref, region in plain])
    for (position, _, _), array in zip(plain, found, strict=True):
        arrays[position] = array
    for (position, _, _), array in zip(others, _read_regions(group.store, others), strict=True):
        arrays[position] = array
    return tuple(arrays)


#: Threads reading the arrays of a group through zarr from a store that is not local.
_THREADS = 8


def _read_regions(store: Store, reads: list[tuple[int, ArrayRef, tuple]]) -> list[np.ndarray]:
    """:func:`read_region` of each ``(position, ref, region)``."""
    if len(reads) < 2 or isinstance(store, LocalStore):
        return [read_region(ref, region) for _, ref, region in reads]
    with ThreadPoolExecutor(_THREADS) as pool:
        return list(pool.map(lambda read: read_region(read[1], read[2]), reads))
