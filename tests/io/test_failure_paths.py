"""Failure paths of metatensor files: a changed byte anywhere in a file is reported as
damage (:class:`~metatensor_dask.errors.DamagedFileError`, naming the member), never
as a format problem of a file written so, nor as other values."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.io import _npy, _zip
from metatensor_dask.testing import assert_equal_to_metatensor

VALUES = "blocks/1/values.npy"
GRADIENT = "blocks/0/gradients/positions/values.npy"


def _map() -> metatensor.TensorMap:
    """Two blocks with a positions gradient, small enough to change every byte of."""
    rng = np.random.default_rng(7)
    blocks = []
    for _ in range(2):
        samples = metatensor.Labels(["system", "atom"], np.array([[0, i] for i in range(4)]))
        block = metatensor.TensorBlock(
            rng.normal(size=(4, 3, 2)),
            samples,
            [metatensor.Labels.range("m", 3)],
            metatensor.Labels.range("n", 2),
        )
        gradient_samples = metatensor.Labels(
            ["sample", "system", "atom"], np.array([[i // 2, 0, i % 3] for i in range(5)])
        )
        gradient = metatensor.TensorBlock(
            rng.normal(size=(5, 3, 3, 2)),
            gradient_samples,
            [metatensor.Labels.range("xyz", 3), metatensor.Labels.range("m", 3)],
            block.properties,
        )
        block.add_gradient("positions", gradient)
        blocks.append(block)
    return metatensor.TensorMap(metatensor.Labels.range("key", 2), blocks)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("saved") / "data.mts"
    metatensor.save(path, _map())
    return path


def _changed(source: Path, target: Path, position: int, bit: int) -> Path:
    data = bytearray(source.read_bytes())
    data[position] ^= bit
    target.write_bytes(bytes(data))
    return target


def _header_positions(path: Path, name: str) -> range:
    """The positions in the file of the ``.npy`` header of member ``name``."""
    member = _zip.read_directory(str(path))[name]
    raw = path.read_bytes()[member.offset : member.offset + member.size]
    return range(member.offset, member.offset + _npy.parse_header(raw).data_start)


@pytest.mark.parametrize("name", [VALUES, GRADIENT])
@pytest.mark.parametrize("bit", [0x01, 0x80])
def test_a_changed_byte_of_a_values_header_is_damage(saved, tmp_path, name, bit):
    """Whatever byte of the header changes (magic, version, length, dictionary,
    padding), reading the map says the file is damaged and names the member, as for a
    changed byte of its data (at load when the header can not be parsed, else when the
    values are computed); metatensor refuses these files too."""
    for position in _header_positions(saved, name):
        path = _changed(saved, tmp_path / "changed.mts", position, bit)
        with pytest.raises(mtd.DamagedFileError) as error:
            mtd.load(path).compute()
        message = str(error.value)
        assert f"'{path}' is damaged: Invalid checksum" in message, (position, message)
        assert f"in member '{name}'" in message
        assert message.endswith("write it again from its source")
        with pytest.raises(metatensor.MetatensorError):
            metatensor.load(str(path))


def test_a_header_written_unreadable_is_a_format_error(tmp_path):
    """A header that was written so (its CRC-32 is right) is not damage: the file is
    refused as metatensor refuses it, for its format."""
    raw = _map_bytes(tmp_path)
    path = tmp_path / "written.mts"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in raw.items():
            if name == VALUES:
                data = data.replace(b"'fortran_order': False", b"'fortran_order': Fals3")
            archive.writestr(name, data)
    with pytest.raises(mtd.MetatensorError, match=f"invalid .npy header.*at '{VALUES}'") as error:
        mtd.load(path)
    assert not isinstance(error.value, mtd.DamagedFileError)


def _map_bytes(tmp_path: Path) -> dict[str, bytes]:
    path = tmp_path / "source.mts"
    metatensor.save(path, _map())
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


# -- the ZIP structure: local headers and the central directory --------------------------

#: Fields of a local header that no reader uses (version needed, time and date): a
#: changed byte there changes nothing read; every other byte is compared with the
#: central directory's record of the member.
LOCAL_UNUSED = {4, 5, 10, 11, 12, 13}
#: Fields of a central directory record that no reader uses (versions, time and date,
#: disk number, attributes).
CENTRAL_UNUSED = {4, 5, 6, 7, 12, 13, 14, 15, *range(34, 42)}


def _small_map() -> metatensor.TensorMap:
    """One block with a gradient: few members, so that every byte of the ZIP structure
    can be changed in a few seconds."""
    block = metatensor.TensorBlock(
        np.arange(6.0).reshape(3, 2),
        metatensor.Labels.range("s", 3),
        [],
        metatensor.Labels.range("p", 2),
    )
    gradient = metatensor.TensorBlock(
        np.arange(8.0).reshape(4, 2),
        metatensor.Labels(["sample", "a"], np.array([[0, 0], [1, 0], [1, 1], [2, 0]])),
        [],
        block.properties,
    )
    block.add_gradient("g", gradient)
    return metatensor.TensorMap(metatensor.Labels.range("k", 1), [block])


def _structure(path: Path) -> tuple[list[tuple[str, int, int]], list[tuple[str, int, int]]]:
    """The local headers and the central directory records of ``path``: (member name,
    first byte, length) each."""
    data = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        infos = sorted(archive.infolist(), key=lambda info: info.header_offset)
    local = []
    for info in infos:
        start = info.header_offset
        names, extras = struct.unpack_from("<HH", data, start + 26)
        local.append((info.filename, start, 30 + names + extras))
    central, position = [], data.index(b"PK\x01\x02")
    for info in infos:
        names, extras, comment = struct.unpack_from("<HHH", data, position + 28)
        central.append((info.filename, position, 46 + names + extras + comment))
        position += 46 + names + extras + comment
    return local, central


def _read_back(path: Path) -> mtd.TensorMap:
    return mtd.load(path).compute()


def test_a_changed_byte_of_the_zip_structure_is_damage(tmp_path):
    """Every byte of every local header and central directory record, changed: the
    file is damaged (naming the member), unless the byte is one that no reader uses;
    then the map reads back the same."""
    source = tmp_path / "source.mts"
    metatensor.save(source, _small_map())
    expected = metatensor.load(str(source))
    local, central = _structure(source)
    cases = [(entry, LOCAL_UNUSED) for entry in local]
    cases += [(entry, CENTRAL_UNUSED) for entry in central]
    for (name, start, length), unused in cases:
        for offset in range(length):
            bit = 1 << (offset % 8)
            path = _changed(source, tmp_path / "changed.mts", start + offset, bit)
            if offset in unused:
                assert_equal_to_metatensor(_read_back(path), expected)
                continue
            with pytest.raises(mtd.DamagedFileError) as error:
                _read_back(path)
            message = str(error.value)
            assert f"'{path}' is damaged: " in message, (name, offset, message)
            assert message.endswith("write it again from its source")


def test_the_end_record_counts_its_records(tmp_path):
    """The end record counts the records twice (on its disk, in all): when they differ,
    or the records do not fill the directory, the file is damaged."""
    source = tmp_path / "source.mts"
    metatensor.save(source, _small_map())
    end = source.read_bytes().rindex(b"PK\x05\x06")
    for field in (8, 10):  # records on this disk, records in all
        path = _changed(source, tmp_path / "changed.mts", end + field, 1)
        with pytest.raises(mtd.DamagedFileError, match=r"is damaged: .*records"):
            mtd.load(path)


def test_members_with_data_descriptors_are_read(tmp_path):
    """A ZIP written to a stream that can not seek (Python's zipfile then sets the data
    descriptor flag, with zeros for the CRC-32 and sizes of the local headers) is not
    damage: its members are read and checked as others."""
    raw = _map_bytes(tmp_path)

    class Unseekable(io.RawIOBase):
        def __init__(self, file):
            self.file = file

        def writable(self):
            return True

        def write(self, data):
            return self.file.write(data)

    path = tmp_path / "streamed.mts"
    with path.open("wb") as file, zipfile.ZipFile(Unseekable(file), "w") as archive:
        for name, data in raw.items():
            archive.writestr(name, data)
    with zipfile.ZipFile(path) as archive:
        assert all(info.flag_bits & 0x8 for info in archive.infolist())
    assert_equal_to_metatensor(_read_back(path), _map())


@pytest.mark.parametrize("before_end", [30, 31, 40, 60])
def test_a_local_header_cut_by_the_end_of_the_file_is_damage(tmp_path, before_end):
    """A directory record pointing at a local header whose name or extra field the end
    of the file cuts: damage, not an error from deep inside."""
    source = tmp_path / "source.mts"
    metatensor.save(source, _small_map())
    data = bytearray(source.read_bytes())
    record = data.rindex(b"PK\x01\x02")
    struct.pack_into("<I", data, record + 42, len(data) - before_end)
    path = tmp_path / "cut.mts"
    path.write_bytes(bytes(data))
    with pytest.raises(mtd.DamagedFileError, match="is damaged: "):
        mtd.load(path)
