"""Blocks and maps through pickle and cloudpickle (as distributed sends them), lazy and
computed: equal to what was pickled, and views or blocks of their own as metatensor's."""

from __future__ import annotations

import pickle

import cloudpickle
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd


def _reference() -> metatensor.TensorMap:
    rng = np.random.default_rng(11)
    samples = metatensor.Labels.range("system", 5)
    properties = metatensor.Labels.range("n", 3)
    block = metatensor.TensorBlock(rng.normal(size=(5, 3)), samples, [], properties)
    gradient = metatensor.TensorBlock(
        rng.normal(size=(5, 3)),
        metatensor.Labels(["sample"], np.arange(5, dtype=np.int32)[:, None]),
        [],
        properties,
    )
    block.add_gradient("strain", gradient)
    return metatensor.TensorMap(metatensor.Labels.range("key", 1), [block])


def _new_gradient(module, n_properties: int):
    return module.TensorBlock(
        np.ones((1, n_properties)),
        module.Labels(["sample"], np.zeros((1, 1), dtype=np.int32)),
        [],
        module.Labels.range("n", n_properties),
    )


def _accepts_gradient(module, block) -> bool:
    try:
        block.add_gradient("new", _new_gradient(module, len(block.properties)))
    except ValueError:
        return False
    return True


@pytest.fixture(params=["lazy", "stored", "computed"])
def pair(request, tmp_path):
    theirs = _reference()
    ours = mtd.from_metatensor(theirs)
    if request.param == "stored":
        mtd.to_zarr(ours, tmp_path / "t.zarr")
        ours = mtd.open_zarr(tmp_path / "t.zarr")
    elif request.param == "computed":
        ours = ours.compute()
    return ours, theirs


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps])
def test_unpickled_blocks_are_their_own_and_map_blocks_views_as_in_metatensor(pair, dumps):
    ours, theirs = pair
    for module, tensor in [(mtd, ours), (metatensor, theirs)]:
        tensor = pickle.loads(dumps(tensor))
        assert not _accepts_gradient(module, tensor.block(0))
        block = pickle.loads(dumps(tensor.block(0)))
        assert block.gradient("strain").is_view
        assert _accepts_gradient(module, block)
        assert _accepts_gradient(module, pickle.loads(dumps(tensor.block(0).gradient("strain"))))
    unpickled = pickle.loads(dumps(ours))
    assert metatensor.equal(mtd.to_metatensor(unpickled), theirs)
