"""An overwrite (``mode="w"``) clearing a store while other writers come and go: it
keeps the lock files they write while trying to take the lock, and a file another
process removes meanwhile is not an error. Found racing two overwriting writers: the
winner failed with ``FileNotFoundError`` on the loser's ``.lock.<id>.tmp``, removed by
the loser between the winner's listing of the store and its removal of that file."""

from __future__ import annotations

import os
import sys

import metatensor
import numpy as np

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def _tensor(scale: float) -> metatensor.TensorMap:
    block = metatensor.TensorBlock(
        scale * np.arange(12.0).reshape(6, 2),
        metatensor.Labels(["system"], np.arange(6, dtype=np.int32).reshape(-1, 1)),
        [],
        metatensor.Labels.range("p", 2),
    )
    return metatensor.TensorMap(metatensor.Labels.range("key", 1), [block])


def test_an_overwrite_keeps_the_lock_attempts_of_other_writers(tmp_path):
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(_tensor(1.0)).to_zarr(path)
    attempt = path / ".lock.0123456789abcdef.tmp"  # another writer about to link it
    attempt.write_bytes(b"{}")
    mtd.from_metatensor(_tensor(2.0)).to_zarr(path, mode="w")
    assert attempt.read_bytes() == b"{}"
    assert_equal_to_metatensor(mtd.open_zarr(path), _tensor(2.0))


def test_an_overwrite_takes_a_file_removed_meanwhile_as_removed(tmp_path, monkeypatch):
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(_tensor(1.0)).to_zarr(path)
    leftover = path / "zarr.json.0123.partial"  # another process's, removed by it
    leftover.write_bytes(b"")
    listed = os.scandir

    def listed_then_removed(*folder):
        if sys._getframe(1).f_code.co_name != "_clear" or not leftover.exists():
            return listed(*folder)
        # the overwrite's listing of the store, then the other process removes its file
        with listed(*folder) as found:
            entries = list(found)
        leftover.unlink()
        return iter(entries)

    monkeypatch.setattr(os, "scandir", listed_then_removed)
    mtd.from_metatensor(_tensor(3.0)).to_zarr(path, mode="w")
    monkeypatch.undo()
    assert not leftover.exists()
    assert_equal_to_metatensor(mtd.open_zarr(path), _tensor(3.0))
