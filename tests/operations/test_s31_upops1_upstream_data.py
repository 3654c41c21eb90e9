"""The math, comparison and creation operations on metatensor's own test data (real
descriptors with ``positions`` and ``strain`` gradients, empty blocks among them), read
from ``.mts`` in chunks and after a Zarr round trip, equal metatensor-operations'."""

from pathlib import Path

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

DATA = Path(__file__).parent.parent / "data"
FILES = ["qm7-power-spectrum-2.mts", "qm7-spherical-expansion-2.mts"]


def _weights(module, tensor, rng):
    """Random weights of 2 targets for each block's properties (for ``dot``)."""
    blocks = [
        module.TensorBlock(
            rng.normal(size=(2, len(block.properties))),
            module.Labels.range("target", 2),
            [],
            module.Labels(block.properties.names, np.asarray(block.properties.values)),
        )
        for block in tensor.blocks()
    ]
    keys = module.Labels(tensor.keys.names, np.asarray(tensor.keys.values))
    return module.TensorMap(keys, blocks)


def _operations(module, tensor, weights):
    """The same calls on ``module`` (metatensor or metatensor_dask): name -> result."""
    positive = module.add(module.abs(tensor), 0.25)
    return {
        "abs": module.abs(tensor),
        "add": module.add(tensor, module.multiply(tensor, -0.5)),
        "subtract": module.subtract(tensor, 1.5),
        "multiply": module.multiply(tensor, tensor),
        "divide": module.divide(tensor, positive),
        "pow": module.pow(positive, -1.5),
        "dot": module.dot(tensor, weights),
        "zeros_like": module.zeros_like(tensor, gradients="strain"),
        "ones_like": module.ones_like(tensor),
        "remove_gradients": module.remove_gradients(tensor, ["positions"]),
        "drop_blocks": module.drop_blocks(tensor, _center_type(module, 1), copy=True),
        "filter_blocks": module.filter_blocks(tensor, _center_type(module, 6)),
    }


def _center_type(module, value):
    return module.Labels(["center_type"], np.array([[value]]))


def _ours(path: Path, source: str, directory: Path) -> mtd.TensorMap:
    """``path`` read from ``.mts`` in chunks of 3 samples, or through a Zarr store."""
    if source == "mts":
        return mtd.load(path, chunks=3)
    store = directory / "map.zarr"
    mtd.to_zarr(mtd.load(path, chunks=4), store)
    return mtd.open_zarr(store, chunks=3)


@pytest.mark.parametrize(
    ("name", "source"), [(FILES[0], "mts"), (FILES[1], "zarr")], ids=["ps-mts", "se-zarr"]
)
def test_operations_equal_metatensor_on_upstream_data(name, source, tmp_path):
    theirs = metatensor.load(str(DATA / name))
    ours = _ours(DATA / name, source, tmp_path)
    rng = np.random.default_rng(0)
    weights = _weights(metatensor, theirs, rng)
    expected = _operations(metatensor, theirs, weights)
    lazy = _operations(mtd, ours, mtd.from_metatensor(weights))
    (results,) = dask.compute(lazy)
    for operation, result in results.items():
        tolerance = {"rtol": 1e-13, "atol": 1e-15} if operation == "dot" else {}
        assert_equal_to_metatensor(result, expected[operation], **tolerance)
    assert mtd.equal(ours, mtd.from_metatensor(theirs))
    assert not mtd.allclose(ours, lazy["add"])
    assert mtd.equal_metadata(ours, lazy["multiply"])
