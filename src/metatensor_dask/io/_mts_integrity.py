"""CRC-32 checks of the members of metatensor files, at no extra read of a member read
whole.

A member's CRC-32 (recorded in the archive's directory) covers its ``.npy`` header and
all its data. Labels are read whole, and checked when read. Values are read by chunk
tasks, each of which also returns the CRC-32 of the bytes it read; one small task per
member combines those CRCs (:func:`~metatensor_dask.io._zip.crc32_combine`) and raises
:class:`~metatensor_dask.errors.DamagedFileError` when the result differs. That task
depends only on the CRCs, never on the chunks, so memory stays bounded; it runs when it
is asked for (:func:`~metatensor_dask._member_checks.member_checks` gives the keys to
ask for), which the collections, the comparisons and the writers do for every array
whose computation reads a member whole.

A computation that reads part of a member (a slice, one chunk) asks instead for the
member's streamed check, which reads the member's data again in pieces of one chunk at
most and compares its CRC-32. It runs at most once per member and process: a member
whose check passed (either check) is not read again for it while the file keeps the
stamp it had at load.
"""

from __future__ import annotations

import operator
import zlib
from dataclasses import dataclass
from typing import Any

from .._member_checks import CHECK as _CHECK
from .._member_checks import LOAD as _LOAD
from .._member_checks import READ as _READ
from .._member_checks import STREAMED as _STREAMED
from ..errors import DamagedFileError
from . import _zip
from ._stamped_reads import Stamp, read_into

__all__ = [
    "MemberCheck",
    "check_crc",
    "damaged",
    "values_graph",
]

_CRC = "mts-crc-"


def damaged(display: str, member: str | None, problem: str) -> DamagedFileError:
    """The error for a damaged member of the file ``display`` (``None``: its archive's
    directory)."""
    where = "" if member is None else f" in member {member!r}"
    return DamagedFileError(
        f"'{display}' is damaged: {problem}{where}; the file changed after it was written "
        "(disk or transfer error, or an edit): write it again from its source"
    )


def check_crc(display: str, member: str, actual: int, expected: int) -> None:
    """Raise :class:`DamagedFileError` when ``actual`` is not the recorded CRC-32."""
    if actual != expected:
        raise damaged(
            display,
            member,
            f"Invalid checksum: the CRC-32 of the data is {actual:08x}, the archive "
            f"records {expected:08x}",
        )


@dataclass(frozen=True)
class MemberCheck:
    """What the check task of one values member needs besides the chunks' CRCs."""

    display: str
    member: str
    expected: int
    """The CRC-32 recorded in the archive's directory."""
    header_crc: int
    """The CRC-32 of the member's ``.npy`` header (read at load)."""
    lengths: tuple[int, ...]
    """Bytes read by each chunk task, in order."""
    path: str
    """The file's absolute path."""
    stamp: Stamp
    """The file's stamp at load (see :func:`~._stamped_reads.file_stamp`)."""
    start: int
    """Where the member's data (after its header) starts in the file."""

    @property
    def identity(self) -> tuple[str, Stamp, int]:
        """What names the member in :data:`_PASSED`: the file as loaded, and where."""
        return (self.path, self.stamp, self.start)


_PASSED: set[tuple[str, Stamp, int]] = set()
"""The members of several chunks whose check passed in this process (by
:attr:`MemberCheck.identity`): their streamed check reads nothing. The read tasks refuse
a file whose stamp changed, so a member is known by the file's stamp at load. A damaged
member is never added: it raises every time. Each process (a ``distributed`` worker)
keeps its own."""

_PIECE_BYTES = 16 * 2**20
"""The most bytes a streamed check holds at once, for members of larger chunks."""


def _check_member(check: MemberCheck, crcs: list[int]) -> None:
    crc = check.header_crc
    for chunk_crc, length in zip(crcs, check.lengths, strict=True):
        crc = _zip.crc32_combine(crc, chunk_crc, length)
    check_crc(check.display, check.member, crc, check.expected)


def _check_chunks(check: MemberCheck, crcs: list[int]) -> None:
    """The check of a member read whole: its chunks' CRCs combined; a member that
    passes needs no streamed check in this process."""
    _check_member(check, crcs)
    _PASSED.add(check.identity)


def _check_streamed(check: MemberCheck) -> None:
    """The check of a member that a computation reads in part: its data read again in
    pieces of at most one chunk (and :data:`_PIECE_BYTES`), each dropped once its bytes
    are in the CRC-32, so memory holds one piece; nothing when the member passed a
    check in this process (:data:`_PASSED`)."""
    if check.identity in _PASSED:
        return
    crc = check.header_crc
    position, end = check.start, check.start + sum(check.lengths)
    piece = memoryview(bytearray(min(max(check.lengths), _PIECE_BYTES, end - position)))
    while position < end:
        view = piece[: min(len(piece), end - position)]
        read_into(check.path, check.stamp, position, view)
        crc = zlib.crc32(view, crc)
        position += len(view)
    check_crc(check.display, check.member, crc, check.expected)
    _PASSED.add(check.identity)


def _checked(read: tuple[Any, int], check: MemberCheck) -> Any:
    """The array of a one-chunk member's read, once its CRC-32 is checked."""
    array, crc = read
    _check_member(check, [crc])
    return array


def values_graph(
    token: str, reads: list[tuple[Any, ...]], chunk_index: tuple[int, ...], check: MemberCheck
) -> tuple[str, dict[Any, Any]]:
    """The name of the dask array of one values member, and its tasks.

    ``reads[i]`` is the task reading chunk ``i``, which returns ``(array, crc)``. The
    array's chunk ``i`` (key ``(name, i, *chunk_index)``) and the chunk's CRC are picked
    out of it by two tasks; the check task (key ``mts-check-<token>``) depends on the
    CRCs only. It is in the graph but not among the array's keys: it runs only when
    asked for (:func:`~metatensor_dask._member_checks.member_checks`), as the streamed
    check (key ``mts-check-streamed-<token>``, depending on nothing) that computations
    reading part of the member ask for. A member read by one task is checked by that
    task, which then returns the array only: any computation that reads it is checked,
    at no extra task.
    """
    name, read, crc, key = _LOAD + token, _READ + token, _CRC + token, _CHECK + token
    if len(reads) == 1:
        return name, {(name, 0, *chunk_index): (_checked, reads[0], check)}
    tasks: dict[Any, Any] = {}
    crc_keys = []
    for i, task in enumerate(reads):
        tasks[(read, i)] = task
        tasks[(name, i, *chunk_index)] = (operator.getitem, (read, i), 0)
        tasks[(crc, i)] = (operator.getitem, (read, i), 1)
        crc_keys.append((crc, i))
    tasks[key] = (_check_chunks, check, crc_keys)
    tasks[_STREAMED + token] = (_check_streamed, check)
    return name, tasks
