"""Naming the tasks of a property reduction pickles no function.

dask names every ``map_blocks`` from a token of its function; a closure is pickled by
cloudpickle for that (about a millisecond for each array, most of the time to build a
reduction of a featomic map). The reductions give dask module functions with their
groups, whose token is their digest.
"""

from __future__ import annotations

import cloudpickle
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

metatensor = pytest.importorskip("metatensor")


def _tensor() -> metatensor.TensorMap:
    """Two blocks above the size of tiny blocks (grouped otherwise), with a gradient."""
    rng = np.random.default_rng(3)
    grid = np.array([(angular, radial) for angular in range(4) for radial in range(8)])
    properties = metatensor.Labels(["l", "n"], grid)
    blocks = []
    for _ in range(2):
        samples = metatensor.Labels.range("sample", 1200)
        block = metatensor.TensorBlock(rng.normal(size=(1200, 32)), samples, [], properties)
        rows = metatensor.Labels(["sample", "atom"], np.stack([np.arange(1200)] * 2, axis=1))
        xyz = [metatensor.Labels.range("xyz", 3)]
        gradient = metatensor.TensorBlock(rng.normal(size=(1200, 3, 32)), rows, xyz, properties)
        block.add_gradient("positions", gradient)
        blocks.append(block)
    return metatensor.TensorMap(metatensor.Labels.range("key", 2), blocks)


@pytest.mark.parametrize("reduction", ["sum", "mean", "var", "std"])
def test_building_a_property_reduction_pickles_no_function(reduction, monkeypatch) -> None:
    reference = _tensor()
    tensor = mtd.from_metatensor(reference)
    pickled = []
    original = cloudpickle.dumps

    def counted(obj, *args, **kwargs):
        pickled.append(obj)
        return original(obj, *args, **kwargs)

    monkeypatch.setattr(cloudpickle, "dumps", counted)
    result = getattr(mtd, f"{reduction}_over_properties")(tensor, "n")
    monkeypatch.undo()
    assert pickled == []
    expected = getattr(metatensor, f"{reduction}_over_properties")(reference, "n")
    assert_equal_to_metatensor(result, expected, rtol=1e-12, atol=1e-14)
