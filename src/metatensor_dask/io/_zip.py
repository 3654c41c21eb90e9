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
import os
import struct
import zipfile
from collections.abc import Callable
from typing import IO, NamedTuple

import numpy as np

__all__ = [
    "Member",
    "ZipError",
    "central_directory",
    "crc32_combine",
    "local_header",
    "local_header_size",
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


class Member(NamedTuple):
    """Where the bytes of one member are (a tuple: archives hold many thousands)."""

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


def read_directory(path: str) -> dict[str, Member]:
    """Every member of the archive at ``path``, by name.

    Raises :class:`ZipError` for a file that is not a ZIP archive, is truncated or has
    encrypted members; ``OSError`` when the file can not be read.
    """
    return read_members(path, lambda name, size: 0)[0]


def read_members(
    path: str, wanted: Callable[[str, int], int]
) -> tuple[dict[str, Member], dict[str, bytes]]:
    """Every member of the archive at ``path``, by name, and the first bytes of some.

    The central directory is read at once and parsed here; the local headers (which
    give where each member's bytes start) are read in few reads of adjacent bytes, with
    the first ``wanted(name, size)`` bytes of each stored member: a file of many small
    members (the Labels and headers of many blocks) is read in a few system calls.

    Returns
    -------
    members, heads
        The members by name, and for each stored member whose ``wanted`` is positive,
        its first ``min(wanted, size)`` bytes (unchecked).

    Raises
    ------
    ZipError
        For a file that is not a ZIP archive, is truncated, spans several disks or has
        encrypted members.
    OSError
        When the file can not be read.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        file_size = os.fstat(fd).st_size
        try:
            records = _central_records(fd, file_size)
        except (struct.error, IndexError, ValueError, UnicodeDecodeError) as error:
            raise ZipError(f"invalid Zip archive: {error}") from None
        return _locate(fd, file_size, records, wanted)
    finally:
        os.close(fd)


_Record = tuple[int, str, int, int, int, int, int]
"""What the central directory says of a member: its local header's offset, name,
flags, compression method, CRC-32, compressed and uncompressed sizes."""


# the end of central directory record is at most this far from the end (its comment)
_END_SEARCH = _END.size + 0xFFFF


def _central_records(fd: int, file_size: int) -> list[_Record]:
    """The records of the central directory, in file order of their local headers."""
    tail_start = max(0, file_size - _END_SEARCH)
    tail = os.pread(fd, file_size - tail_start, tail_start)
    end = tail.rfind(b"PK\x05\x06")
    while end >= 0 and end + _END.size + int.from_bytes(tail[end + 20 : end + 22], "little") > len(
        tail
    ):
        end = tail.rfind(b"PK\x05\x06", 0, end)
    if end < 0 or end + _END.size > len(tail):
        raise ZipError("invalid Zip archive: File is not a zip file")
    _, disk, start_disk, _, count, size, offset, _ = _END.unpack_from(tail, end)
    location = tail_start + end
    locator = end - _LOCATOR64.size
    if locator >= 0 and tail[locator : locator + 4] == b"PK\x06\x07":
        _, _, end64, _ = _LOCATOR64.unpack_from(tail, locator)
        record = os.pread(fd, _END64.size, end64)
        if len(record) < _END64.size or record[:4] != b"PK\x06\x06":
            raise ZipError("invalid Zip archive: corrupt ZIP64 end of central directory record")
        fields = _END64.unpack_from(record)
        disk, start_disk, count, size, offset = (
            fields[4],
            fields[5],
            fields[7],
            fields[8],
            fields[9],
        )
        location = end64
    if disk or start_disk:
        raise ZipError("invalid Zip archive: archives that span several disks are not supported")
    # bytes before the archive (a self-extracting stub) shift every offset
    shift = location - size - offset
    if shift < 0 or size > location:
        raise ZipError("invalid Zip archive: the central directory does not fit in the file")
    directory = os.pread(fd, size, offset + shift)
    if len(directory) < size:
        raise ZipError("invalid Zip archive: the central directory is truncated")
    records: list[_Record] = []
    position = 0
    unpack = _CENTRAL.unpack_from
    for _ in range(count):
        fields = unpack(directory, position)
        if fields[0] != b"PK\x01\x02":
            raise ZipError("invalid Zip archive: Bad magic number for central directory")
        flags, method, crc = fields[3], fields[4], fields[7]
        compressed, uncompressed, header_offset = fields[8], fields[9], fields[16]
        start = position + _CENTRAL.size
        name_end = start + fields[10]
        position = name_end + fields[11] + fields[12]
        if position > size:
            raise ZipError("invalid Zip archive: the central directory is truncated")
        if 0xFFFFFFFF in (compressed, uncompressed, header_offset):
            uncompressed, compressed, header_offset = _zip64_fields(
                directory[name_end : name_end + fields[11]],
                uncompressed,
                compressed,
                header_offset,
            )
        raw = directory[start:name_end]
        if raw.isascii():
            name = raw.decode("ascii")
        else:
            name = raw.decode("utf8" if flags & _UTF8_FLAG else "cp437")
        records.append((header_offset + shift, name, flags, method, crc, compressed, uncompressed))
    records.sort(key=_first)
    return records


def _first(record: _Record) -> int:
    return record[0]


def _zip64_fields(extra: bytes, *values: int) -> tuple[int, ...]:
    """The sizes and offset a ZIP64 extra field holds for those marked 0xFFFFFFFF
    (uncompressed size, compressed size, local header offset: in this order)."""
    position = 0
    while position + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, position)
        if kind == 1:
            data = extra[position + 4 : position + 4 + length]
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


def _locate(
    fd: int, file_size: int, records: list[_Record], wanted: Callable[[str, int], int]
) -> tuple[dict[str, Member], dict[str, bytes]]:
    """Read the local headers of ``records`` (and the wanted first bytes of each) in
    runs of adjacent bytes; the members and those bytes."""
    ranges = []
    for header_offset, name, flags, method, _, compressed, _ in records:
        if flags & 0x1:
            raise ZipError(f"'{name}' is encrypted, which is not supported")
        want = min(wanted(name, compressed), compressed) if method == zipfile.ZIP_STORED else 0
        # the local header repeats the name: as long as in the directory, in practice
        stop = header_offset + _LOCAL.size + len(name) + _EXTRA_GUESS + want
        ranges.append((header_offset, stop, want))
    members: dict[str, Member] = {}
    heads: dict[str, bytes] = {}
    i = 0
    while i < len(records):
        # a run of ranges with small gaps between them, read at once
        start, stop, _ = ranges[i]
        j = i + 1
        while j < len(records) and ranges[j][0] - stop <= _GAP and ranges[j][1] - start <= _RUN:
            stop = max(stop, ranges[j][1])
            j += 1
        data = os.pread(fd, min(stop, file_size) - start, start)
        found = _run_members(records[i:j], data, start, file_size)
        if found is None:  # one by one, to say what is wrong
            found = [
                _member(record, _local_header(fd, data, start, record[0]), file_size)
                for record in records[i:j]
            ]
        for member, (_, _, want) in zip(found, ranges[i:j], strict=True):
            members[member.name] = member
            if want > 0:
                begin = member.offset - start
                head = data[begin : begin + want]
                heads[member.name] = (
                    head if len(head) == want else os.pread(fd, want, member.offset)
                )
        i = j
    return members, heads


def _local_header(fd: int, data: bytes, start: int, header_offset: int) -> bytes:
    """The local header at ``header_offset``, from ``data`` (read from ``start``) or
    read again when ``data`` ends before it."""
    local = data[header_offset - start : header_offset - start + _LOCAL.size]
    return local if len(local) == _LOCAL.size else os.pread(fd, _LOCAL.size, header_offset)


_LOCAL_SIGNATURE = np.frombuffer(b"PK\x03\x04", np.uint8)


def _run_members(
    records: list[_Record], data: bytes, start: int, file_size: int
) -> list[Member] | None:
    """The members of ``records`` from their local headers in ``data`` (read from
    ``start``), all at once; None when one of them is not whole in ``data`` or is
    wrong (:func:`_member` then says why)."""
    count = len(records)
    headers = np.fromiter((record[0] for record in records), np.int64, count) - start
    if count == 0 or headers.max() + _LOCAL.size > len(data):
        return None
    local = np.frombuffer(data, np.uint8)[headers[:, None] + np.arange(_LOCAL.size)]
    lengths = local[:, 26:30].astype(np.int64)
    offsets = headers + start + _LOCAL.size + lengths[:, 0] + 256 * lengths[:, 1]
    offsets += lengths[:, 2] + 256 * lengths[:, 3]
    compressed = np.fromiter((record[5] for record in records), np.int64, count)
    uncompressed = np.fromiter((record[6] for record in records), np.int64, count)
    stored = np.fromiter((record[3] == zipfile.ZIP_STORED for record in records), bool, count)
    if (
        not (local[:, :4] == _LOCAL_SIGNATURE).all()
        or (stored & (compressed != uncompressed)).any()
        or (offsets + compressed > file_size).any()
    ):
        return None
    return [
        Member(record[1], offset, record[5], is_stored, record[4], record[6])
        for record, offset, is_stored in zip(
            records, offsets.tolist(), stored.tolist(), strict=True
        )
    ]


def _member(record: _Record, local: bytes, file_size: int) -> Member:
    """The member of ``record`` whose local header is ``local``, checked."""
    header_offset, name, _, method, crc, compressed, uncompressed = record
    if len(local) < _LOCAL.size or local[:4] != b"PK\x03\x04":
        raise ZipError(f"invalid Zip archive: bad local header for '{name}'")
    name_length, extra_length = _LOCAL_LENGTHS.unpack_from(local, 26)
    offset = header_offset + _LOCAL.size + name_length + extra_length
    stored = method == zipfile.ZIP_STORED
    if stored and uncompressed != compressed:
        raise ZipError(
            f"'{name}' is stored uncompressed but its sizes differ "
            f"({compressed} and {uncompressed} bytes)"
        )
    if offset + compressed > file_size:
        raise ZipError(f"'{name}' extends past the end of the file, which is truncated")
    return Member(name, offset, compressed, stored, crc, uncompressed)


def open_compressed(path: str, member: Member) -> IO[bytes]:
    """A stream of the uncompressed content of a compressed ``member``.

    The stream stops at the size declared in the archive's directory and checks the
    CRC-32 once read to its end (``zipfile.BadZipFile`` when it differs). Declared
    sizes that DEFLATE cannot reach from the stored bytes (a "zip bomb") are refused.
    """
    if member.uncompressed_size > MAX_DEFLATE_RATIO * member.size + 1024:
        raise ZipError(
            f"'{member.name}' declares {member.uncompressed_size} uncompressed bytes from "
            f"{member.size} compressed ones, more than DEFLATE can produce: the archive is "
            "damaged or crafted"
        )
    try:
        archive = zipfile.ZipFile(path)
        try:
            return archive.open(member.name)
        finally:
            # the member stream keeps the file open on its own
            archive.close()
    except (zipfile.BadZipFile, NotImplementedError) as error:
        raise ZipError(f"can not decompress '{member.name}': {error}") from None


def _encoded(name: str) -> tuple[bytes, int]:
    if name.isascii():
        return name.encode("ascii"), 0
    return name.encode("utf8"), _UTF8_FLAG


def local_header_size(name: str) -> int:
    """Length of the local header that :func:`local_header` writes for ``name``."""
    return _LOCAL.size + len(_encoded(name)[0]) + _LOCAL_EXTRA.size


def local_header(name: str, crc: int, size: int) -> bytes:
    """The local header of a STORED member, with a ZIP64 extra field (as metatensor)."""
    encoded, flags = _encoded(name)
    return (
        _LOCAL.pack(
            b"PK\x03\x04", _VERSION_NEEDED, flags, zipfile.ZIP_STORED, _DOS_TIME, _DOS_DATE,
            crc, 0xFFFFFFFF, 0xFFFFFFFF, len(encoded), _LOCAL_EXTRA.size,
        )
        + encoded
        + _LOCAL_EXTRA.pack(1, 16, size, size)
    )  # fmt: skip


def central_directory(entries: list[tuple[str, int, int, int]], start: int) -> bytes:
    """The central directory and end records, written at ``start``.

    ``entries`` are ``(name, crc, size, local header offset)`` in file order.
    """
    records = []
    for name, crc, size, offset in entries:
        encoded, flags = _encoded(name)
        extra = b""
        if size >= ZIP64_LIMIT:
            extra += struct.pack("<QQ", size, size)
        if offset >= ZIP64_LIMIT:
            extra += struct.pack("<Q", offset)
        if extra:
            extra = struct.pack("<HH", 1, len(extra)) + extra
        records.append(
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
    directory = b"".join(records)
    count, size = len(entries), len(directory)
    end = b""
    if count >= ZIP64_COUNT_LIMIT or size >= ZIP64_LIMIT or start >= ZIP64_LIMIT:
        end += _END64.pack(
            b"PK\x06\x06", _END64.size - 12, _VERSION_END64, _VERSION_END64,
            0, 0, count, count, size, start,
        )  # fmt: skip
        end += _LOCATOR64.pack(b"PK\x06\x07", 0, start + size, 1)
    small_count = count if count < ZIP64_COUNT_LIMIT else 0xFFFF
    end += _END.pack(b"PK\x05\x06", 0, 0, small_count, small_count, _field(size), _field(start), 0)
    return directory + end


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
