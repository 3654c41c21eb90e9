"""A loaded ``.mts`` file replaced by another of the same size and modification time
(``rsync -a``, ``cp -p``) is refused by every later read, never read as other numbers.

The read tasks of a loaded map compare the file with what they saw at load. Size and
modification time alone miss a copy that keeps the time: a partial read, or an array
derived from the map (whose computation carries no CRC check of the members), then read
the new file's values with the old file's labels.
"""

from __future__ import annotations

import os
from pathlib import Path

import dask
import metatensor
import numpy as np
import pytest
from test_mts_groups import tiny_map
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd


def _doubled(tensor: metatensor.TensorMap) -> metatensor.TensorMap:
    """The same metadata (same file size), other values."""

    def block(source: metatensor.TensorBlock) -> metatensor.TensorBlock:
        new = metatensor.TensorBlock(
            source.values * 2, source.samples, source.components, source.properties
        )
        for parameter in source.gradients_list():
            new.add_gradient(parameter, block(source.gradient(parameter)))
        return new

    doubled = metatensor.TensorMap(tensor.keys, [block(b) for b in tensor.blocks()])
    for name, value in tensor.info().items():
        doubled.set_info(name, value)
    return doubled


def _renamed_over(path: Path, other: metatensor.TensorMap) -> None:
    """``rsync -a``: a new file written aside, given the old times, renamed over."""
    times = os.stat(path)
    aside = path.with_name("aside.mts")
    mtd.save(aside, mtd.from_metatensor(other))
    assert aside.stat().st_size == times.st_size
    os.utime(aside, ns=(times.st_atime_ns, times.st_mtime_ns))
    os.replace(aside, path)


def _written_in_place(path: Path, other: metatensor.TensorMap) -> None:
    """``cp -p``: the new bytes written into the same file, its times set back."""
    times = os.stat(path)
    aside = path.with_name("aside.mts")
    mtd.save(aside, mtd.from_metatensor(other))
    with open(path, "r+b") as file:
        file.write(aside.read_bytes())
    os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))
    assert os.stat(path).st_mtime_ns == times.st_mtime_ns


@pytest.mark.parametrize("replace", [_renamed_over, _written_in_place])
@pytest.mark.parametrize("tiny", [False, True])
def test_a_file_replaced_with_the_same_size_and_time_is_refused(tmp_path, replace, tiny):
    if tiny:
        original = tiny_map(12)
    else:
        original = make_metatensor(seed=3, n_samples=(9, 5), n_properties=(2, 1), nested=False)
    path = tmp_path / "data.mts"
    mtd.save(path, mtd.from_metatensor(original))
    loaded = mtd.load(path, chunks=2)  # members of several chunks: derived reads unchecked
    replace(path, _doubled(original))
    with dask.config.set(scheduler="synchronous"):
        for compute in (
            lambda: mtd.multiply(loaded, 3.0).block(0).values.compute(),
            lambda: loaded.block(0).values[:1].compute(),
            lambda: loaded.block(0).gradient("positions").values.compute(),
            lambda: mtd.to_metatensor(loaded),
        ):
            with pytest.raises(mtd.MetatensorDaskError, match="changed since it was loaded"):
                compute()
    # loaded again, the new file reads as what it holds
    again = mtd.load(path, chunks=2)
    np.testing.assert_array_equal(again.block(0).values.compute(), original.block(0).values * 2)


def test_a_file_replaced_while_it_is_loaded_is_refused(tmp_path, monkeypatch):
    # the stamp the tasks compare with is the file's before its directory was read: one
    # taken after would be the new file's, whose values the tasks would then read at the
    # old file's offsets, under its Labels
    from metatensor_dask.io import _mts_read

    original = make_metatensor(seed=3, n_samples=(9, 5), n_properties=(2, 1), nested=False)
    path = tmp_path / "data.mts"
    mtd.save(path, mtd.from_metatensor(original))
    read_members = _mts_read._zip.read_members

    def replaced_after_the_directory(*args):
        members = read_members(*args)
        _renamed_over(path, _doubled(original))
        return members

    monkeypatch.setattr(_mts_read._zip, "read_members", replaced_after_the_directory)
    with pytest.raises(mtd.MetatensorDaskError, match="changed since it was loaded"):
        mtd.load(path, chunks=2)
