"""The tiny blocks of metatensor files, read by groups.

A file of many tiny blocks would give one dask array (a graph layer, a task, a name
hashed) per values member. Instead, the values and gradients of neighbouring tiny
blocks are items of a group: one task reads the bytes spanning the group's members in
one read, checks the CRC-32 of each member and returns their arrays. A block holds a
:class:`~metatensor_dask._collection.GroupItem` per array; computing one array alone
(``block.values.compute()``) reads and checks its member alone.
"""

from __future__ import annotations

import functools
import hashlib
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _graph
from .._collection import GroupItem
from . import _mts_integrity
from ._stamped_reads import Stamp, read_into

__all__ = ["GROUP_BYTES", "TINY_BYTES", "MemberRead", "group_items"]

TINY_BYTES = 256 * 1024
"""Blocks whose values and gradients hold at most this many bytes (each in one chunk)
are read by groups."""
GROUP_BYTES = 8 * 2**20
"""Bytes of the file that one group task reads at most (more for a single member)."""


@dataclass(slots=True)
class MemberRead:
    """A values member as its group reads it (not frozen: made faster, for files of
    many thousands)."""

    name: str
    offset: int
    """Position in the file of the member's first byte (its ``.npy`` header)."""
    size: int
    """Bytes of the member, header included."""
    data_start: int
    """Bytes of the header."""
    descr: str
    shape: tuple[int, ...]
    crc: int
    """The CRC-32 that the archive's directory records."""


@dataclass(frozen=True)
class _Group:
    """What a group task reads: ``members``, all within ``length`` bytes from
    ``start`` in ``path`` (opaque to dask: one argument, not walked)."""

    path: str
    display: str
    stamp: Stamp
    start: int
    length: int
    members: tuple[MemberRead, ...]


def group_items(path: str, display: str, stamp: Stamp, reads: list[MemberRead]) -> list[GroupItem]:
    """An item per member of ``reads`` (in order), consecutive members gathered in
    groups that span at most :data:`GROUP_BYTES` of the file."""
    items: list[GroupItem] = []
    first = 0
    while first < len(reads):
        low, high = reads[first].offset, reads[first].offset + reads[first].size
        last = first + 1
        while last < len(reads):
            read = reads[last]
            new_low, new_high = min(low, read.offset), max(high, read.offset + read.size)
            if new_high - new_low > GROUP_BYTES:
                break
            low, high = new_low, new_high
            last += 1
        group = _Group(path, display, stamp, low, high - low, tuple(reads[first:last]))
        items.extend(_items(group))
        first = last
    return items


def _token(group: _Group) -> str:
    """What names the group's task: the file and where each member read starts and
    ends. Loads of one file with other chunkings make other blocks tiny, and a group
    of each may span the same bytes with as many members (a plain hash: dask's
    tokenize costs more)."""
    members = ",".join(f"{member.offset}+{member.size}" for member in group.members)
    described = f"{group.path}\0{group.stamp}\0{members}"
    return hashlib.blake2b(described.encode(), digest_size=16).hexdigest()


def _items(group: _Group) -> list[GroupItem]:
    token = _token(group)
    key = f"mts-group-{token}"
    layer = _graph.group_layer({key: _graph.task(key, read_group, group)})
    own = _OwnRead(group, token)
    return [
        GroupItem(key, layer, position, member.shape, _native(member.descr), own)
        for position, member in enumerate(group.members)
    ]


@functools.lru_cache(maxsize=64)
def _native(descr: str) -> np.dtype:
    """The dtype of ``descr`` in native byte order (the arrays read are)."""
    return np.dtype(descr).newbyteorder("=")


class _OwnRead:
    """The task of one item of a group alone (``GroupItem.call``): it reads the item's
    member only. Made when asked for, so that a map of many blocks holds nothing per
    item for it."""

    __slots__ = ("group", "token")

    def __init__(self, group: _Group, token: str):
        self.group, self.token = group, token

    def __call__(self, position: int) -> tuple[str, Any, tuple]:
        group, member = self.group, self.group.members[position]
        alone = _Group(
            group.path, group.display, group.stamp, member.offset, member.size, (member,)
        )
        return f"mts-item-{self.token}-{position}", read_member, (alone,)


def read_group(group: _Group) -> tuple[np.ndarray, ...]:
    """The arrays of the group's members, each member's CRC-32 checked."""
    data = _read(group.path, group.stamp, group.start, group.length)
    arrays = []
    for member in group.members:
        begin = member.offset - group.start
        view = data[begin : begin + member.size]
        _mts_integrity.check_crc(group.display, member.name, zlib.crc32(view), member.crc)
        dtype = np.dtype(member.descr)
        array = np.frombuffer(view[member.data_start :], dtype=dtype).reshape(member.shape)
        # a copy of its own (the group's buffer is released), in native byte order
        arrays.append(array.astype(dtype.newbyteorder("="), copy=True))
    return tuple(arrays)


def read_member(group: _Group) -> np.ndarray:
    """The array of the one member of ``group``, its CRC-32 checked."""
    return read_group(group)[0]


def _read(path: str, stamp: Stamp, offset: int, length: int) -> memoryview:
    """``length`` bytes at ``offset`` of ``path`` (see :func:`read_into`)."""
    view = memoryview(bytearray(length))
    read_into(path, stamp, offset, view)
    return view
