"""metatensor-core's own test files read and written as metatensor reads and writes them.

The files (``tests/data/metatensor-core``) were written by metatensor-core: loading them
in chunks, or through a Zarr store, gives metatensor's values, gradients and labels, and
saving what was loaded gives the same bytes.
"""

import warnings
from pathlib import Path

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd

DATA = Path(__file__).parent.parent / "data" / "metatensor-core"


def assert_same_block(ours, theirs):
    """Same labels, values and gradients (nested ones too), with the same dtypes."""
    computed = mtd.to_metatensor(ours)
    metatensor.equal_block_raise(computed, theirs)
    assert computed.values.dtype == theirs.values.dtype
    for parameter, gradient in theirs.gradients():
        assert computed.gradient(parameter).values.dtype == gradient.values.dtype
        assert_same_block(ours.gradient(parameter), gradient)


def assert_same_tensor(ours, theirs):
    assert ours.keys == mtd.from_metatensor(theirs.keys)
    assert ours.info() == theirs.info()
    for block, expected in zip(ours.blocks(), theirs.blocks(), strict=True):
        assert_same_block(block, expected)


def test_tensor_file_in_chunks(tmp_path):
    theirs = metatensor.load(DATA / "data.mts")
    ours = mtd.load(DATA / "data.mts", chunks=2)
    assert max(ours.block(0).values.chunks[0]) == 2
    assert_same_tensor(ours, theirs)
    mtd.save(tmp_path / "again.mts", ours)
    assert (tmp_path / "again.mts").read_bytes() == (DATA / "data.mts").read_bytes()


def first_blocks(tensor, module, count):
    keys = tensor.keys
    kept = module.Labels(keys.names, np.asarray(keys.values)[:count])
    return module.TensorMap(kept, [block.copy() for block in tensor.blocks()[:count]])


def test_tensor_file_through_zarr(tmp_path):
    """A few of the blocks (a store of every block takes seconds to write)."""
    theirs = first_blocks(metatensor.load(DATA / "data.mts"), metatensor, 3)
    mtd.to_zarr(first_blocks(mtd.load(DATA / "data.mts"), mtd, 3), tmp_path / "s.zarr", chunks=3)
    stored = mtd.open_zarr(tmp_path / "s.zarr")
    assert_same_tensor(stored, theirs)
    mtd.save(tmp_path / "stored.mts", stored)
    metatensor.save(str(tmp_path / "theirs.mts"), theirs)
    assert (tmp_path / "stored.mts").read_bytes() == (tmp_path / "theirs.mts").read_bytes()


def test_block_and_labels_files(tmp_path):
    ours = mtd.load_block(DATA / "block.mts", chunks=3)
    assert_same_block(ours, metatensor.load_block(DATA / "block.mts"))
    mtd.save(tmp_path / "block.mts", ours)
    assert (tmp_path / "block.mts").read_bytes() == (DATA / "block.mts").read_bytes()

    labels = mtd.load_labels(DATA / "keys.mts")
    assert labels == mtd.from_metatensor(metatensor.load_labels(DATA / "keys.mts"))
    mtd.save(tmp_path / "keys.mts", labels)
    assert (tmp_path / "keys.mts").read_bytes() == (DATA / "keys.mts").read_bytes()


def test_save_refuses_other_data_with_metatensors_message(tmp_path):
    with pytest.raises(TypeError) as theirs:
        metatensor.save(str(tmp_path / "theirs.mts"), np.zeros(3))
    with warnings.catch_warnings():
        # refused before the missing extension is added (with a warning)
        warnings.simplefilter("error")
        with pytest.raises(TypeError) as ours:
            mtd.save(tmp_path / "ours", np.zeros(3))
    assert str(ours.value) == str(theirs.value)
    # metatensor's own Labels: the same message, with the remedy
    labels = metatensor.Labels.range("a", 2)
    with pytest.raises(TypeError) as ours:
        mtd.save(tmp_path / "ours.mts", labels)
    message = str(theirs.value).replace(str(np.ndarray), str(type(labels)))
    assert str(ours.value).startswith(message + "; ")
    assert "`metatensor_dask.from_metatensor`" in str(ours.value)
    assert list(tmp_path.iterdir()) == []
