"""``fill_value`` of ``keys_to_samples``/``keys_to_properties`` in the dtype of the
values: converted as metatensor converts it, refused (with metatensor's error type,
before anything is built) when integers can not hold it, never stored as garbage."""

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes


def _labels(module, names, values):
    return module.Labels(names, np.array(values, dtype=np.int32).reshape(-1, len(names)))


def _tensor(module, dtype):
    """Two blocks of different samples and properties, so that both moves fill."""
    blocks = []
    for i, n in enumerate((2, 3)):
        values = (np.arange(n * (i + 1)).reshape(n, i + 1) - 2).astype(dtype)
        blocks.append(
            module.TensorBlock(
                values,
                _labels(module, ["s"], [[j + i] for j in range(n)]),
                [],
                _labels(module, ["p"], [[j] for j in range(i + 1)]),
            )
        )
    return module.TensorMap(_labels(module, ["k"], [[0], [1]]), blocks)


FUNCTIONS = ["keys_to_samples", "keys_to_properties"]


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("fill_value", [np.nan, np.inf, -np.inf, 2**70])
def test_integers_refuse_a_fill_value_they_can_not_hold(function, fill_value):
    with pytest.raises((ValueError, OverflowError)) as theirs:
        getattr(_tensor(metatensor, np.int64), function)("k", fill_value=fill_value)
    with raise_if_dask_computes(), pytest.raises(type(theirs.value)) as ours:
        getattr(_tensor(mtd, np.int64), function)("k", fill_value=fill_value)
    assert str(theirs.value) in str(ours.value)
    assert "`fill_value`" in str(ours.value)


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize(
    ("dtype", "fill_value"),
    [(np.int64, 1.5), (np.int64, -7), (np.int32, 2**20), (np.float64, np.nan), (np.float32, 0.1)],
)
def test_fill_values_that_fit_are_converted_as_metatensor_does(function, dtype, fill_value):
    ours = getattr(_tensor(mtd, dtype), function)("k", fill_value=fill_value)
    theirs = getattr(_tensor(metatensor, dtype), function)("k", fill_value=fill_value)
    assert_equal_to_metatensor(ours, theirs)
