"""A store in a folder that can not be written (a shared dataset: a read-only bind
mount when running as root, who ignores permission bits, the write permission removed
otherwise) is read, verified, described and converted from without writing anything
into it; a write into it fails before changing it."""

from __future__ import annotations

from pathlib import Path

import metatensor
import pytest
from read_only_mounts import unwritable
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.execution.cli import main
from metatensor_dask.testing import assert_equal_to_metatensor


def _files(folder: Path) -> dict[str, float]:
    return {str(path.relative_to(folder)): path.stat().st_mtime for path in folder.rglob("*")}


@pytest.fixture
def shared(tmp_path):
    folder = tmp_path / "dataset"
    folder.mkdir()
    tensor = make_metatensor(1)
    mtd.from_metatensor(tensor).to_zarr(folder / "s.zarr", chunks=4)
    metatensor.save(str(folder / "t.mts"), tensor)
    before = _files(folder)
    with unwritable(folder) as view:
        yield view, tensor
    assert _files(folder) == before


def test_reading_needs_no_write_access(shared, tmp_path, capsys):
    view, tensor = shared
    assert_equal_to_metatensor(mtd.open_zarr(view / "s.zarr"), tensor)
    assert_equal_to_metatensor(mtd.load(view / "t.mts"), tensor)
    assert mtd.verify(view / "s.zarr").problems == []
    assert main(["info", str(view / "s.zarr")]) == 0
    assert main(["verify", str(view / "s.zarr"), "--quiet"]) == 0
    assert main(["convert", str(view / "s.zarr"), str(tmp_path / "c.mts"), "--quiet"]) == 0
    assert metatensor.equal(metatensor.load(str(tmp_path / "c.mts")), tensor)
    copy = tmp_path / "c.zarr"
    assert main(["convert", str(view / "t.mts"), str(copy), "--append", "--quiet"]) == 0
    assert_equal_to_metatensor(mtd.open_zarr(copy), tensor)


@pytest.mark.parametrize(
    "write",
    [
        lambda view: mtd.from_metatensor(make_metatensor(2)).to_zarr(view / "s.zarr", mode="w"),
        lambda view: mtd.from_metatensor(make_metatensor(2)).to_zarr(
            view / "s.zarr", append_dim="samples", renumber={"system": "next"}
        ),
        lambda view: mtd.from_metatensor(make_metatensor(1)).to_zarr(view / "s.zarr", mode="r+"),
        lambda view: mtd.from_metatensor(make_metatensor(1)).to_zarr(view / "new.zarr"),
        lambda view: mtd.discard_append(view / "s.zarr"),
    ],
    ids=["w", "append", "r+", "new", "discard_append"],
)
def test_a_write_into_it_fails_and_changes_nothing(shared, write):
    view, tensor = shared
    with pytest.raises(OSError, match=r"Read-only file system|Permission denied") as raised:
        write(view)
    assert str(view) in str(raised.value)
    assert_equal_to_metatensor(mtd.open_zarr(view / "s.zarr"), tensor)
