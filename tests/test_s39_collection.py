"""Maps and blocks as dask collections, in the ways users combine them with dask: the
CRC checks of a metatensor file's members read in several chunks still run when the
map is optimised by ``dask.optimize`` or persisted on a ``distributed`` cluster; a map
pickled keeps its token; maps, blocks and arrays computed together get their own
results."""

from __future__ import annotations

import pickle
from pathlib import Path

import dask
import numpy as np
import pytest
from dask.base import tokenize

import metatensor_dask as mtd
from metatensor_dask.io import _zip

VALUES = "blocks/0/values.npy"


def _tensor() -> mtd.TensorMap:
    rng = np.random.default_rng(0)
    blocks = [
        mtd.TensorBlock(
            rng.random((40, 3)), mtd.Labels.range("s", 40), [], mtd.Labels.range("p", 3)
        )
        for _ in range(2)
    ]
    return mtd.TensorMap(mtd.Labels.range("k", 2), blocks)


@pytest.fixture
def damaged(tmp_path: Path) -> Path:
    """A metatensor file whose first block's values have one bit changed."""
    path = tmp_path / "damaged.mts"
    mtd.save(path, _tensor())
    member = _zip.read_directory(str(path))[VALUES]
    data = bytearray(path.read_bytes())
    data[member.offset + member.size - 100] ^= 0x10
    path.write_bytes(bytes(data))
    return path


def _loaded(path: Path) -> mtd.TensorMap:
    tensor = mtd.load(path, chunks=4)
    assert tensor.block(0).values.npartitions > 1
    return tensor


OPTIMIZED = {
    "map": lambda t: dask.optimize(t)[0].compute(),
    "block": lambda t: dask.optimize(t.block(0))[0].compute(),
    "values of the map": lambda t: dask.optimize(t)[0].block(0).values.compute(),
    "with another map": lambda t: dask.compute(*dask.optimize(t, _tensor())),
    "then persisted": lambda t: dask.optimize(t)[0].persist(),
}


@pytest.mark.parametrize("use", OPTIMIZED)
def test_a_map_optimized_by_dask_still_checks_its_members(damaged, use):
    with pytest.raises(mtd.DamagedFileError, match=f"in member '{VALUES}'"):
        OPTIMIZED[use](_loaded(damaged))


def test_a_map_persisted_on_a_cluster_still_checks_its_members(damaged, client):
    persisted = client.persist(_loaded(damaged))
    with pytest.raises(mtd.DamagedFileError, match=f"in member '{VALUES}'"):
        persisted.compute()


def test_arrays_persisted_together_on_a_cluster_each_check_their_members(damaged, client):
    tensor = _loaded(damaged)
    damaged_values, other_values = client.persist([tensor.block(0).values, tensor.block(1).values])
    with pytest.raises(mtd.DamagedFileError, match=f"in member '{VALUES}'"):
        damaged_values.compute()
    np.testing.assert_array_equal(other_values.compute(), _tensor().block(1).values)


def test_a_stored_map_sent_to_another_process_keeps_its_token(tmp_path):
    _tensor().to_zarr(tmp_path / "map.zarr")
    opened = mtd.open_zarr(tmp_path / "map.zarr")
    assert tokenize(pickle.loads(pickle.dumps(opened))) == tokenize(opened)
    assert tokenize(pickle.loads(pickle.dumps(opened.block(1)))) == tokenize(opened.block(1))


def test_maps_blocks_and_their_arrays_computed_together_each_get_their_own_result():
    # dask groups the collections by optimisation and returned the results of the
    # group of maps and blocks before those of the arrays of blocks, whatever the order
    tensor = _tensor()
    objects = [tensor.block(0), tensor.block(1).values, tensor, tensor.block(0).values]
    first, second, third, fourth = dask.compute(*objects)
    np.testing.assert_array_equal(first.values, tensor.block(0).values.compute())
    np.testing.assert_array_equal(second, tensor.block(1).values.compute())
    assert isinstance(third, mtd.TensorMap)
    np.testing.assert_array_equal(fourth, tensor.block(0).values.compute())
