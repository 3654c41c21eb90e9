import dask.array as da
import metatensor
import numpy as np
import pytest
from oracle import lazily, rechunked, tutorial

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


@pytest.mark.parametrize("name", ["zeros_like", "ones_like"])
@pytest.mark.parametrize("gradients", [None, "positions", [], ["positions"]])
def test_filled_like(name, gradients):
    theirs, ours = tutorial()
    chunked = rechunked(ours, 2)
    result = lazily(getattr(mtd, name), chunked, gradients)
    assert_equal_to_metatensor(result, getattr(metatensor, name)(theirs, gradients))
    assert result.block(0).values.chunks == chunked.block(0).values.chunks
    block = lazily(getattr(mtd, f"{name}_block"), chunked.block(1), gradients)
    assert_equal_to_metatensor(
        block, getattr(metatensor, f"{name}_block")(theirs.block(1), gradients)
    )


@pytest.mark.parametrize("name", ["empty_like", "random_uniform_like"])
def test_metadata_like(name):
    _, ours = tutorial()
    result = lazily(getattr(mtd, name), ours)
    assert mtd.equal_metadata(result, ours)
    assert result.block(0).dtype == ours.block(0).dtype
    if name == "random_uniform_like":
        values = np.concatenate([np.ravel(a) for a in result.compute()._arrays()])
        assert values.min() >= 0 and values.max() < 1 and values.std() > 0.1


def test_computed_input_gives_numpy():
    theirs, ours = tutorial()
    result = mtd.ones_like(ours.compute())
    assert isinstance(result.block(0).values, np.ndarray)
    assert_equal_to_metatensor(result, metatensor.ones_like(theirs))


def test_missing_gradient():
    theirs, ours = tutorial()
    message = "requested gradient 'err' in 'zeros_like' is not defined in this tensor"
    with pytest.raises(ValueError, match=message):
        metatensor.zeros_like(theirs, "err")
    with pytest.raises(ValueError, match=message):
        mtd.zeros_like(ours, "err")


@pytest.mark.parametrize(
    "shape, names",
    [
        ((4, 3), {}),
        ((2, 3, 4), {"sample_names": ["x", "y"]}),
        ((2, 3, 4, 5), {"property_names": ["p", "q"]}),
        ((2, 3, 4, 5), {"component_names": ["a", "b"]}),
    ],
)
def test_block_from_array(shape, names):
    array = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    expected = metatensor.block_from_array(array, **names)
    assert_equal_to_metatensor(mtd.block_from_array(array, **names), expected)
    lazy = (
        lazily(mtd.block_from_array, da.from_array(array, chunks=1), *names.values())
        if not names
        else None
    )
    if lazy is not None:
        assert_equal_to_metatensor(lazy, expected)


def test_block_from_array_errors():
    with pytest.raises(ValueError, match=r"at least two dimensions\. Too few provided: 1"):
        mtd.block_from_array(np.zeros(3))
    with pytest.raises(
        ValueError, match="does not have enough dimensions to match the sample and property names"
    ):
        mtd.block_from_array(np.zeros((3, 3)), sample_names=["a", "b"], property_names=["c"])
    with pytest.raises(
        ValueError, match="does not have enough dimensions to match the given sample, component"
    ):
        mtd.block_from_array(np.zeros((3, 3, 3)), component_names=["a", "b"])


@pytest.mark.parametrize("lazy", [True, False], ids=["lazy", "computed"])
def test_random_uniform_values_stay_below_one_in_narrow_floats(lazy):
    # a float64 draw within half a float16 step of one (one in 2**12) rounds up to 1.0
    # when cast: 40,000 draws hold about ten of them, which must stay below one
    values = np.zeros((4000, 10), dtype=np.float16)
    if lazy:
        values = da.from_array(values, chunks=(1000, 10))
    block = mtd.TensorBlock(
        values,
        mtd.Labels.range("sample", 4000),
        [],
        mtd.Labels.range("property", 10),
    )
    np.random.seed(7)
    drawn = np.asarray(mtd.random_uniform_like_block(block).values)
    assert drawn.dtype == np.float16
    assert drawn.max() == np.nextafter(np.float16(1), np.float16(0))
    assert drawn.min() >= 0
