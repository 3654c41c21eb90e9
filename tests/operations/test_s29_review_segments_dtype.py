"""Sums over samples of booleans and small integers whose output chunk gathers partial
sums of a few rows each (many small input chunks adding into a large output chunk):
the partials are summed in the dtype of the values, as metatensor sums them."""

from __future__ import annotations

import dask.array as da
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd


def _tensor(module, values, samples, chunks):
    array = da.from_array(values, chunks=(chunks, -1)) if chunks else values
    properties = module.Labels(["p"], np.arange(values.shape[1], dtype=np.int32)[:, None])
    block = module.TensorBlock(array, module.Labels(["system", "atom"], samples), [], properties)
    return module.TensorMap(module.Labels(["k"], np.array([[0]], np.int32)), [block])


@pytest.mark.parametrize("dtype", [np.bool_, np.int8])
def test_sums_of_many_small_partials_keep_the_values_dtype(dtype):
    rng = np.random.default_rng(3)
    # one system of 40 atoms, then 20 systems of one atom each, one chunk per system:
    # reduced over "system", each small chunk adds into one row of the one output chunk
    samples = np.array(
        [[0, atom] for atom in range(40)] + [[s, rng.integers(0, 40)] for s in range(1, 21)],
        np.int32,
    )
    values = rng.integers(-100, 100, (60, 3))
    values = (values > 0 if dtype is np.bool_ else values).astype(dtype)
    ours = mtd.sum_over_samples(_tensor(mtd, values, samples, (40,) + (1,) * 20), "system")
    theirs = metatensor.sum_over_samples(_tensor(metatensor, values, samples, None), "system")
    result = np.asarray(ours.block(0).values.compute())
    assert result.dtype == theirs.block(0).values.dtype
    np.testing.assert_array_equal(result, theirs.block(0).values)
