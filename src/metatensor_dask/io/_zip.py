"""The ZIP container of metatensor files: where each member's bytes are, and how to
write a STORED archive whose members are filled at known offsets.

Reading uses :mod:`zipfile` for the central directory, then each member's local header
for the offset of its first byte, so that array data can be read in place with
``os.pread``. Writing lays out every member before any data exists (all members are
STORED, so sizes are known in advance): data is written at its offset in any order, and
the CRC-32 of each member is assembled from the CRCs of its pieces.
"""

from __future__ import annotations

import functools
import os
import struct
import zipfile
from typing import IO, NamedTuple

__all__ = [
    "Member",
    "ZipError",
    "central_directory",
    "crc32_combine",
    "local_header",
    "local_header_size",
    "open_compressed",
    "read_directory",
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
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except zipfile.BadZipFile as error:
        raise ZipError(f"invalid Zip archive: {error}") from None
    members = {}
    fd = os.open(path, os.O_RDONLY)
    try:
        file_size = os.fstat(fd).st_size
        for info in infos:
            if info.flag_bits & 0x1:
                raise ZipError(f"'{info.filename}' is encrypted, which is not supported")
            local = os.pread(fd, _LOCAL.size, info.header_offset)
            if len(local) < _LOCAL.size or local[:4] != b"PK\x03\x04":
                raise ZipError(f"invalid Zip archive: bad local header for '{info.filename}'")
            name_length, extra_length = _LOCAL_LENGTHS.unpack_from(local, 26)
            offset = info.header_offset + _LOCAL.size + name_length + extra_length
            stored = info.compress_type == zipfile.ZIP_STORED
            if stored and info.file_size != info.compress_size:
                raise ZipError(
                    f"'{info.filename}' is stored uncompressed but its sizes differ "
                    f"({info.compress_size} and {info.file_size} bytes)"
                )
            if offset + info.compress_size > file_size:
                raise ZipError(
                    f"'{info.filename}' extends past the end of the file, which is truncated"
                )
            members[info.filename] = Member(
                info.filename, offset, info.compress_size, stored, info.CRC, info.file_size
            )
    finally:
        os.close(fd)
    return members


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
