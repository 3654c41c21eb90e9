"""Maps of integer values, and joins of maps of different dtypes: results follow numpy
(docs/differences.md). metatensor-operations 0.5.0 computes the variance and standard
deviation of integer values in integers (the mean and the variance truncated), and
``join`` casts every tensor to the first one's dtype (1.5 joined after integers
becomes 1)."""

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd

VALUES = np.array([[1, 2, 4], [3, 3, 9]], dtype=np.int64)


def _labels(module, names, values):
    return module.Labels(names, np.array(values, dtype=np.int32).reshape(-1, len(names)))


def _tensor(module, values):
    samples = _labels(module, ["s"], [[i] for i in range(len(values))])
    properties = _labels(module, ["p"], [[i] for i in range(values.shape[1])])
    block = module.TensorBlock(values.copy(), samples, [], properties)
    return module.TensorMap(_labels(module, ["k"], [[0]]), [block])


@pytest.mark.parametrize(
    ("name", "numpy_function"),
    [("var", np.var), ("std", np.std), ("mean", np.mean), ("sum", np.sum)],
)
@pytest.mark.parametrize(
    ("axis", "dimension", "over"), [(0, "s", "samples"), (1, "p", "properties")]
)
def test_reductions_of_integer_values_follow_numpy(name, numpy_function, axis, dimension, over):
    reduce = getattr(mtd, f"{name}_over_{over}")
    result = reduce(_tensor(mtd, VALUES), dimension).block(0).values.compute()
    expected = numpy_function(VALUES, axis=axis)
    np.testing.assert_allclose(result.ravel(), expected, rtol=1e-15)
    assert result.dtype == (np.int64 if name == "sum" else np.float64)


def test_metatensor_truncates_the_variance_of_integer_values():
    """(if this fails, metatensor was fixed: compare with it and update the docs)"""
    theirs = metatensor.var_over_properties(_tensor(metatensor, VALUES), "p").block(0).values
    assert theirs.ravel()[0] == 1.0  # numpy: 1.555...


@pytest.mark.parametrize("axis", ["samples", "properties"])
@pytest.mark.parametrize(("first", "second"), [(np.int64, np.float64), (np.float32, np.float64)])
def test_join_of_different_dtypes_promotes_as_numpy(axis, first, second):
    arrays = [(VALUES * 1.5).astype(first), (VALUES * 1.5).astype(second)]
    ours = mtd.join([_tensor(mtd, a) for a in arrays], axis, add_dimension="t").block(0)
    stacked = np.concatenate(arrays, axis=0 if axis == "samples" else 1)
    assert ours.values.dtype == stacked.dtype == np.float64
    np.testing.assert_array_equal(ours.values.compute(), stacked)
    theirs = metatensor.join([_tensor(metatensor, a) for a in arrays], axis, add_dimension="t")
    assert theirs.block(0).values.dtype == first  # metatensor casts to the first dtype
