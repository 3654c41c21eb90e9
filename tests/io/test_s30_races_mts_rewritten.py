"""A loaded ``.mts`` file rewritten in place while a task reads it (``metatensor.save``
or ``cp`` over it: the same inode, truncated then written) is refused by that read,
saying the file changed since it was loaded, never read as the new file's values under
the old file's labels, nor reported as a file cut short.

The writer acts at a chosen moment: between the read task's check of the file and its
read of the bytes, the one moment a check made only before the read misses.
"""

from __future__ import annotations

import os
from pathlib import Path

import metatensor
import numpy as np
import pytest
from test_audit_s22_mts_replaced import _doubled
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd

CHANGED = "changed since it was loaded"


def _rewrite_at_first_read(monkeypatch, path: Path, new: bytes | None) -> None:
    """Make the first ``os.preadv`` of this process rewrite ``path`` in place first:
    with ``new`` (a file of the same size), or cut it to 100 bytes (``None``, a writer
    caught between its truncation and its writes)."""
    real = os.preadv
    done = []

    def preadv(fd: int, buffers: list, offset: int) -> int:
        if not done:
            done.append(True)
            with open(path, "r+b") as file:
                if new is None:
                    file.truncate(100)
                else:
                    file.write(new)
        return real(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", preadv)


def _saved(tmp_path: Path, tiny: bool) -> tuple[Path, metatensor.TensorMap, bytes]:
    """A file of a map (of tiny blocks: read by groups), its map, and the bytes of the
    same map with other values (a file of the same size)."""
    samples = (2, 0, 3) if tiny else (60, 0, 41)
    tensor = make_metatensor(7, n_samples=samples)
    path, other = tmp_path / "data.mts", tmp_path / "other.mts"
    metatensor.save(str(path), tensor)
    metatensor.save(str(other), _doubled(tensor))
    assert path.stat().st_size == other.stat().st_size
    # written long ago: a rewrite now changes its modification time whatever the clock
    os.utime(path, (1_000_000_000, 1_000_000_000))
    return path, tensor, other.read_bytes()


@pytest.mark.parametrize("tiny", [False, True], ids=["chunks", "groups"])
@pytest.mark.parametrize("cut", [False, True], ids=["same-size", "truncated"])
def test_rewritten_during_a_read(tmp_path, monkeypatch, tiny, cut):
    path, tensor, new = _saved(tmp_path, tiny)
    loaded = mtd.load(str(path), chunks=16)
    _rewrite_at_first_read(monkeypatch, path, None if cut else new)
    with pytest.raises(mtd.MetatensorDaskError, match=CHANGED):
        loaded.block(0).values[:5].compute()
    monkeypatch.undo()
    # the file as it is now, loaded again, reads whole
    metatensor.save(str(path), tensor)
    again = mtd.to_metatensor(mtd.load(str(path), chunks=16).compute())
    assert metatensor.equal(again, tensor)


def test_read_before_the_rewrite_is_the_old_data(tmp_path):
    path, tensor, new = _saved(tmp_path, False)
    loaded = mtd.load(str(path), chunks=16)
    rows = loaded.block(0).values[:5].compute()
    np.testing.assert_array_equal(rows, tensor.block(0).values[:5])
    path.write_bytes(new)
    with pytest.raises(mtd.MetatensorDaskError, match=CHANGED):
        loaded.block(0).values[5:9].compute()
