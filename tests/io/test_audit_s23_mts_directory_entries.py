"""A `.mts` file archived again by a ZIP tool that writes an entry for every folder
(`zip -r`, `shutil.make_archive`): metatensor loads it, and so does `load`; the folder
entries are not read. Their names are checked as the others'."""

import zipfile

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.datasets import tutorial_file
from metatensor_dask.io.mts import check_file
from metatensor_dask.testing import assert_equal_to_metatensor

SOURCE = tutorial_file("spherical-expansion.npz")


def _folders(name):
    """The folders holding the member ``name``, outermost first, each ending with '/'."""
    parts = name.split("/")[:-1]
    return ["/".join(parts[: i + 1]) + "/" for i in range(len(parts))]


def _archived_again(path, source=SOURCE, extra_folder=None):
    """``source`` archived with an entry for each folder before its first member."""
    written = set()
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w") as copy:
        if extra_folder is not None:
            copy.writestr(zipfile.ZipInfo(extra_folder), b"")
        for name in original.namelist():
            for folder in _folders(name):
                if folder not in written:
                    copy.writestr(zipfile.ZipInfo(folder), b"")
                    written.add(folder)
            copy.writestr(name, original.read(name))
    return str(path)


def test_a_map_with_folder_entries_loads_as_metatensor_loads_it(tmp_path):
    path = _archived_again(tmp_path / "folders.mts")
    with zipfile.ZipFile(path) as archive:
        assert "blocks/0/gradients/positions/" in archive.namelist()
    ours = mtd.load(path, chunks=1)
    assert_equal_to_metatensor(ours.compute(), metatensor.load(path))
    check_file(path)


def test_a_block_with_folder_entries_loads_as_metatensor_loads_it(tmp_path):
    source = tmp_path / "block.mts"
    metatensor.save(str(source), metatensor.load(SOURCE).block(3))
    path = _archived_again(tmp_path / "folders.mts", source=str(source))
    assert_equal_to_metatensor(mtd.load_block(path), metatensor.load_block(path))


@pytest.mark.parametrize("folder", ["blocks/../", "blocks//", "/"])
def test_folder_entries_with_unsafe_names_are_refused(tmp_path, folder):
    path = _archived_again(tmp_path / "unsafe.mts", extra_folder=folder)
    with pytest.raises(mtd.UnsafeNameError, match="not a single safe path component"):
        mtd.load(path)


def test_values_are_not_taken_from_a_folder_entry(tmp_path):
    path = _archived_again(tmp_path / "folders.mts")
    values = mtd.load(path).block(0).values.compute()
    np.testing.assert_array_equal(values, metatensor.load(path).block(0).values)
