""".mts files in the configurations a metatensor user tries: every dtype, gradients of
gradients, no blocks, and files damaged in their ZIP directory, which are refused with
a message saying so (``load``, the command line) or reported (``verify``), never read
as other numbers."""

from __future__ import annotations

import re
import struct

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.execution.cli import main
from metatensor_dask.testing import assert_equal_to_metatensor


def _labels(names: list[str], values) -> metatensor.Labels:
    return metatensor.Labels(names, np.asarray(values, dtype=np.int32).reshape(-1, len(names)))


def _map(dtype=np.float64) -> metatensor.TensorMap:
    """Two blocks with a positions gradient and a strain gradient of that gradient."""
    rng = np.random.default_rng(7)
    blocks = []
    for n in (5, 3):
        values = (rng.normal(size=(n, 2)) * 50).astype(dtype)
        block = metatensor.TensorBlock(
            values, _labels(["system"], np.arange(n)), [], _labels(["p"], np.arange(2))
        )
        rows = np.repeat(np.arange(n), 2)
        gradient = metatensor.TensorBlock(
            (rng.normal(size=(2 * n, 3, 2)) * 50).astype(dtype),
            _labels(["sample", "atom"], np.stack([rows, np.arange(2 * n) % 2], axis=1)),
            [_labels(["xyz"], np.arange(3))],
            _labels(["p"], np.arange(2)),
        )
        gradient.add_gradient(
            "strain",
            metatensor.TensorBlock(
                (rng.normal(size=(2 * n, 2, 3, 2)) * 50).astype(dtype),
                _labels(["sample"], np.arange(2 * n)),
                [_labels(["e"], np.arange(2)), _labels(["xyz"], np.arange(3))],
                _labels(["p"], np.arange(2)),
            ),
        )
        block.add_gradient("positions", gradient)
        blocks.append(block)
    return metatensor.TensorMap(_labels(["k"], [[0], [1]]), blocks)


@pytest.mark.parametrize(
    "dtype", [np.float16, np.float32, np.float64, np.int32, np.int64, np.complex128, np.bool_]
)
def test_every_dtype_with_gradients_of_gradients_round_trips_byte_for_byte(tmp_path, dtype):
    theirs = _map(dtype)
    metatensor.save(tmp_path / "a.mts", theirs)
    loaded = mtd.load(tmp_path / "a.mts", chunks=2)
    assert_equal_to_metatensor(loaded, theirs)
    mtd.save(tmp_path / "b.mts", loaded)
    assert (tmp_path / "b.mts").read_bytes() == (tmp_path / "a.mts").read_bytes()
    loaded.to_zarr(tmp_path / "a.zarr", chunks=2)
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "a.zarr", chunks=3), theirs)
    assert mtd.verify(tmp_path / "a.zarr").ok


def _central_records(raw: bytes) -> list[int]:
    """The offsets of the central directory records of a ZIP archive."""
    start = raw.index(b"PK\x01\x02")
    return [i for i in range(start, len(raw)) if raw.startswith(b"PK\x01\x02", i)]


def _with_offset_past_the_end(raw: bytes, member: int, offset: int) -> bytes:
    """The archive with the local header offset of a member beyond the file: ``offset``
    (or its own with the highest byte's bit 4 set, as a disk error would)."""
    record = _central_records(raw)[member]
    (own,) = struct.unpack("<I", raw[record + 42 : record + 46])
    data = bytearray(raw)
    data[record + 42 : record + 46] = struct.pack("<I", offset or own | 0x10000000)
    return bytes(data)


def _with_a_damaged_name(raw: bytes) -> bytes:
    """The archive with a byte of a member name in the central directory changed."""
    position = raw.rindex(b"blocks/0/properties.npy") + 2
    data = bytearray(raw)
    data[position] = 0x7F
    return bytes(data)


@pytest.mark.parametrize("member", [0, 7, -1])
@pytest.mark.parametrize("offset", [0, 30_000])
def test_a_member_offset_past_the_end_is_refused_as_damage(tmp_path, capsys, member, offset):
    metatensor.save(tmp_path / "a.mts", _map())
    raw = (tmp_path / "a.mts").read_bytes()
    assert len(raw) < 30_000
    bad = tmp_path / "bad.mts"
    bad.write_bytes(_with_offset_past_the_end(raw, member, offset))
    with pytest.raises(mtd.MetatensorError, match=r"bad\.mts.*past the end of the file"):
        mtd.load(bad)
    report = mtd.verify(bad)
    assert not report.ok
    assert "past the end of the file" in report.problems[0]
    assert main(["info", str(bad)]) == 1
    assert "past the end of the file" in capsys.readouterr().err


def test_verify_reports_a_damaged_member_name_instead_of_raising(tmp_path):
    metatensor.save(tmp_path / "a.mts", _map())
    bad = tmp_path / "bad.mts"
    bad.write_bytes(_with_a_damaged_name((tmp_path / "a.mts").read_bytes()))
    with pytest.raises(mtd.DamagedFileError, match=r"bad\.mts.*damaged.*disagree on its name"):
        mtd.load(bad)
    report = mtd.verify(bad)
    assert not report.ok
    assert "bl\\x7fcks" in report.problems[0]


def test_verify_reports_a_missing_file_as_for_a_missing_store(tmp_path):
    report = mtd.verify(tmp_path / "missing.mts")
    assert not report.ok
    assert "No such file" in report.problems[0]
    assert not mtd.verify(tmp_path / "missing.zarr").ok


@pytest.mark.parametrize("where", ["missing/t.mts", "folder.mts", "file/t.mts"])
def test_save_where_no_file_can_be_written_gives_metatensors_error(tmp_path, where):
    (tmp_path / "folder.mts").mkdir()
    (tmp_path / "file").write_text("mine")
    target = tmp_path / where
    with pytest.raises(mtd.MetatensorError, match=rf"^io error: .*'{re.escape(str(target))}'$"):
        mtd.save(target, mtd.from_metatensor(_map()))
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["file", "folder.mts"]
    with pytest.raises(metatensor.MetatensorError, match=r"^io error: "):
        metatensor.save(target, _map())
