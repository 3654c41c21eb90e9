"""The permissions of a store's files: as zarr-python's, so that a group sharing a
project folder (umask ``002``) can append to each other's stores, and kept where a
write replaces a linked file instead of writing into it.

Files were created with mode ``0o644`` whatever the umask: with umask ``002`` the
chunks and documents of a store were not writable by the group, where zarr-python's
and Python's own files are (``0o664``), and a file of a hard-linked snapshot written
again was created anew with ``0o644`` instead of its own permissions."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import metatensor.operations as mops
import numpy as np
import pytest
import zarr
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

TENSOR = make_metatensor(3, nested=False, n_samples=(9, 0, 5), n_properties=(3, 2, 0))
MORE = make_metatensor(4, nested=False, n_samples=(3, 0, 2), n_properties=(3, 2, 0))


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    """This process's umask set to ``mask`` (the process's only: the test runs alone
    in it meanwhile)."""
    before = os.umask(mask)
    try:
        yield
    finally:
        os.umask(before)


def _modes(folder: Path) -> dict[str, int]:
    """The permission bits of each file under ``folder``, by its relative path."""
    return {
        str(path.relative_to(folder)): stat.S_IMODE(path.stat().st_mode)
        for path in folder.rglob("*")
        if path.is_file()
    }


def test_files_take_the_umask_as_zarr_python_does(tmp_path):
    """Written, appended to and written again in place with umask ``002``: every file of
    the store is group-writable, as the files of a zarr-python array written alongside."""
    store = tmp_path / "s.zarr"
    with _umask(0o002):
        zarr.create_array(tmp_path / "zarr-python.zarr", data=np.arange(10.0), chunks=(4,))
        mtd.from_metatensor(TENSOR).to_zarr(store, chunks=4)
        mtd.from_metatensor(MORE).to_zarr(store, append_dim="samples", renumber={"system": "next"})
        mtd.from_metatensor(mops.multiply(TENSOR, 2.0)).to_zarr(tmp_path / "r.zarr", chunks=4)
        mtd.from_metatensor(TENSOR).to_zarr(tmp_path / "r.zarr", mode="r+")
    zarr_python = set(_modes(tmp_path / "zarr-python.zarr").values())
    assert zarr_python == {0o664}
    assert set(_modes(store).values()) == zarr_python
    assert set(_modes(tmp_path / "r.zarr").values()) == zarr_python
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "r.zarr"), TENSOR)


def _copy(source: Path, target: Path, link: str) -> None:
    """``target``, a copy of the store ``source``: its files linked to ``source``'s
    (``hard``, as ``cp -al``; ``symbolic``), or copied with their permissions (``none``)."""
    copy = {"hard": os.link, "symbolic": os.symlink, "none": shutil.copy2}[link]
    shutil.copytree(source, target, copy_function=lambda a, b: copy(a, b))


@pytest.mark.parametrize("link", ["hard", "symbolic"])
def test_an_append_gives_linked_files_the_permissions_it_gives_copied_ones(tmp_path, link):
    """The store's files were made ``0o640``, then the store copied or linked to (a
    snapshot by ``cp -al``, links of a deduplicating tool): the same append to each
    leaves every file with the same permissions, the linked files written again anew
    with those they had, and the files linked to as they were."""
    original, linked, copied = (tmp_path / f"{name}.zarr" for name in ("o", "linked", "copied"))
    mtd.from_metatensor(TENSOR).to_zarr(original, chunks=4)
    for path in original.rglob("*"):
        if path.is_file():
            path.chmod(0o640)
    _copy(original, linked, link)
    _copy(original, copied, "none")
    with _umask(0o022):
        for store in (linked, copied):
            mtd.from_metatensor(MORE).to_zarr(
                store, append_dim="samples", renumber={"system": "next"}
            )
    assert 0o640 in _modes(copied).values()
    assert _modes(linked) == _modes(copied)
    assert set(_modes(original).values()) == {0o640}
    assert_equal_to_metatensor(mtd.open_zarr(original), TENSOR)
    assert mtd.verify(linked).problems == []
