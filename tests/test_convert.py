"""Conversion to and from metatensor-core objects, and the comparison helper."""

import sys

import dask.array as da
import metatensor
import numpy as np
import pytest
from hypothesis import given
from metatensor_compare import assert_same_labels

import metatensor_dask as mtd
from metatensor_dask.datasets import tutorial_file
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes
from metatensor_dask.testing.strategies import tensor_maps


def metatensor_tensor(dtype=np.float64, info=True):
    """Two blocks with a positions gradient that has a nested cell gradient."""
    rng = np.random.default_rng(0)
    blocks = []
    for _ in range(2):
        block = metatensor.TensorBlock(
            rng.random((3, 2, 4)).astype(dtype),
            metatensor.Labels(["s"], np.array([[0], [1], [2]])),
            [metatensor.Labels(["c"], np.array([[0], [1]]))],
            metatensor.Labels(["p"], np.array([[0], [1], [2], [3]])),
        )
        gradient = metatensor.TensorBlock(
            rng.random((2, 3, 2, 4)).astype(dtype),
            metatensor.Labels(["sample", "atom"], np.array([[0, 0], [2, 1]])),
            [metatensor.Labels(["xyz"], np.array([[0], [1], [2]])), *block.components],
            block.properties,
        )
        inner = metatensor.TensorBlock(
            rng.random((1, 3, 2, 4)).astype(dtype),
            metatensor.Labels(["sample"], np.array([[1]])),
            gradient.components,
            block.properties,
        )
        gradient.add_gradient("cell", inner)
        block.add_gradient("strain", gradient.copy())
        block.add_gradient("positions", gradient)
        blocks.append(block)
    tensor = metatensor.TensorMap(metatensor.Labels(["k"], np.array([[5], [1]])), blocks)
    if info:
        tensor.set_info("units", "eV")
    return tensor


def test_tensor_from_metatensor():
    theirs = metatensor_tensor()
    ours = mtd.from_metatensor(theirs)
    assert isinstance(ours, mtd.TensorMap)
    assert_same_labels(ours.keys, theirs.keys)
    assert ours.info() == {"units": "eV"}
    for mine, other in zip(ours.blocks(), theirs.blocks(), strict=True):
        assert isinstance(mine.values, da.Array)
        assert mine.is_view
        assert mine.gradients_list() == other.gradients_list() == ["strain", "positions"]
        nested = mine.gradient("positions").gradient("cell")
        assert isinstance(nested.values, da.Array)
        np.testing.assert_array_equal(
            nested.values.compute(), other.gradient("positions").gradient("cell").values
        )
    assert_equal_to_metatensor(ours, theirs)


def test_from_metatensor_copies_the_values():
    theirs = metatensor_tensor()
    ours = mtd.from_metatensor(theirs)
    before = ours.block(0).values.compute().copy()
    theirs.block(0).values[:] = -1.0
    np.testing.assert_array_equal(ours.block(0).values.compute(), before)


def _shared_and_distinct_labels():
    """Four blocks: the first three share their samples, components and properties
    Labels objects (their gradients share theirs too); the last one has Labels of the
    same values made apart, and one block has an empty gradient (no rows)."""
    rng = np.random.default_rng(1)
    samples = metatensor.Labels(["s"], np.array([[0], [1], [2]]))
    components = [metatensor.Labels(["c"], np.array([[0], [1]]))]
    properties = metatensor.Labels(["p"], np.array([[0], [1], [2], [3]]))
    gradient_samples = metatensor.Labels(["sample", "atom"], np.array([[0, 0], [2, 1]]))
    blocks = []
    for i in range(4):
        if i == 3:
            samples = metatensor.Labels(["s"], np.array([[0], [1], [2]]))
            properties = metatensor.Labels(["p"], np.array([[0], [1], [2], [3]]))
        block = metatensor.TensorBlock(rng.random((3, 2, 4)), samples, components, properties)
        rows = metatensor.Labels.empty(["sample", "atom"]) if i == 1 else gradient_samples
        gradient = metatensor.TensorBlock(
            rng.random((len(rows), 2, 4)), rows, components, properties
        )
        block.add_gradient("positions", gradient)
        blocks.append(block)
    return metatensor.TensorMap(metatensor.Labels.range("k", 4), blocks)


def test_labels_shared_in_metatensor_are_shared():
    theirs = _shared_and_distinct_labels()
    ours = mtd.from_metatensor(theirs)
    first, second, third, last = ours.blocks()
    for block in (second, third):
        assert block.samples is first.samples
        assert block.components[0] is first.components[0]
        assert block.properties is first.properties
    positions = [b.gradient("positions") for b in ours.blocks()]
    assert positions[0].samples is positions[2].samples is positions[3].samples
    assert positions[1].samples is not positions[0].samples
    assert len(positions[1].samples) == 0
    assert positions[0].properties is first.properties
    assert positions[0].components[0] is first.components[0]
    # equal values made apart in metatensor stay apart (and equal)
    assert last.samples is not first.samples and last.samples == first.samples
    assert last.properties is not first.properties and last.properties == first.properties
    assert positions[3].properties is last.properties
    # a block converted alone shares within itself
    block = mtd.from_metatensor(theirs.block(0))
    assert block.gradient("positions").properties is block.properties
    # results are those of metatensor
    assert_equal_to_metatensor(ours, theirs)
    for ours_result, theirs_result in [
        (mtd.multiply(ours, ours), metatensor.multiply(theirs, theirs)),
        (mtd.sum_over_samples(ours, "s"), metatensor.sum_over_samples(theirs, "s")),
        (ours.keys_to_properties("k"), theirs.keys_to_properties("k")),
    ]:
        # reductions may add in another order
        assert_equal_to_metatensor(ours_result, theirs_result, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_round_trip_keeps_dtype_and_everything(dtype):
    theirs = metatensor_tensor(dtype=dtype)
    back = mtd.to_metatensor(mtd.from_metatensor(theirs))
    assert isinstance(back, metatensor.TensorMap)
    assert back.dtype == theirs.dtype
    assert back.info() == theirs.info()
    assert back.block(1).gradients_list() == theirs.block(1).gradients_list()
    assert metatensor.equal(back, theirs)
    assert_equal_to_metatensor(mtd.from_metatensor(back), theirs)


def test_round_trip_of_blocks_and_labels():
    theirs = metatensor_tensor().block(1).copy()
    block = mtd.from_metatensor(theirs)
    assert isinstance(block, mtd.TensorBlock)
    assert not block.is_view
    back = mtd.to_metatensor(block)
    assert isinstance(back, metatensor.TensorBlock)
    assert metatensor.equal_block(back, theirs)
    labels = metatensor.Labels(["a", "b"], np.array([[0, 1], [3, -2]]))
    ours = mtd.from_metatensor(labels)
    assert_same_labels(ours, labels)
    assert mtd.to_metatensor(ours) == labels


def test_empty_tensor_round_trip():
    theirs = metatensor.TensorMap(metatensor.Labels.empty(["k"]), [])
    ours = mtd.from_metatensor(theirs)
    assert len(ours) == 0
    back = mtd.to_metatensor(ours)
    assert len(back) == 0
    assert back.keys.names == ["k"]


@pytest.mark.parametrize("name", ["radial-spectrum.npz", "spherical-expansion.npz"])
def test_tutorial_data_round_trip(name):
    theirs = metatensor.load(tutorial_file(name))
    ours = mtd.from_metatensor(theirs)
    assert_equal_to_metatensor(ours, theirs)
    assert metatensor.equal(mtd.to_metatensor(ours), theirs)


@given(tensor_maps(dtypes=(np.float64, np.float32)))
def test_round_trip_of_drawn_tensors(tensor):
    back = mtd.from_metatensor(mtd.to_metatensor(tensor))
    assert_equal_to_metatensor(back, mtd.to_metatensor(tensor))
    computed = tensor.compute()
    for mine, other in zip(back.compute().blocks(), computed.blocks(), strict=True):
        np.testing.assert_array_equal(mine.values, other.values)
        assert mine.samples == other.samples
        for parameter, gradient in other.gradients():
            np.testing.assert_array_equal(mine.gradient(parameter).values, gradient.values)
            assert mine.gradient(parameter).samples == gradient.samples


def test_to_metatensor_computes_once():
    tensor = mtd.from_metatensor(metatensor_tensor())
    with raise_if_dask_computes(max_computes=1):
        mtd.to_metatensor(tensor)
    with raise_if_dask_computes(max_computes=1):
        mtd.to_metatensor(tensor.block(0))
    computed = tensor.compute()
    with raise_if_dask_computes():
        mtd.to_metatensor(tensor.keys)
        mtd.to_metatensor(computed)


def test_conversion_of_other_types_is_refused():
    with pytest.raises(TypeError, match="expected a metatensor TensorMap, TensorBlock or Labels"):
        mtd.from_metatensor(np.zeros(3))
    with pytest.raises(TypeError, match="expected a metatensor_dask TensorMap"):
        mtd.to_metatensor(metatensor_tensor())


def test_missing_metatensor_is_explained(monkeypatch):
    monkeypatch.setitem(sys.modules, "metatensor", None)
    with pytest.raises(ImportError, match="needs metatensor-core: pip install metatensor-core"):
        mtd.from_metatensor(object())
    with pytest.raises(ImportError, match="needs metatensor-core"):
        mtd.to_metatensor(mtd.Labels.range("a", 1))


# -- the comparison helper detects differences -------------------------------------------------


def test_assert_equal_to_metatensor_detects_differences():
    theirs = metatensor_tensor()
    ours = mtd.from_metatensor(theirs)
    assert_equal_to_metatensor(ours, theirs)

    changed = metatensor_tensor()
    changed.block(1).gradient("positions").gradient("cell").values[0, 0, 0, 0] += 1e-9
    with pytest.raises(AssertionError):
        assert_equal_to_metatensor(ours, changed)
    assert_equal_to_metatensor(ours, changed, rtol=1e-6)

    other_info = metatensor_tensor(info=False)
    with pytest.raises(AssertionError, match="info differs"):
        assert_equal_to_metatensor(ours, other_info)

    as_float32 = metatensor_tensor(dtype=np.float32)
    with pytest.raises(AssertionError):
        assert_equal_to_metatensor(ours, as_float32, rtol=1e-3)

    reordered = metatensor.TensorMap(
        metatensor.Labels(["k"], np.array([[1], [5]])),
        [b.copy() for b in metatensor_tensor().blocks()],
    )
    with pytest.raises(AssertionError, match="keys differ"):
        assert_equal_to_metatensor(ours, reordered)


def test_assert_equal_to_metatensor_compares_labels_and_blocks():
    labels = metatensor.Labels(["a"], np.array([[0], [1]]))
    assert_equal_to_metatensor(mtd.Labels(["a"], np.array([[0], [1]])), labels)
    with pytest.raises(AssertionError):
        assert_equal_to_metatensor(mtd.Labels(["b"], np.array([[0], [1]])), labels)
    with pytest.raises(AssertionError):
        assert_equal_to_metatensor(mtd.Labels(["a"], np.array([[1], [0]])), labels)

    theirs = metatensor_tensor().block(0).copy()
    ours = mtd.from_metatensor(theirs)
    assert_equal_to_metatensor(ours, theirs)
    samples = metatensor.Labels(["s"], np.array([[0], [1], [7]]))
    other = metatensor.TensorBlock(
        theirs.values.copy(), samples, theirs.components, theirs.properties
    )
    with pytest.raises(AssertionError, match="samples differ"):
        assert_equal_to_metatensor(ours, other)
    plain = metatensor.TensorBlock(
        theirs.values.copy(), theirs.samples, theirs.components, theirs.properties
    )
    with pytest.raises(AssertionError, match="gradients differ"):
        assert_equal_to_metatensor(mtd.from_metatensor(plain), theirs)
