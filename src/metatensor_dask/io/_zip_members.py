"""The members of a ZIP archive as a table, found by their position in the archive.

A metatensor file of 100,000 blocks holds 800,000 members. Kept as one object each in
a dict of their names, they are tables far larger than the CPU's caches, where every
lookup is a miss (the load then grew faster than the blocks). Here each member is a
row of numbers in file order (its first bytes in a buffer shared with its neighbours),
and a member is looked for first where it is expected: right after the member found
last (metatensor writes the members of a block one after the other, in the order a
load asks for them). An index of all names is built only when a member is not there
(a file laid out otherwise, such as one rewritten by another ZIP tool), and used from
then on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import NamedTuple

import numpy as np

__all__ = ["TABLE", "Member", "Members"]


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


# the fields of a member in its row of the table: those of `Member` but the name and
# head, then where its head is (buffer, start, length)
TABLE = np.dtype(
    [("offset", "<i8"), ("size", "<i8"), ("stored", "?"), ("crc", "<i8"),
     ("uncompressed", "<i8"), ("head_buffer", "<i8"), ("head_start", "<i8"),
     ("head_length", "<i8")]
)  # fmt: skip


class Members(Mapping[str, Member]):
    """The members of an archive by name, held as a table in file order.

    Parameters
    ----------
    names
        The members' names, in file order.
    table
        A row of :data:`TABLE` per member, in the same order (one ``item`` call gives
        all the fields of a member).
    heads
        Buffers holding the first bytes of the members, one after the other: member
        ``k``'s are in ``heads[head_buffer]`` from ``head_start``, ``head_length`` of
        them.
    """

    def __init__(self, names: list[str], table: np.ndarray, heads: list[bytes]):
        self.names = names
        self.table = table
        self._heads = heads
        self._next = 0
        self._index: dict[str, int] | None = None

    def find(self, name: str) -> int:
        """The position of member ``name`` (-1 when there is none): the position after
        the member found last when ``name`` is there, else from the index of all names
        (an archive's names are unique: one held twice is refused when it is read)."""
        k = self._next
        if k < len(self.names) and self.names[k] == name:
            self._next = k + 1
            return k
        if self._index is None:
            self._index = {member: k for k, member in enumerate(self.names)}
        k = self._index.get(name, -1)
        self._next = k + 1
        return k

    def labels_head(self, k: int) -> tuple[bytes, bool, int]:
        """The first bytes of member ``k`` read with the directory, whether they are
        all of it, and its CRC-32 (what a load checks first for each Labels)."""
        _, size, _, crc, _, buffer, start, length = self.table.item(k)
        return self._heads[buffer][start : start + length], length == size, crc

    def at(self, k: int) -> Member:
        """Member ``k`` (in file order)."""
        offset, size, stored, crc, uncompressed, buffer, start, length = self.table.item(k)
        head = self._heads[buffer][start : start + length]
        return Member(self.names[k], offset, size, stored, crc, uncompressed, head)

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
