"""The members of a ZIP archive as columns, found by their position in the archive.

A metatensor file of 100,000 blocks holds 800,000 members. Kept as one object each in
a dict of their names, they are tables far larger than the CPU's caches, where every
lookup is a miss (the load then grew faster than the blocks). Here each field is a
column in file order, and a member is looked for first where it is expected: right
after the member found last (metatensor writes the members of a block one after the
other, in the order a load asks for them). An index of all names is built only when a
member is not there (a file laid out otherwise, such as one rewritten by another ZIP
tool), and used from then on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import NamedTuple

import numpy as np

__all__ = ["Member", "Members"]


class Member(NamedTuple):
    """Where the bytes of one member are."""

    name: str
    offset: int
    """Position in the file of the member's first byte."""
    size: int
    """Number of bytes stored (compressed size)."""
    stored: bool
    """Whether the bytes are stored as they are (False: compressed)."""
    crc: int
    """The CRC-32 of the uncompressed bytes, as the central directory records it."""
    uncompressed_size: int
    """Number of bytes once decompressed (``size`` for a stored member)."""
    head: bytes
    """Its first bytes, as many as were asked for when the directory was read
    (unchecked; empty for a compressed member)."""


class Members(Mapping[str, Member]):
    """The members of an archive by name, held as columns in file order.

    Parameters
    ----------
    names
        The members' names, in file order.
    offsets, sizes, stored, crcs, uncompressed
        The fields of :class:`Member`, one array each, in the same order.
    heads
        Buffers holding the first bytes of the members, one after the other: member
        ``k``'s are in ``heads[head_buffers[k]]`` from ``head_starts[k]``,
        ``head_lengths[k]`` of them.
    """

    def __init__(
        self,
        names: list[str],
        offsets: np.ndarray,
        sizes: np.ndarray,
        stored: np.ndarray,
        crcs: np.ndarray,
        uncompressed: np.ndarray,
        heads: list[bytes],
        head_buffers: np.ndarray,
        head_starts: np.ndarray,
        head_lengths: np.ndarray,
    ):
        self.names = names
        self.offsets, self.sizes, self.stored = offsets, sizes, stored
        self.crcs, self.uncompressed = crcs, uncompressed
        self._heads, self._head_buffers = heads, head_buffers
        self._head_starts, self._head_lengths = head_starts, head_lengths
        self._next = 0
        self._index: dict[str, int] | None = None

    def find(self, name: str) -> int:
        """The position of member ``name`` (-1 when there is none): the position after
        the member found last when ``name`` is there, else from the index of all names
        (of a name held twice, which metatensor never writes: the one found there, else
        the last)."""
        k = self._next
        if k < len(self.names) and self.names[k] == name:
            self._next = k + 1
            return k
        if self._index is None:
            # the last member of a name wins, as in Python's zipfile
            self._index = {member: k for k, member in enumerate(self.names)}
        k = self._index.get(name, -1)
        self._next = k + 1
        return k

    def labels_head(self, k: int) -> tuple[bytes, bool, int]:
        """The first bytes of member ``k`` read with the directory, whether they are
        all of it, and its CRC-32 (what a load checks first for each Labels)."""
        start = self._head_starts.item(k)
        length = self._head_lengths.item(k)
        head = self._heads[self._head_buffers.item(k)][start : start + length]
        return head, length == self.sizes.item(k), self.crcs.item(k)

    def head(self, k: int) -> bytes:
        """The first bytes of member ``k`` read with the directory."""
        start = self._head_starts.item(k)
        buffer = self._heads[self._head_buffers.item(k)]
        return buffer[start : start + self._head_lengths.item(k)]

    def at(self, k: int) -> Member:
        """Member ``k`` (in file order)."""
        return Member(
            self.names[k],
            self.offsets.item(k),
            self.sizes.item(k),
            bool(self.stored[k]),
            self.crcs.item(k),
            self.uncompressed.item(k),
            self.head(k),
        )

    def __getitem__(self, name: str) -> Member:
        k = self.find(name)
        if k < 0:
            raise KeyError(name)
        return self.at(k)

    def __contains__(self, name: object) -> bool:
        if self._index is not None:
            return name in self._index
        k = self._next
        if k < len(self.names) and self.names[k] == name:
            return True
        # a scan without new objects: no index for the few names asked for this way
        return name in self.names

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)
