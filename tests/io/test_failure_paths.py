"""Failure paths of metatensor files: a changed byte anywhere in a file is reported as
damage (:class:`~metatensor_dask.errors.DamagedFileError`, naming the member), never
as a format problem of a file written so, nor as other values."""

from __future__ import annotations

import zipfile
from pathlib import Path

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.io import _npy, _zip

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
