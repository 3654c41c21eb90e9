"""A store in a folder that can not be written (a shared dataset: a read-only bind
mount when running as root, who ignores permission bits, the write permission removed
otherwise) is read, verified, described and converted from without writing anything
into it; a write into it fails before changing it."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import metatensor
import pytest
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.execution.cli import main
from metatensor_dask.testing import assert_equal_to_metatensor


def _files(folder: Path) -> dict[str, float]:
    return {str(path.relative_to(folder)): path.stat().st_mtime for path in folder.rglob("*")}


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[Path]:
    """``folder`` seen through a path where it can not be written."""
    if os.geteuid() != 0:
        modes = {path: path.stat().st_mode for path in [folder, *folder.rglob("*")]}
        for path, mode in modes.items():
            path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        try:
            yield folder
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
        return
    view = folder.parent / f"{folder.name}-read-only"
    view.mkdir()
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", folder, view], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"no read-only bind mount here: {mounted.stderr.decode().strip()}")
    try:
        yield view
    finally:
        subprocess.run(["umount", view], check=True)
        view.rmdir()


@pytest.fixture
def shared(tmp_path):
    folder = tmp_path / "dataset"
    folder.mkdir()
    tensor = make_metatensor(1)
    mtd.from_metatensor(tensor).to_zarr(folder / "s.zarr", chunks=4)
    metatensor.save(str(folder / "t.mts"), tensor)
    before = _files(folder)
    with _read_only(folder) as view:
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
