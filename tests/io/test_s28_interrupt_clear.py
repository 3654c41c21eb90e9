"""``mode="w"`` interrupted (``KeyboardInterrupt``, Ctrl-C in a notebook) while it
empties the store: the same call, run again in the same process, writes the store."""

from __future__ import annotations

import os
import shutil
import threading

import numpy as np
import pytest
from zarr_writer_process import slow_tensor

import metatensor_dask as mtd
from metatensor_dask.io import zarr_write


class _Interrupted:
    """Deletions of files and folders that raise ``KeyboardInterrupt`` once the
    ``after``-th deletion by the main thread at the root of ``root`` (lock files aside)
    is done: a Ctrl-C landing there (Python raises it in the main thread only)."""

    def __init__(self, root, after: int):
        self.root, self.after, self.count = str(root), after, 0
        self.unlink, self.rmtree = os.unlink, shutil.rmtree

    def _done(self, path) -> None:
        folder, name = os.path.split(str(path))
        ours = threading.current_thread() is threading.main_thread()
        if ours and folder == self.root and not name.startswith(".lock"):
            self.count += 1
            if self.count == self.after:
                raise KeyboardInterrupt

    def unlinked(self, path, *args, **kwargs) -> None:
        self.unlink(path, *args, **kwargs)
        self._done(path)

    def removed(self, path, *args, **kwargs) -> None:
        self.rmtree(path, *args, **kwargs)
        self._done(path)


def test_an_overwrite_interrupted_while_it_empties_the_store_is_written_again(
    tmp_path, monkeypatch
):
    """Interrupted after each deletion but the last (the root document, once the others
    are gone, is the last entry that a clear may delete)."""
    tensor = slow_tensor(3, 0.0)
    new = mtd.multiply(tensor, 3.0)
    tensor.to_zarr(tmp_path / "first.zarr")
    entries = len(os.listdir(tmp_path / "first.zarr"))
    for after in range(1, entries):
        path = tmp_path / f"t{after}.zarr"
        tensor.to_zarr(path)
        interrupted = _Interrupted(path, after)
        with monkeypatch.context() as patched:
            patched.setattr(zarr_write.os, "unlink", interrupted.unlinked)
            patched.setattr(zarr_write.shutil, "rmtree", interrupted.removed)
            with pytest.raises(KeyboardInterrupt):
                new.to_zarr(path, mode="w")
        assert not (path / ".lock").exists()
        with pytest.raises(mtd.IncompleteStoreError):
            mtd.open_zarr(path)
        new.to_zarr(path, mode="w")
        got, expected = mtd.open_zarr(path).block(0), new.block(0)
        np.testing.assert_array_equal(got.values.compute(), expected.values.compute())
        np.testing.assert_array_equal(
            got.gradient("positions").values.compute(),
            expected.gradient("positions").values.compute(),
        )
