"""The ZIP directory of metatensor files, parsed all records at once: the same members
as Python's :mod:`zipfile` finds, whatever the names, sizes and layout."""

from __future__ import annotations

import zipfile
import zlib

import numpy as np
import pytest

from metatensor_dask.io import _zip


def _first_bytes(names: list[str], sizes: np.ndarray) -> np.ndarray:
    """Ask for varied numbers of first bytes: all, none, a few, more than stored."""
    return np.array([(0, 3, 10**6, 17)[i % 4] for i in range(len(names))], np.int64)


def _check(path) -> None:
    members = _zip.read_members(str(path), _first_bytes)
    data = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        assert sorted(members) == sorted(info.filename for info in infos)
        for info in infos:
            member = members[info.filename]
            content = archive.read(info)
            assert member.crc == info.CRC and member.uncompressed_size == info.file_size
            assert member.size == info.compress_size
            assert member.stored == (info.compress_type == zipfile.ZIP_STORED)
            if member.stored:
                assert data[member.offset : member.offset + member.size] == content
        # the first bytes asked for, the members in file order (as `wanted` sees them)
        ordered = sorted(infos, key=lambda info: info.header_offset)
        asked = _first_bytes([i.filename for i in ordered], None)
        for info, count in zip(ordered, asked, strict=True):
            member = members[info.filename]
            if min(count, member.size) and member.stored:
                assert member.head == archive.read(info)[:count]
            else:
                assert member.head == b""


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_plain_names_and_sizes(tmp_path, compression):
    path = tmp_path / "plain.zip"
    with zipfile.ZipFile(path, "w", compression) as archive:
        for i in range(50):
            archive.writestr(f"blocks/{i}/values.npy", bytes(range(i % 7 * 30)))
            archive.writestr(f"blocks/{i}/samples.npy", b"x" * i)
    _check(path)


def test_names_that_are_not_ascii_or_hold_a_signature(tmp_path):
    """UTF-8 names (flagged), code page 437 names (not flagged), and names holding the
    bytes of a directory record's signature: the records are walked one by one."""
    path = tmp_path / "names.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ascii.npy", b"abc")
        archive.writestr("énergie/λ.npy", b"defg")
        archive.writestr("PK\x01\x02/inside.npy", b"hij")
        archive.writestr("last.npy", b"k" * 100)
    _check(path)
    members = _zip.read_directory(str(path))
    assert "énergie/λ.npy" in members and "PK\x01\x02/inside.npy" in members


def test_cp437_names(tmp_path):
    path = tmp_path / "cp437.zip"
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("caf\u00e9.npy")
        archive.writestr(info, b"data")
        archive.writestr("b.npy", b"more")
    data = bytearray(path.read_bytes())
    # clear the UTF-8 flag of both the local and the central header: the name's bytes
    # are then code page 437, as zipfile reads them
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        position = data.index(signature)
        flags = int.from_bytes(data[position + flags_at : position + flags_at + 2], "little")
        data[position + flags_at : position + flags_at + 2] = (flags & ~0x800).to_bytes(2, "little")
    path.write_bytes(bytes(data))
    with zipfile.ZipFile(path) as archive:
        expected = archive.infolist()[0].filename
    assert expected != "café.npy"
    assert expected in _zip.read_directory(str(path))
    _check(path)


def test_a_stub_before_the_archive_and_zip64_records(tmp_path):
    inner = tmp_path / "inner.zip"
    with zipfile.ZipFile(inner, "w") as archive:
        for i in range(20):
            with archive.open(f"m{i}.npy", "w", force_zip64=True) as member:
                member.write(bytes([i]) * (i * 13))
    _check(inner)
    path = tmp_path / "stub.zip"
    path.write_bytes(b"#!/bin/sh\nexit 0\n" * 10 + inner.read_bytes())
    _check(path)


def test_an_empty_archive(tmp_path):
    path = tmp_path / "empty.zip"
    with zipfile.ZipFile(path, "w"):
        pass
    assert _zip.read_members(str(path), _first_bytes) == {}


def test_local_headers_out_of_directory_order(tmp_path):
    """A directory whose records are not in the order of the local headers."""
    path = tmp_path / "order.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name in ("a.npy", "b.npy", "c.npy"):
            archive.writestr(name, name.encode() * 5)
    data = path.read_bytes()
    start = data.index(b"PK\x01\x02")
    end = data.index(b"PK\x05\x06")
    records = []
    position = start
    while position < end:
        length = 46 + sum(
            int.from_bytes(data[position + k : position + k + 2], "little") for k in (28, 30, 32)
        )
        records.append(data[position : position + length])
        position += length
    path.write_bytes(data[:start] + b"".join(reversed(records)) + data[end:])
    _check(path)


def test_damaged_directories_are_refused(tmp_path):
    path = tmp_path / "damaged.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(5):
            archive.writestr(f"m{i}.npy", b"x" * 10)
    data = bytearray(path.read_bytes())
    second = data.index(b"PK\x01\x02", data.index(b"PK\x01\x02") + 1)
    data[second : second + 4] = b"XXXX"
    path.write_bytes(bytes(data))
    with pytest.raises(_zip.ZipError, match="Bad magic number for central directory"):
        _zip.read_directory(str(path))


def test_the_directory_written_at_once_is_the_one_written_record_by_record(tmp_path):
    """The records laid out all at once (ASCII names, no ZIP64 field) are those made one
    by one; an archive of them reads back with zipfile."""
    rng = np.random.default_rng(1)
    entries = []
    offset = 0
    for i in range(300):
        size = int(rng.integers(0, 5000))
        name = f"blocks/{i}/{'values' if i % 2 else 'samples'}.npy"
        entries.append((name, int(rng.integers(0, 2**32)), size, offset))
        offset += int(rng.integers(100, 10000))
    one_by_one = b"".join(_zip._record(*entry) for entry in entries)
    directory = _zip.central_directory(*map(list, zip(*entries, strict=True)), offset)
    assert directory[: len(one_by_one)] == one_by_one
    # a real archive: members written at their offsets, then the directory
    path = tmp_path / "written.zip"
    data = bytearray()
    records = []
    for name, content in (("a.npy", b"abc"), ("b/c.npy", b""), ("d.npy", bytes(range(200)))):
        crc = zlib.crc32(content)
        records.append((name, crc, len(content), len(data)))
        data += _zip.local_header(name, crc, len(content)) + content
    columns = map(list, zip(*records, strict=True))
    path.write_bytes(bytes(data) + _zip.central_directory(*columns, len(data)))
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        assert archive.read("d.npy") == bytes(range(200))
    _check(path)


def test_names_mixing_ascii_and_not_across_a_large_directory(tmp_path):
    """Many ASCII names around one that is not, and one holding a NUL byte: every name
    decoded as Python's zipfile does, each whole."""
    path = tmp_path / "mixed.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(300):
            archive.writestr(f"blocks/{i}/values.npy", bytes(i % 5))
            if i == 150:
                archive.writestr("blocks/150/énergie.npy", b"e")
    _check(path)
    data = bytearray(path.read_bytes())
    # a NUL byte inside a name, in its local and central headers (zipfile writes none)
    assert data.count(b"blocks/7/values.npy") == 2
    data[:] = data.replace(b"blocks/7/values.npy", b"blocks/7\0values.npy")
    path.write_bytes(bytes(data))
    members = _zip.read_directory(str(path))
    assert "blocks/7\0values.npy" in members and len(members) == 301
    assert "énergie" in "".join(members)


@pytest.mark.parametrize("extra_name", ["blocks/1/gradients/x/values.npy", "énergie/λ.npy"])
def test_local_headers_laid_out_at_once_are_those_made_one_by_one(extra_name):
    """ASCII names (numpy, all at once) or one that is not (one by one): the same bytes
    as :func:`_zip.local_header` for each, sizes past the 32-bit limit included."""
    rng = np.random.default_rng(2)
    names = [f"blocks/{i}/{'values' if i % 3 else 'samples'}.npy" for i in range(200)]
    names.insert(57, extra_name)
    crcs = rng.integers(0, 2**32, len(names)).tolist()
    sizes = rng.integers(0, 2**40, len(names)).tolist()
    one_by_one = [_zip.local_header(*member) for member in zip(names, crcs, sizes, strict=True)]
    assert _zip.local_headers(names, crcs, sizes) == b"".join(one_by_one)
    assert _zip.local_header_sizes(names).tolist() == [len(h) for h in one_by_one]
    assert _zip.local_headers([], [], []) == b""
