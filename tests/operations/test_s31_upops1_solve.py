"""``solve`` and ``lstsq`` of blocks with neither rows nor properties give weights of
no properties, one row per property of ``Y`` (metatensor-operations fails on them)."""

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd


def _system(module):
    keys = module.Labels.range("key", 1)
    x = module.block_from_array(np.zeros((0, 0)))
    y = module.TensorBlock(
        np.zeros((0, 2)), x.samples, [], module.Labels("target", np.array([[3], [5]]))
    )
    return module.TensorMap(keys, [x]), module.TensorMap(keys, [y])


@pytest.mark.parametrize("solver", ["solve", "lstsq"])
def test_systems_without_rows_nor_properties(solver):
    arguments = {"rcond": -1} if solver == "lstsq" else {}
    with pytest.raises(ValueError, match="cannot reshape array of size 0"):
        getattr(metatensor, solver)(*_system(metatensor), **arguments)
    weights = getattr(mtd, solver)(*_system(mtd), **arguments).compute().block(0)
    assert weights.samples == mtd.Labels("target", np.array([[3], [5]]))
    assert weights.properties.names == ["property"]
    assert len(weights.properties) == 0
    assert weights.values.shape == (2, 0)
    assert weights.values.dtype == np.float64
