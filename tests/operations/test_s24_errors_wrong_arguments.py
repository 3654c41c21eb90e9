"""Wrong arguments given to the operations: refused where metatensor-operations refuses
them, with an error naming the argument, before any data is computed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd


def _refuse_to_compute(dsk: Any, keys: Any, **kwargs: Any) -> Any:
    raise AssertionError("a wrong argument was refused only after computing")


def _map(seed: int) -> metatensor.TensorMap:
    """Two blocks of random shape, with components and a gradient."""
    rng = np.random.default_rng(seed)
    blocks = []
    for _ in range(2):
        rows, properties = rng.integers(2, 6, size=2)
        samples = metatensor.Labels(["system"], np.arange(rows, dtype=np.int32)[:, None])
        component = metatensor.Labels.range("c", 2)
        block = metatensor.TensorBlock(
            rng.random((rows, 2, properties)),
            samples,
            [component],
            metatensor.Labels.range("p", properties),
        )
        gradient_samples = metatensor.Labels(
            ["sample", "atom"],
            np.stack([np.arange(rows), np.zeros(rows)], axis=1).astype(np.int32),
        )
        block.add_gradient(
            "positions",
            metatensor.TensorBlock(
                rng.random((rows, 3, 2, properties)),
                gradient_samples,
                [metatensor.Labels.range("xyz", 3), component],
                block.properties,
            ),
        )
        blocks.append(block)
    keys = metatensor.Labels(["key"], np.array([[0], [1]], dtype=np.int32))
    return metatensor.TensorMap(keys, blocks)


ONE_BLOCK: dict[str, Callable[[Any, Any], Any]] = {
    "detach_block": lambda ops, x: ops.detach_block(x),
    "requires_grad_block": lambda ops, x: ops.requires_grad_block(x, requires_grad=False),
    "sort_block": lambda ops, x: ops.sort_block(x),
    "is_contiguous_block": lambda ops, x: ops.is_contiguous_block(x),
    "make_contiguous_block": lambda ops, x: ops.make_contiguous_block(x),
    "remove_gradients_block": lambda ops, x: ops.remove_gradients_block(x),
    "zeros_like_block": lambda ops, x: ops.zeros_like_block(x),
    "random_uniform_like_block": lambda ops, x: ops.random_uniform_like_block(x),
    "slice_block": lambda ops, x: ops.slice_block(x, "samples", [0]),
    "split_block": lambda ops, x: ops.split_block(x, "samples", [[0]]),
    "sum_over_samples_block": lambda ops, x: ops.sum_over_samples_block(x, "system"),
    "std_over_properties_block": lambda ops, x: ops.std_over_properties_block(x, "p"),
    "unique_metadata_block": lambda ops, x: ops.unique_metadata_block(x, "samples", "system"),
}


@pytest.mark.parametrize("name", sorted(ONE_BLOCK))
@pytest.mark.parametrize("wrong", ["map", "string"])
def test_a_block_function_given_something_else_names_the_block_argument(name, wrong):
    """metatensor refuses a map (or anything else) where a block is expected; so do
    we, with a ``TypeError`` naming ``block`` rather than an attribute of the map."""
    theirs = _map(3)
    given = {"map": (theirs, mtd.from_metatensor(theirs)), "string": ("x", "x")}[wrong]
    call = ONE_BLOCK[name]
    with pytest.raises(Exception):  # noqa: B017 (metatensor's error type varies)
        call(metatensor, given[0])
    with dask.config.set(scheduler=_refuse_to_compute):
        with pytest.raises(TypeError, match="`block` must be a metatensor TensorBlock, not"):
            call(mtd, given[1])


@pytest.mark.parametrize("function", ["equal_metadata_raise", "equal_metadata_block_raise"])
def test_equal_metadata_raise_given_a_metatensor_object_names_the_remedy(function):
    """metatensor's ``NotEqualError`` for an argument of the wrong type; given an object
    of metatensor-core, it also says how to convert it."""
    theirs = _map(5)
    ours = mtd.from_metatensor(theirs)
    if function == "equal_metadata_block_raise":
        theirs, ours = theirs.block(0), ours.block(0)
    with pytest.raises(metatensor.NotEqualError, match="must be a metatensor"):
        getattr(metatensor, function)(theirs, "x")
    with dask.config.set(scheduler=_refuse_to_compute):
        with pytest.raises(mtd.NotEqualError, match="must be a metatensor") as error:
            getattr(mtd, function)(ours, theirs)
    assert "from_metatensor" in str(error.value)


def _blocks_of_other_samples() -> metatensor.TensorMap:
    """Two blocks whose samples differ, so that moving the keys fills entries."""
    theirs = _map(7)
    first = metatensor.slice(theirs, "samples", np.array([0, 1]))
    second = metatensor.slice(theirs, "samples", np.array([1]))
    return metatensor.TensorMap(theirs.keys, [first.block(0).copy(), second.block(1).copy()])


@pytest.mark.parametrize("function", ["keys_to_properties", "keys_to_samples"])
@pytest.mark.parametrize("fill_value", [[1.0, 2.0], np.zeros((2, 3)), [0.0]])
def test_a_fill_value_that_is_not_one_number_is_refused(function, fill_value):
    """metatensor refuses a ``fill_value`` of several numbers; so do we, before
    computing, rather than filling with a broadcast array."""
    theirs = _blocks_of_other_samples()
    with pytest.raises(metatensor.MetatensorError, match="fill_value must be a single scalar"):
        getattr(theirs, function)("key", fill_value=fill_value)
    ours = mtd.from_metatensor(theirs)
    with dask.config.set(scheduler=_refuse_to_compute):
        with pytest.raises(mtd.MetatensorError, match="fill_value must be a single scalar"):
            getattr(mtd, function)(ours, "key", fill_value=fill_value)


@pytest.mark.parametrize("axis", ["keys", "samples", "properties"])
@pytest.mark.parametrize("value", [2**31, -(2**31) - 1, 2**40])
def test_an_integer_out_of_the_int32_range_for_a_new_dimension_is_a_value_error(axis, value):
    """One integer for every entry of a new dimension is checked as the values of
    Labels are: ``ValueError`` outside of int32 (metatensor truncates it)."""
    theirs = _map(11)
    truncated = metatensor.append_dimension(theirs, axis, "new", value)
    assert len(truncated) == len(theirs)
    ours = mtd.from_metatensor(theirs)
    with dask.config.set(scheduler=_refuse_to_compute):
        with pytest.raises(ValueError, match="32-bit integers"):
            mtd.append_dimension(ours, axis, "new", value)
        with pytest.raises(ValueError, match="32-bit integers"):
            mtd.insert_dimension(ours, axis, 0, "new", np.int64(value))
    edge = 2**31 - 1 if value > 0 else -(2**31)
    with dask.config.set(scheduler=_refuse_to_compute):
        kept = mtd.append_dimension(ours, axis, "new", edge)
    expected = mtd.from_metatensor(metatensor.append_dimension(theirs, axis, "new", edge))
    assert kept.keys == expected.keys
    assert mtd.equal_metadata(kept, expected)


REDUCTIONS = [
    f"{kind}_over_{axis}"
    for kind in ("sum", "mean", "var", "std")
    for axis in ("samples", "properties")
]


@pytest.mark.parametrize("function", REDUCTIONS)
@pytest.mark.parametrize("other", [1, None, "unknown", 2.5])
def test_reduction_names_of_which_one_is_not_a_dimension_raise_metatensor_error(function, other):
    """A list naming the dimensions to reduce over in which one is not a dimension
    name (a number, None, an unknown string): metatensor's ``ValueError`` and message."""
    theirs = _map(13)
    name = "system" if function.endswith("samples") else "p"
    with pytest.raises(ValueError) as expected:
        getattr(metatensor, function)(theirs, [name, other])
    ours = mtd.from_metatensor(theirs)
    with dask.config.set(scheduler=_refuse_to_compute):
        with pytest.raises(ValueError) as error:
            getattr(mtd, function)(ours, [name, other])
    assert str(expected.value) in str(error.value)


@pytest.mark.parametrize(
    "call",
    [
        lambda x: mtd.allclose(x, x, rtol="x"),
        lambda x: mtd.allclose(x, x, atol=[1e-8]),
        lambda x: mtd.allclose_raise(x, x, rtol=None),
        lambda x: mtd.lstsq(x, x, rcond="1e-3"),
    ],
    ids=["allclose-rtol", "allclose-atol", "allclose_raise-rtol", "lstsq-rcond"],
)
def test_tolerances_that_are_not_numbers_are_refused_before_computing(call):
    """numpy refuses them when it is called: here, before any value is computed."""
    x = mtd.from_metatensor(_map(5))
    with dask.config.set(scheduler=_refuse_to_compute):
        with pytest.raises(TypeError, match=r"must be (None or )?a real number"):
            call(x)


@pytest.mark.parametrize("value", [2**63, -(2**70)])
def test_an_integer_beyond_64_bits_for_a_new_dimension_is_a_value_error(value):
    """Beyond 64 bits too (numpy would raise ``OverflowError`` making the column)."""
    ours = mtd.from_metatensor(_map(11))
    with dask.config.set(scheduler=_refuse_to_compute):
        with pytest.raises(ValueError, match="32-bit integers"):
            mtd.append_dimension(ours, "samples", "new", value)
    with pytest.raises(ValueError, match="32-bit integers"):
        mtd.Labels(["a"], np.array([[1], [value]], dtype=object))
