import metatensor
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle2 import (
    assert_co_partitioned,
    assert_same_error,
    check_function,
    finite_differences,
    to_mts,
    tutorial,
)
from test_reduce_over_samples import _one_parameter_per_entry

import metatensor_dask as mtd
from metatensor_dask.testing import strategies

REDUCTIONS = ["sum", "mean", "var", "std"]


def _two_dimensions(tensor, metatensor_module):
    """Properties (n) become (n // 2, n % 2) so that there are groups to reduce."""
    values = np.array([[0, 0], [0, 1], [1, 0], [1, 1], [2, 0]])
    blocks = []
    for block in tensor.blocks():
        count = len(block.properties)
        properties = metatensor_module.Labels(["a", "b"], values[:count])
        new = metatensor_module.TensorBlock(
            block.values, block.samples, block.components, properties
        )
        for parameter, gradient in block.gradients():
            new.add_gradient(
                parameter,
                metatensor_module.TensorBlock(
                    gradient.values, gradient.samples, gradient.components, properties
                ),
            )
        blocks.append(new)
    return metatensor_module.TensorMap(tensor.keys, blocks)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("names", ["a", "b", ["a", "b"]])
def test_like_metatensor_without_components(reduction, names):
    ours, theirs = tutorial("radial-spectrum")
    ours = _two_dimensions(ours, mtd)
    theirs = _two_dimensions(theirs, metatensor)
    function = f"{reduction}_over_properties"
    result = check_function(function, ours, theirs, names, rtol=1e-10, atol=1e-12)
    assert_co_partitioned(result)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_with_components(reduction):
    """metatensor 0.5.0 broadcasts the group sizes on the wrong axis for blocks with
    components (wrong results, or an error). Values are checked against numpy, and
    gradients with finite differences."""
    ours, _ = tutorial("spherical-expansion")
    ours = _two_dimensions(ours, mtd)
    function = getattr(mtd, f"{reduction}_over_properties")
    result = function(ours, "b").compute()
    numpy_function = {"sum": np.sum, "mean": np.mean, "var": np.var, "std": np.std}[reduction]
    for block, source in zip(result.blocks(), ours.blocks(), strict=True):
        values = np.asarray(source.values)
        a = source.properties.column("a")
        expected = np.stack(
            [numpy_function(values[..., a == g], axis=-1) for g in np.unique(a)], axis=-1
        )
        np.testing.assert_allclose(block.values, expected, rtol=1e-12, atol=1e-14)
    finite_differences(lambda t: function(t, "b"), _one_parameter_per_entry(ours), "positions")


@settings(max_examples=10)
@given(
    tensor=strategies.tensor_maps(max_samples=5, max_blocks=2, max_components=0, grouped=False),
    reduction=st.sampled_from(REDUCTIONS),
)
def test_random_tensors(tensor, reduction):
    theirs = to_mts(tensor)
    check_function(f"{reduction}_over_properties", tensor, theirs, "n", rtol=1e-10, atol=1e-12)


def test_errors_like_metatensor():
    ours, theirs = tutorial("radial-spectrum")
    assert_same_error(
        lambda: mtd.mean_over_properties(ours, "zz"),
        lambda: metatensor.mean_over_properties(theirs, "zz"),
    )
    with pytest.raises(ValueError, match=r"property name \(zz\) is not part"):
        mtd.sum_over_properties_block(ours.block(0), ["zz"])


@pytest.mark.parametrize("names", [3, [3], None, ("n", 2)])
def test_names_of_another_type_are_refused(names):
    ours, theirs = tutorial("spherical-expansion")
    with pytest.raises(TypeError, match="property names to reduce over must be a string or"):
        mtd.sum_over_properties(ours, names)
    with pytest.raises(TypeError, match="sample names to reduce over must be a string or"):
        mtd.mean_over_samples_block(ours.block(0), names)
    # tuples are taken as lists, as metatensor does
    expected = metatensor.sum_over_samples(theirs, ("atom",))
    assert metatensor.equal(mtd.to_metatensor(mtd.sum_over_samples(ours, ("atom",))), expected)
