"""The ZIP container of metatensor files: where each member's bytes are, and how to
write a STORED archive whose members are filled at known offsets.

Reading parses the central directory (read at once), then each member's local header
for the offset of its first byte, so that array data can be read in place with
``os.pread``; the local headers and the first bytes of small members are read in runs of
adjacent bytes (few reads for a file of many members). Compressed members are read
with :mod:`zipfile`. Writing lays out every member before any data exists (all members are
STORED, so sizes are known in advance): data is written at its offset in any order, and
the CRC-32 of each member is assembled from the CRCs of its pieces.
"""

from __future__ import annotations

import functools
import itertools
import os
import struct
import zipfile
from collections.abc import Callable
from typing import IO, Any, NamedTuple

import numpy as np

from ._zip_members import TABLE, Member, Members
from ._zip_tables import with_names

__all__ = [
    "UNSUPPORTED",
    "Member",
    "Members",
    "UnsupportedCompression",
    "ZipError",
    "central_directory",
    "crc32_combine",
    "local_header",
    "local_header_sizes",
    "local_headers",
    "open_compressed",
    "read_directory",
    "read_members",
]

# the largest expansion of DEFLATE (a 258-byte match in one 2-bit code, RFC 1951)
MAX_DEFLATE_RATIO = 1032
# beyond these, sizes/offsets/entry counts go into ZIP64 fields (module globals, so
# that tests can lower them)
ZIP64_LIMIT = 0xFFFFFFFF
ZIP64_COUNT_LIMIT = 0xFFFF

_LOCAL = struct.Struct("<4sHHHHHIIIHH")
# the name and extra field lengths, the last two fields of a local header
_LOCAL_LENGTHS = struct.Struct("<HH")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_END = struct.Struct("<4sHHHHIIH")
_END64 = struct.Struct("<4sQHHIIQQQQ")
_LOCATOR64 = struct.Struct("<4sIQI")
# 2000-01-01 00:00:00 in MS-DOS format, as metatensor writes it
_DOS_TIME, _DOS_DATE = 0, (20 << 9) | (1 << 5) | 1
_VERSION_MADE_BY = (3 << 8) | 46  # unix, zip 4.6
_VERSION_NEEDED, _VERSION_NEEDED_ZIP64 = 20, 45
# metatensor's ZIP64 end record says "made by and needs zip 4.6", host 0 (with more than
# 65,534 members, e.g. 10,000 blocks with gradients, or 4 GiB)
_VERSION_END64 = 46
_UNIX_MODE = 0o100644 << 16
_UTF8_FLAG = 0x800
# the local ZIP64 extra field always written: id, size, uncompressed and compressed size
_LOCAL_EXTRA = struct.Struct("<HHQQ")


class ZipError(Exception):
    """A malformed archive; the caller adds which file it was."""


class UnsupportedCompression(ZipError):
    """A member compressed with a method that metatensor does not read (not DEFLATE)."""


#: How the message of :class:`UnsupportedCompression` starts (metatensor's words).
UNSUPPORTED = "unsupported Zip archive: "


class ZipDamage(ZipError):
    """An archive whose structure contradicts itself (its central directory and the
    local headers, or its records and their count): bytes changed after it was
    written. ``member`` names the member concerned (``None``: the directory)."""

    def __init__(self, problem: str, member: str | None = None):
        super().__init__(problem)
        self.member = member


def read_directory(path: str) -> Members:
    """Every member of the archive at ``path``, by name.

    Raises :class:`ZipError` for a file that is not a ZIP archive, is truncated or has
    encrypted members; ``OSError`` when the file can not be read.
    """
    return read_members(path, _nothing)


def read_members(path: str, wanted: Callable[[list[str], np.ndarray], np.ndarray]) -> Members:
    """Every member of the archive at ``path``, by name, with the first bytes of some.

    The central directory is read at once and parsed here, all its records together
    (numpy); the local headers (which give where each member's bytes start) are read in
    few reads of adjacent bytes, with the first bytes of each stored member that
    ``wanted`` asks for: a file of many small members (the Labels and headers of many
    blocks) is read in a few system calls, and parsed with little Python per member.

    Parameters
    ----------
    path
        The archive.
    wanted
        ``wanted(names, sizes)``: for the members named ``names`` (in file order) of
        ``sizes`` stored bytes, how many of their first bytes to read (an int array).

    Returns
    -------
    Members
        The members by name (a table in file order); each stored member whose
        ``wanted`` is positive holds its first ``min(wanted, size)`` bytes
        (``Member.head``, unchecked).

    Raises
    ------
    ZipError
        For a file that is not a ZIP archive, is truncated, spans several disks, has
        encrypted members or two members of one name.
    OSError
        When the file can not be read.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        file_size = os.fstat(fd).st_size
        try:
            directory = _central_directory(fd, file_size)
        except (struct.error, IndexError, ValueError, UnicodeDecodeError) as error:
            raise ZipError(f"invalid Zip archive: {error}") from None
        return _locate(fd, file_size, directory, wanted)
    finally:
        os.close(fd)


def _nothing(names: list[str], sizes: np.ndarray) -> np.ndarray:
    return np.zeros(len(names), np.int64)


class _Directory(NamedTuple):
    """What the central directory says of the members, one column per field, in file
    order of their local headers."""

    names: list[str]
    name_lengths: np.ndarray
    """Bytes of each encoded name."""
    header_offsets: np.ndarray
    """Position of each local header in the file."""
    flags: np.ndarray
    methods: np.ndarray
    crcs: np.ndarray
    compressed: np.ndarray
    uncompressed: np.ndarray
    name_at: np.ndarray
    """Position of each name's bytes in ``raw``."""
    raw: np.ndarray
    """The bytes of the central directory."""

    def name_bytes(self, k: int) -> bytes:
        """The name of member ``k`` as the directory stores it."""
        start = int(self.name_at[k])
        return self.raw[start : start + int(self.name_lengths[k])].tobytes()

    def record(self, k: int) -> tuple[int, str, int, int, int, int]:
        """Member ``k``: local header offset, name, method, CRC-32, sizes."""
        return (
            int(self.header_offsets[k]),
            self.names[k],
            int(self.methods[k]),
            int(self.crcs[k]),
            int(self.compressed[k]),
            int(self.uncompressed[k]),
        )


# the fixed fields of a central directory record that are used, at their offsets
_CENTRAL_FIELDS = np.dtype(
    {
        "names": ["flags", "method", "crc", "compressed", "uncompressed", "name", "extra",
                  "header_offset"],
        "formats": ["<u2", "<u2", "<u4", "<u4", "<u4", "<u2", "<u2", "<u4"],
        "offsets": [8, 10, 16, 20, 24, 28, 30, 42],
        "itemsize": _CENTRAL.size,
    }
)  # fmt: skip

# the end of central directory record is at most this far from the end (its comment)
_END_SEARCH = _END.size + 0xFFFF


_END_SIGNATURE = b"PK\x05\x06"
_CENTRAL_SIGNATURE = b"PK\x01\x02"
_LOCATOR64_SIGNATURE = b"PK\x06\x07"


def _comment_fits(tail: bytes, end: int) -> bool:
    """Whether an end record at ``end`` of ``tail`` and its comment end in ``tail``."""
    comment = int.from_bytes(tail[end + 20 : end + 22], "little")
    return end + _END.size + comment <= len(tail)


def _ends_its_directory(tail: bytes, end: int, tail_start: int) -> bool:
    """Whether the bytes at ``end`` of ``tail`` (the file from ``tail_start``) are an end
    record of this archive: its directory ends right before it, or its ZIP64 locator
    does."""
    if end < 0 or end + _END.size > len(tail):
        return False
    if end >= _LOCATOR64.size and tail[end - _LOCATOR64.size : end - 16] == _LOCATOR64_SIGNATURE:
        return True  # its ZIP64 locator precedes it
    _, _, _, _, _, size, offset, _ = _END.unpack_from(tail, end)
    return bool(size) and offset + size == tail_start + end


def _find_end(tail: bytes, tail_start: int) -> int:
    """Where the end record of the central directory starts in ``tail``, the last bytes
    of the file (from ``tail_start``).

    Raises
    ------
    ZipDamage
        For an end record that ends its directory but whose signature or comment
        length is not one (a changed byte).
    ZipError
        When there is no end record.
    """
    end = tail.rfind(_END_SIGNATURE)
    while end >= 0 and not _comment_fits(tail, end):
        end = tail.rfind(_END_SIGNATURE, 0, end)
    if end >= 0:
        return end
    last = tail.rfind(_END_SIGNATURE)
    if _ends_its_directory(tail, last, tail_start):
        comment = int.from_bytes(tail[last + 20 : last + 22], "little")
        raise ZipDamage(
            f"the end record of the archive's directory has a comment of {comment} bytes, "
            f"but {len(tail) - last - _END.size} bytes follow it"
        )
    last = len(tail) - _END.size  # metatensor writes no comment
    if _ends_its_directory(tail, last, tail_start):
        found = tail[last : last + 4].hex()
        raise ZipDamage(
            f"the end record of the archive's directory starts with {found}, not its "
            "signature 504b0506"
        )
    raise ZipError("invalid Zip archive: File is not a zip file")


def _end_or_cut_short(fd: int, tail: bytes, tail_start: int) -> int:
    """:func:`_find_end`, naming the likely cause when a file has no end record: it is
    not a ZIP archive at all, or, starting as one (with a local header), it was cut
    short, or bytes were appended after it (beyond where the end record is looked for)."""
    try:
        return _find_end(tail, tail_start)
    except ZipDamage:
        raise
    except ZipError as error:
        start = tail[:4] if tail_start == 0 else os.pread(fd, 4, 0)
        if start != b"PK\x03\x04":
            raise ZipError(
                f"{error}: metatensor files are ZIP archives (written by metatensor.save "
                "or metatensor_dask.save), and this file neither starts nor ends as one: "
                "check the path, or save the tensor again"
            ) from None
        raise ZipError(
            f"{error}: it starts as a ZIP archive but has no end record closing its "
            "directory: it was cut short (an interrupted copy, download or save), or "
            "more than 64 KiB were appended to it; copy or write it again from its source"
        ) from None


def _check_one_disk(disk: int, start_disk: int, directory: bytes, count: int) -> None:
    """Refuse an archive whose end record numbers other disks than the first: damage
    when its whole directory is where that record puts it in this file."""
    if not disk and not start_disk:
        return
    if count and directory[:4] == _CENTRAL_SIGNATURE:
        raise ZipDamage(
            f"the end record of the archive's directory numbers its disk {disk} and the "
            f"directory's disk {start_disk}, but the whole directory is in this file, "
            "whose archive has one disk"
        )
    raise ZipError("invalid Zip archive: archives that span several disks are not supported")


def _central_directory(fd: int, file_size: int) -> _Directory:
    """The records of the central directory, in file order of their local headers."""
    tail_start = max(0, file_size - _END_SEARCH)
    tail = os.pread(fd, file_size - tail_start, tail_start)
    end = _end_or_cut_short(fd, tail, tail_start)
    _, disk, start_disk, on_disk, count, size, offset, _ = _END.unpack_from(tail, end)
    location = tail_start + end
    locator = end - _LOCATOR64.size
    if locator >= 0 and tail[locator : locator + 4] == _LOCATOR64_SIGNATURE:
        _, _, end64, _ = _LOCATOR64.unpack_from(tail, locator)
        inside = end64 + _END64.size <= tail_start + locator
        record = os.pread(fd, _END64.size, end64) if inside else b""
        if len(record) < _END64.size or record[:4] != b"PK\x06\x06":
            raise ZipDamage("invalid Zip archive: corrupt ZIP64 end of central directory record")
        fields = _END64.unpack_from(record)
        disk, start_disk, on_disk, count, size, offset = fields[4:10]
        location = end64
    # bytes before the archive (a self-extracting stub) shift every offset
    shift = location - size - offset
    fits = shift >= 0 and size <= location
    directory = os.pread(fd, size, offset + shift) if fits else b""
    _check_one_disk(disk, start_disk, directory, count)
    if on_disk != count:
        raise ZipDamage(
            f"the end record of the archive's directory counts {on_disk} records on its "
            f"disk, and {count} in all, for an archive of one disk"
        )
    if not fits:
        raise ZipDamage("invalid Zip archive: the central directory does not fit in the file")
    if len(directory) < size:
        raise ZipDamage("invalid Zip archive: the central directory is truncated")
    buffer = np.frombuffer(directory, np.uint8)
    starts = _record_starts(directory, buffer, count)
    table = _rows(buffer, starts, 0, _CENTRAL.size).view(_CENTRAL_FIELDS)[:, 0]
    name_lengths = table["name"].astype(np.int64)
    compressed = table["compressed"].astype(np.int64)
    uncompressed = table["uncompressed"].astype(np.int64)
    header_offsets = table["header_offset"].astype(np.int64)
    marked = (compressed == 0xFFFFFFFF) | (uncompressed == 0xFFFFFFFF)
    for k in np.flatnonzero(marked | (header_offsets == 0xFFFFFFFF)).tolist():
        extra = int(starts[k] + _CENTRAL.size + name_lengths[k])
        uncompressed[k], compressed[k], header_offsets[k] = _zip64_fields(
            directory[extra : extra + int(table["extra"][k])],
            int(uncompressed[k]),
            int(compressed[k]),
            int(header_offsets[k]),
        )
    header_offsets += shift
    names = _names(directory, buffer, starts + _CENTRAL.size, name_lengths, table["flags"])
    columns = [name_lengths, header_offsets, table["flags"], table["method"], table["crc"]]
    columns += [compressed, uncompressed, starts + _CENTRAL.size]
    if count > 1 and (np.diff(header_offsets) < 0).any():
        order = np.argsort(header_offsets, kind="stable")
        names = [names[k] for k in order.tolist()]
        columns = [column[order] for column in columns]
    lengths, offsets, flags, methods, crcs, compressed, uncompressed, name_at = columns
    return _Directory(
        names, lengths, offsets, flags, methods, crcs, compressed, uncompressed, name_at, buffer
    )


def _record_starts(directory: bytes, buffer: np.ndarray, count: int) -> np.ndarray:
    """Where each of the ``count`` records of ``directory`` starts.

    The signatures found in the bytes are the records when they chain (each record
    ends where the next found begins, from the first byte), which is checked at once;
    otherwise (a signature inside a name, or a damaged directory) the records are
    walked one by one, which says what is wrong.
    """
    size = len(directory)
    if count and size >= _CENTRAL.size:
        # the "P" bytes first: one temporary the size of the directory, not four
        found = np.flatnonzero(buffer[:-3] == 0x50)
        found = found[(buffer[found + 1] == 0x4B) & (buffer[found + 2] == 1)]
        found = found[buffer[found + 3] == 2]
        if len(found) == count and found[0] == 0 and found[-1] + _CENTRAL.size <= size:
            lengths = _rows(buffer, found, 28, 6).astype(np.int64)
            ends = found + _CENTRAL.size + lengths[:, 0::2].sum(axis=1)
            ends += 256 * lengths[:, 1::2].sum(axis=1)
            if (ends[:-1] == found[1:]).all() and _fills(directory, int(ends[-1])):
                return found
    starts = []
    position = 0
    for _ in range(count):
        if position + _CENTRAL.size > size:
            raise ZipDamage(
                f"the archive's directory is cut short: its {size} bytes do not hold the "
                f"{count} records its end record counts"
            )
        fields = _CENTRAL.unpack_from(directory, position)
        if fields[0] != b"PK\x01\x02":
            raise ZipDamage(
                "invalid Zip archive: Bad magic number for central directory (the record "
                f"at byte {position} of the archive's directory)"
            )
        starts.append(position)
        position += _CENTRAL.size + fields[10] + fields[11] + fields[12]
    if not _fills(directory, position):
        raise ZipDamage(
            f"the {count} records of the archive's directory take {position} bytes, its "
            f"end record says {size}"
        )
    return np.array(starts, np.int64)


def _rows(buffer: np.ndarray, starts: np.ndarray, first: int, width: int) -> np.ndarray:
    """The ``width`` bytes from ``first`` after each of ``starts`` in ``buffer`` (which
    holds them all), one row per start. Gathered as rows of a window over ``buffer``:
    an index of every byte (8 bytes per byte gathered) would be new memory of hundreds
    of MiB for a directory of a million members, touched once."""
    if not len(starts):
        return np.empty((0, width), np.uint8)
    windows = np.lib.stride_tricks.sliding_window_view(buffer[first:], width)
    return windows[starts]


def _fills(directory: bytes, end: int) -> bool:
    """Whether records ending at ``end`` fill ``directory``: up to its last byte, or to
    a digital signature record (which ZIP allows after the last record)."""
    return end == len(directory) or directory[end : end + 4] == b"PK\x05\x05"


def _names(
    directory: bytes, buffer: np.ndarray, starts: np.ndarray, lengths: np.ndarray, flags: Any
) -> list[str]:
    """The names of ``lengths`` bytes at ``starts`` of ``directory``: all sliced from the
    directory decoded at once when they are ASCII (as metatensor writes them), else
    decoded one by one."""
    # Latin-1 maps each byte to one character: the directory's positions are the text's
    text = directory.decode("latin-1")
    names = list(map(text.__getitem__, map(slice, starts.tolist(), (starts + lengths).tolist())))
    if "".join(names).isascii():
        return names
    return _decoded_names(directory, starts, lengths, flags)


def _decoded_names(
    directory: bytes, starts: np.ndarray, lengths: np.ndarray, flags: Any
) -> list[str]:
    """The names of ``lengths`` bytes at ``starts`` of ``directory``, one by one: UTF-8
    when flagged, else code page 437, as ZIP says."""
    names = []
    for start, length, flag in zip(starts.tolist(), lengths.tolist(), flags.tolist(), strict=True):
        name = directory[start : start + length]
        if name.isascii():
            names.append(name.decode("ascii"))
        else:
            names.append(name.decode("utf8" if flag & _UTF8_FLAG else "cp437"))
    return names


def _zip64_fields(extra: bytes, *values: int) -> tuple[int, ...]:
    """The sizes and offset a ZIP64 extra field holds for those marked 0xFFFFFFFF
    (uncompressed size, compressed size, local header offset: in this order)."""
    position = 0
    while position + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, position)
        if kind == 1:
            data = extra[position + 4 : position + 4 + length]
            if len(data) < length or length < 8 * values.count(0xFFFFFFFF):
                raise ZipError("invalid Zip archive: a ZIP64 extra field is cut short")
            found, index = [], 0
            for value in values:
                if value == 0xFFFFFFFF:
                    found.append(struct.unpack_from("<Q", data, index)[0])
                    index += 8
                else:
                    found.append(value)
            return tuple(found)
        position += 4 + length
    raise ZipError("invalid Zip archive: a ZIP64 size or offset is missing")


# bytes read after a local header's name: its extra field, in nearly all files
_EXTRA_GUESS = 64
# adjacent ranges closer than this are read in one read (copying a few kB costs less
# than a system call), up to _RUN bytes per read
_GAP = 1 << 14
_RUN = 1 << 24


def _check_unique(names: list[str]) -> None:
    """Refuse an archive holding two members of one name: which of them a reader takes
    differs from one ZIP reader to the next (metatensor never writes such a file)."""
    if len(set(names)) != len(names):
        ordered = sorted(names)
        repeated = next(a for a, b in itertools.pairwise(ordered) if a == b)
        raise ZipError(f"the member '{repeated}' appears twice in the archive")


def _locate(
    fd: int,
    file_size: int,
    directory: _Directory,
    wanted: Callable[[list[str], np.ndarray], np.ndarray],
) -> Members:
    """Read the local headers of the members of ``directory`` (and the wanted first
    bytes of each) in runs of adjacent bytes; the members, as a table."""
    names, count = directory.names, len(directory.names)
    _check_unique(names)
    sizes = directory.compressed
    want = np.minimum(np.asarray(wanted(names, sizes), np.int64), sizes)
    want[directory.methods != zipfile.ZIP_STORED] = 0
    starts = directory.header_offsets
    beyond = np.flatnonzero(starts > file_size - _LOCAL.size)
    if len(beyond):
        k = int(beyond[0])
        raise ZipDamage(
            f"its local header would be at byte {int(starts[k])}, past the end of the file "
            f"({file_size} bytes): the archive's directory is damaged, or the file "
            "truncated",
            names[k],
        )
    # the local header repeats the name: as long as in the directory, in practice
    stops = starts + _LOCAL.size + directory.name_lengths + _EXTRA_GUESS + want
    reach = np.maximum.accumulate(stops) if count else stops
    # runs of ranges with small gaps between them, each read at once (up to _RUN bytes)
    breaks = np.flatnonzero(starts[1:] - reach[:-1] > _GAP) + 1
    bounds = [0, *breaks.tolist(), count] if count else [0]
    table = np.zeros(count, TABLE)
    heads: list[bytes] = []
    for first, end in itertools.pairwise(bounds):
        i = first
        while i < end:
            j = i + max(1, int(np.searchsorted(reach[i:end], starts[i] + _RUN, side="right")))
            start = int(starts[i])
            data = os.pread(fd, min(int(reach[j - 1]), file_size) - start, start)
            run = _run_offsets(directory, i, j, data, start, file_size)
            if run is None:  # one by one, to say what is wrong
                checked = [
                    _member(directory, k, _local_header(fd, data, start, k, directory), file_size)
                    for k in range(i, j)
                ]
                run = np.array([member.offset for member in checked], np.int64)
            table["offset"][i:j] = run
            # the first bytes of the run's members, one after the other in one buffer
            run_heads = _heads(fd, run, want[i:j], data, start)
            lengths = np.fromiter(map(len, run_heads), np.int64, j - i)
            table["head_length"][i:j] = lengths
            table["head_start"][i:j] = np.cumsum(lengths) - lengths
            table["head_buffer"][i:j] = len(heads)
            heads.append(b"".join(run_heads))
            i = j
    # after the local headers: a changed flag is damage, found by them
    encrypted = np.flatnonzero(directory.flags & 0x1)
    if len(encrypted):
        raise ZipError(f"'{names[encrypted[0]]}' is encrypted, which is not supported")
    table["size"], table["stored"] = directory.compressed, directory.methods == zipfile.ZIP_STORED
    table["crc"], table["uncompressed"] = directory.crcs, directory.uncompressed
    return Members(names, table, heads)


def _heads(fd: int, offsets: np.ndarray, want: np.ndarray, data: bytes, start: int) -> list[bytes]:
    """The first ``want`` bytes of members whose data start at ``offsets`` (empty where
    ``want`` is 0), from ``data`` (read from ``start``) or read again when it ends
    before them."""
    begins = offsets - start
    ends = begins + want
    if ((ends <= len(data)) | (want == 0)).all():
        return list(map(data.__getitem__, map(slice, begins.tolist(), ends.tolist())))
    heads = []
    for offset, size in zip(offsets.tolist(), want.tolist(), strict=True):
        head = data[offset - start : offset - start + size]
        heads.append(head if len(head) == size else os.pread(fd, size, offset))
    return heads


def _local_header(fd: int, data: bytes, start: int, k: int, directory: _Directory) -> bytes:
    """The local header of member ``k`` with its name and extra field, from ``data``
    (read from ``start``) or read again when ``data`` ends before it; shorter when the
    file ends first."""
    header_offset = int(directory.header_offsets[k])
    begin = header_offset - start
    local = data[begin : begin + _LOCAL.size]
    if len(local) < _LOCAL.size:
        local = os.pread(fd, _LOCAL.size, header_offset)
        if len(local) < _LOCAL.size:
            return local
    name_length, extra_length = _LOCAL_LENGTHS.unpack_from(local, 26)
    size = _LOCAL.size + name_length + extra_length
    local = data[begin : begin + size]
    return local if len(local) == size else os.pread(fd, size, header_offset)


_LOCAL_SIGNATURE = np.frombuffer(b"PK\x03\x04", np.uint8)
# the fields of a local header compared with the central directory's, at their offsets
_LOCAL_FIELDS = np.dtype(
    {
        "names": ["flags", "method", "crc", "compressed", "uncompressed", "name", "extra"],
        "formats": ["<u2", "<u2", "<u4", "<u4", "<u4", "<u2", "<u2"],
        "offsets": [6, 8, 14, 18, 22, 26, 28],
        "itemsize": _LOCAL.size,
    }
)
_ZIP64_MARK = 0xFFFFFFFF
# a local header's flag: CRC-32 and sizes in a data descriptor after the data (zeros here)
_DESCRIPTOR_FLAG = 0x8


def _run_offsets(
    directory: _Directory, i: int, j: int, data: bytes, start: int, file_size: int
) -> np.ndarray | None:
    """Where the data of members ``i`` to ``j`` (excluded) of ``directory`` start, from
    their local headers in ``data`` (read from ``start``), all at once; None when one of
    them is not whole in ``data``, is wrong, or does not repeat the directory's record
    as metatensor writes it (:func:`_member` then checks it, or says what is wrong)."""
    headers = directory.header_offsets[i:j] - start
    if headers.max() + _LOCAL.size > len(data):
        return None
    buffer = np.frombuffer(data, np.uint8)
    local = _rows(buffer, headers, 0, _LOCAL.size)
    fields = local.view(_LOCAL_FIELDS)[:, 0]
    lengths = fields["name"].astype(np.int64)
    extras = fields["extra"].astype(np.int64)
    offsets = headers + start + _LOCAL.size + lengths + extras
    compressed, uncompressed = directory.compressed[i:j], directory.uncompressed[i:j]
    stored = directory.methods[i:j] == zipfile.ZIP_STORED
    if (
        not (local[:, :4] == _LOCAL_SIGNATURE).all()
        or (stored & (compressed != uncompressed)).any()
        or (offsets + compressed > file_size).any()
        or not _agree(directory, i, j, fields, buffer, headers)
    ):
        return None
    return offsets


def _agree(
    directory: _Directory,
    i: int,
    j: int,
    fields: np.ndarray,
    buffer: np.ndarray,
    headers: np.ndarray,
) -> bool:
    """Whether the local headers of members ``i`` to ``j`` (their ``fields``, at
    ``headers`` in ``buffer``) repeat the directory's flags, method, name, CRC-32 and
    sizes, the sizes in a ZIP64 extra field first in the header's extra field (as
    metatensor and Python's zipfile write them)."""
    lengths = directory.name_lengths[i:j]
    if (
        (fields["flags"] != directory.flags[i:j]).any()
        or (fields["method"] != directory.methods[i:j]).any()
        or (fields["name"] != lengths).any()
    ):
        return False
    described = (fields["flags"] & _DESCRIPTOR_FLAG) == 0
    if (described & (fields["crc"] != directory.crcs[i:j])).any():
        return False
    total = int(lengths.sum())
    before = np.cumsum(lengths) - lengths
    within = np.arange(total) - np.repeat(before, lengths)
    local_names = buffer[np.repeat(headers + _LOCAL.size, lengths) + within]
    central_names = directory.raw[np.repeat(directory.name_at[i:j], lengths) + within]
    if not np.array_equal(local_names, central_names):
        return False
    sizes = np.stack([fields["uncompressed"], fields["compressed"]], 1).astype(np.int64)
    marked = (sizes == _ZIP64_MARK).all(axis=1)
    if (marked != (sizes == _ZIP64_MARK).any(axis=1)).any():
        return False  # one size in a ZIP64 field: checked member by member
    if marked.any():
        extra = headers[marked] + _LOCAL.size + lengths[marked]
        if (extra + 20 > len(buffer)).any() or (fields["extra"][marked] < 20).any():
            return False
        head = buffer[extra[:, None] + np.arange(20)]
        length = head[:, 2:4].copy().view("<u2")[:, 0].astype(np.int64)
        if not (
            (head[:, 0] == 1)
            & (head[:, 1] == 0)
            & (length >= 16)
            & (4 + length <= fields["extra"][marked])
        ).all():
            return False
        sizes[marked] = head[:, 4:20].copy().view("<u8").astype(np.int64)
    central = np.stack([directory.uncompressed[i:j], directory.compressed[i:j]], 1)
    return not (described[:, None] & (sizes != central)).any()


def _member(directory: _Directory, k: int, local: bytes, file_size: int) -> Member:
    """Member ``k`` of ``directory``, whose local header (with its name and extra field)
    is ``local``, checked against the directory's record."""
    header_offset, name, method, crc, compressed, uncompressed = directory.record(k)
    if len(local) < _LOCAL.size or local[:4] != b"PK\x03\x04":
        raise ZipDamage(
            f"bad local header: there is none at byte {header_offset}, where the "
            "archive's directory puts it",
            name,
        )
    name_length, extra_length = _LOCAL_LENGTHS.unpack_from(local, 26)
    disagreement = _disagreement(directory, k, local)
    if disagreement is not None:
        raise ZipDamage(
            f"its local header and the archive's directory disagree on its {disagreement}",
            name,
        )
    offset = header_offset + _LOCAL.size + name_length + extra_length
    stored = method == zipfile.ZIP_STORED
    if stored and uncompressed != compressed:
        raise ZipDamage(
            f"it is stored uncompressed but its sizes differ ({compressed} and "
            f"{uncompressed} bytes)",
            name,
        )
    if offset + compressed > file_size:
        raise ZipDamage("it extends past the end of the file, which is truncated", name)
    return Member(name, offset, compressed, stored, crc, uncompressed, b"")


def _disagreement(directory: _Directory, k: int, local: bytes) -> str | None:
    """The field of member ``k`` that its local header ``local`` records otherwise than
    the directory (flags, compression method, name, CRC-32, sizes), or ``None``."""
    fields = np.frombuffer(local[: _LOCAL.size], np.uint8).view(_LOCAL_FIELDS)[0]
    name_length = int(fields["name"])
    if int(fields["flags"]) != int(directory.flags[k]):
        return "flags"
    if int(fields["method"]) != int(directory.methods[k]):
        return "compression method"
    if local[_LOCAL.size : _LOCAL.size + name_length] != directory.name_bytes(k):
        return "name"
    if int(fields["flags"]) & _DESCRIPTOR_FLAG:
        return None  # CRC-32 and sizes follow the data
    if int(fields["crc"]) != int(directory.crcs[k]):
        return "CRC-32"
    sizes: tuple[int, ...] = (int(fields["uncompressed"]), int(fields["compressed"]))
    if _ZIP64_MARK in sizes:
        extra = local[_LOCAL.size + name_length :]
        try:
            sizes = _zip64_fields(extra, *sizes)
        except (ZipError, struct.error):
            return "sizes (its ZIP64 extra field is missing or cut short)"
    if sizes != (int(directory.uncompressed[k]), int(directory.compressed[k])):
        return "sizes"
    return None


def open_compressed(path: str, member: Member) -> IO[bytes]:
    """A stream of the uncompressed content of a compressed ``member``.

    The stream stops at the size declared in the archive's directory and checks the
    CRC-32 once read to its end (``zipfile.BadZipFile`` when it differs). Members
    compressed otherwise than with DEFLATE are refused, as metatensor refuses them, and
    so are declared sizes that DEFLATE cannot reach from the stored bytes (a "zip
    bomb").
    """
    try:
        archive = zipfile.ZipFile(path)
        try:
            _check_compression(member, archive.getinfo(member.name).compress_type)
            return archive.open(member.name)
        finally:
            # the member stream keeps the file open on its own
            archive.close()
    except (zipfile.BadZipFile, NotImplementedError) as error:
        raise ZipError(f"can not decompress '{member.name}': {error}") from None


# names of the compression methods that other ZIP tools may use, by number
_METHOD_NAMES = {
    zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "LZMA", 9: "DEFLATE64", 93: "Zstandard",
}  # fmt: skip


def _check_compression(member: Member, method: int) -> None:
    """Refuse a member compressed otherwise than with DEFLATE (metatensor reads no other
    method), or declaring more bytes than DEFLATE can produce from its stored ones."""
    if method != zipfile.ZIP_DEFLATED:
        what = _METHOD_NAMES.get(method, "an unknown method")
        raise UnsupportedCompression(
            f"{UNSUPPORTED}Compression method not supported: '{member.name}' "
            f"is compressed with {what} (method {method}); metatensor reads members "
            "stored or compressed with DEFLATE only: archive the file again with one of "
            "them (`zip -r`, `zipfile.ZIP_DEFLATED`), or save the data again"
        )
    if member.uncompressed_size > MAX_DEFLATE_RATIO * member.size + 1024:
        raise ZipError(
            f"'{member.name}' declares {member.uncompressed_size} uncompressed bytes from "
            f"{member.size} compressed ones, more than DEFLATE can produce: the archive is "
            "damaged or crafted"
        )


def _encoded(name: str) -> tuple[bytes, int]:
    if name.isascii():
        return name.encode("ascii"), 0
    return name.encode("utf8"), _UTF8_FLAG


def local_header(name: str, crc: int, size: int) -> bytes:
    """The local header of a STORED member, with a ZIP64 extra field (as metatensor)."""
    encoded, flags = _encoded(name)
    return _local_struct(len(encoded)).pack(
        b"PK\x03\x04", _VERSION_NEEDED, flags, zipfile.ZIP_STORED, _DOS_TIME, _DOS_DATE,
        crc, 0xFFFFFFFF, 0xFFFFFFFF, len(encoded), _LOCAL_EXTRA.size,
        encoded, 1, 16, size, size,
    )  # fmt: skip


# the fixed fields of a local header (see _LOCAL), then those of its ZIP64 extra field
_LOCAL_RECORD = np.dtype(
    {
        "names": ["signature", "needed", "flags", "method", "time", "date", "crc",
                  "compressed", "uncompressed", "name", "extra"],
        "formats": ["<u4", "<u2", "<u2", "<u2", "<u2", "<u2", "<u4", "<u4", "<u4", "<u2",
                    "<u2"],
        "offsets": [0, 4, 6, 8, 10, 12, 14, 18, 22, 26, 28],
        "itemsize": _LOCAL.size,
    }
)  # fmt: skip
_LOCAL_EXTRA_RECORD = np.dtype(
    {"names": ["id", "length", "uncompressed", "compressed"],
     "formats": ["<u2", "<u2", "<u8", "<u8"], "itemsize": _LOCAL_EXTRA.size}
)  # fmt: skip


def local_header_sizes(names: list[str]) -> np.ndarray:
    """Length of the local header that :func:`local_header` writes for each of ``names``."""
    if "".join(names).isascii():
        lengths = np.fromiter(map(len, names), np.int64, len(names))
    else:
        lengths = np.fromiter((len(_encoded(name)[0]) for name in names), np.int64, len(names))
    return lengths + _LOCAL.size + _LOCAL_EXTRA.size


def local_headers(names: list[str], crcs: list[int], sizes: list[int]) -> bytes:
    """The local headers of STORED members (as :func:`local_header` makes each), one
    after the other: laid out all at once (numpy) when every name is ASCII, as
    metatensor's are."""
    count = len(names)
    joined = "".join(names)
    if not count or not joined.isascii():
        return b"".join(map(local_header, names, crcs, sizes))
    lengths = np.fromiter(map(len, names), np.int64, count)
    table = np.zeros(count, _LOCAL_RECORD)
    table["signature"] = int.from_bytes(b"PK\x03\x04", "little")
    table["needed"], table["method"] = _VERSION_NEEDED, zipfile.ZIP_STORED
    table["time"], table["date"], table["crc"] = _DOS_TIME, _DOS_DATE, crcs
    table["compressed"] = table["uncompressed"] = 0xFFFFFFFF
    table["name"], table["extra"] = lengths, _LOCAL_EXTRA.size
    extra = np.zeros(count, _LOCAL_EXTRA_RECORD)
    extra["id"], extra["length"] = 1, 16
    extra["uncompressed"] = extra["compressed"] = sizes
    rows = table.view(np.uint8).reshape(count, -1)
    tails = extra.view(np.uint8).reshape(count, -1)
    return with_names(rows, joined.encode("ascii"), lengths, tails).tobytes()


@functools.lru_cache(maxsize=256)
def _local_struct(name_length: int) -> struct.Struct:
    """A whole local header, its name of ``name_length`` bytes (one pack per member)."""
    return struct.Struct(_LOCAL.format + f"{name_length}s" + _LOCAL_EXTRA.format[1:])


def central_directory(
    names: list[str], crcs: list[int], sizes: list[int], offsets: list[int], start: int
) -> bytes:
    """The central directory and end records, written at ``start``.

    The members are ``names`` in file order, their CRC-32s, sizes and local header
    ``offsets``. When every name is ASCII and no size or offset needs ZIP64 fields (the
    common case), the records are laid out all at once (numpy); otherwise one by one.
    """
    count = len(names)
    joined = "".join(names)
    size_column = np.array(sizes, np.int64)
    offset_column = np.array(offsets, np.int64)
    if count and joined.isascii() and max(size_column.max(), offset_column.max()) < ZIP64_LIMIT:
        crc_column = np.array(crcs, np.uint32)
        directory: bytes | memoryview = _plain_records(
            names, joined, crc_column, size_column, offset_column
        )
    else:
        directory = b"".join(map(_record, names, crcs, sizes, offsets))
    size = len(directory)
    end = b""
    if count >= ZIP64_COUNT_LIMIT or size >= ZIP64_LIMIT or start >= ZIP64_LIMIT:
        end += _END64.pack(
            b"PK\x06\x06", _END64.size - 12, _VERSION_END64, _VERSION_END64,
            0, 0, count, count, size, start,
        )  # fmt: skip
        end += _LOCATOR64.pack(b"PK\x06\x07", 0, start + size, 1)
    small_count = count if count < ZIP64_COUNT_LIMIT else 0xFFFF
    end += _END.pack(b"PK\x05\x06", 0, 0, small_count, small_count, _field(size), _field(start), 0)
    # one copy of the records (a directory of 800,000 members is 65 MB)
    return b"".join([directory, end])


def _record(name: str, crc: int, size: int, offset: int) -> bytes:
    """The central directory record of one STORED member."""
    encoded, flags = _encoded(name)
    extra = b""
    if size >= ZIP64_LIMIT:
        extra += struct.pack("<QQ", size, size)
    if offset >= ZIP64_LIMIT:
        extra += struct.pack("<Q", offset)
    if extra:
        extra = struct.pack("<HH", 1, len(extra)) + extra
    return (
        _CENTRAL.pack(
            b"PK\x01\x02", _VERSION_MADE_BY,
            _VERSION_NEEDED_ZIP64 if extra else _VERSION_NEEDED,
            flags, zipfile.ZIP_STORED, _DOS_TIME, _DOS_DATE, crc,
            _field(size), _field(size),
            len(encoded), len(extra), 0, 0, 0, _UNIX_MODE, _field(offset),
        )
        + encoded
        + extra
    )  # fmt: skip


# every field of a central directory record (see _CENTRAL), at its offset
_CENTRAL_RECORD = np.dtype(
    {
        "names": ["signature", "made_by", "needed", "flags", "method", "time", "date", "crc",
                  "compressed", "uncompressed", "name", "extra", "comment", "disk",
                  "internal", "external", "offset"],
        "formats": ["<u4", "<u2", "<u2", "<u2", "<u2", "<u2", "<u2", "<u4", "<u4", "<u4",
                    "<u2", "<u2", "<u2", "<u2", "<u2", "<u4", "<u4"],
        "offsets": [0, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28, 30, 32, 34, 36, 38, 42],
        "itemsize": _CENTRAL.size,
    }
)  # fmt: skip


def _plain_records(
    names: list[str], joined: str, crcs: np.ndarray, sizes: np.ndarray, offsets: np.ndarray
) -> memoryview:
    """The records of STORED members with ASCII names ``names`` (``joined``: one after
    the other) and sizes and offsets below the ZIP64 limit, as :func:`_record` makes
    them one by one."""
    count = len(names)
    lengths = np.fromiter(map(len, names), np.int64, count)
    table = np.zeros(count, _CENTRAL_RECORD)
    table["signature"] = int.from_bytes(b"PK\x01\x02", "little")
    table["made_by"], table["needed"] = _VERSION_MADE_BY, _VERSION_NEEDED
    table["method"], table["time"], table["date"] = zipfile.ZIP_STORED, _DOS_TIME, _DOS_DATE
    table["crc"], table["compressed"], table["uncompressed"] = crcs, sizes, sizes
    table["name"], table["external"], table["offset"] = lengths, _UNIX_MODE, offsets
    rows = table.view(np.uint8).reshape(count, -1)
    return with_names(rows, joined.encode("ascii"), lengths, np.empty((count, 0), np.uint8)).data


def _field(value: int) -> int:
    """A 32-bit size or offset, or the marker saying it is in the ZIP64 fields."""
    return value if value < ZIP64_LIMIT else 0xFFFFFFFF


# -- CRC-32 of concatenated pieces ------------------------------------------------------
#
# CRC-32 is affine in the message: crc(A + B) = crc(A) * x^(8 len(B)) + crc(B) modulo
# the CRC polynomial. Polynomials are kept in the reflected bit order of zlib: the
# most significant bit holds the coefficient of x^0.

_POLY = 0xEDB88320
_ONE = 1 << 31


def _multiply(a: int, b: int) -> int:
    """``a * b`` modulo the CRC-32 polynomial."""
    product = 0
    for bit in range(32):
        if a & (_ONE >> bit):
            product ^= b
        # b *= x
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return product


@functools.lru_cache(maxsize=256)
def _shift(n_bytes: int) -> int:
    """``x^(8 n_bytes)`` modulo the CRC-32 polynomial."""
    result, power = _ONE, _ONE >> 8  # x^0, x^8
    while n_bytes:
        if n_bytes & 1:
            result = _multiply(result, power)
        power = _multiply(power, power)
        n_bytes >>= 1
    return result


def crc32_combine(crc1: int, crc2: int, length2: int) -> int:
    """The CRC-32 of ``A + B`` from ``crc32(A)``, ``crc32(B)`` and ``len(B)``."""
    return _multiply(_shift(length2), crc1) ^ crc2
