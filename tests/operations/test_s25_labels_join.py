"""``join`` of maps whose keys differ, when the blocks of one map would not fit in the
other: the union is refused as metatensor refuses it, an empty intersection is an
empty map as metatensor's, whatever the sample names."""

import metatensor
import numpy as np
import pytest
from metatensor_compare import assert_same_error_of

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

LIMITS = np.array([[-(2**31)], [2**31 - 1]], dtype=np.int32)


def _map(module, key, sample="s", prop="p", component=False, gradient=False, dtype=np.float64):
    """One block under ``key``: samples at the int32 limits, and options that change
    the block's metadata."""
    labels = module.Labels
    components = [labels(["c"], np.array([[0], [1]], dtype=np.int32))] if component else []
    shape = (2, *([2] if component else []), 1)
    properties = labels([prop], np.array([[2**31 - 1]], dtype=np.int32))
    values = np.arange(np.prod(shape), dtype=dtype).reshape(shape)
    block = module.TensorBlock(values, labels([sample], LIMITS), components, properties)
    if gradient:
        rows = labels(["sample", "atom"], np.array([[1, -(2**31)]], dtype=np.int32))
        block.add_gradient(
            "positions",
            module.TensorBlock(np.ones((1, *shape[1:]), dtype=dtype), rows, components, properties),
        )
    return module.TensorMap(labels(["k"], np.array([[key]], dtype=np.int32)), [block])


DIFFERENCES = [
    {"sample": "t"},
    {"prop": "q"},
    {"component": True},
    {"gradient": True},
    {"dtype": np.float32},
]


@pytest.mark.parametrize("axis", ["samples", "properties"])
@pytest.mark.parametrize("difference", DIFFERENCES)
@pytest.mark.parametrize("second_first", [False, True])
def test_union_of_blocks_that_do_not_fit_is_refused_as_metatensor(axis, difference, second_first):
    def joined(module):
        tensors = [_map(module, 0), _map(module, 1, **difference)]
        if second_first:
            tensors.reverse()
        return module.join(tensors, axis, different_keys="union")

    assert_same_error_of(joined)


@pytest.mark.parametrize("axis", ["samples", "properties"])
def test_union_of_blocks_that_fit_is_metatensors(axis):
    def joined(module):
        return module.join([_map(module, 0), _map(module, 1)], axis, different_keys="union")

    assert_equal_to_metatensor(joined(mtd), joined(metatensor))


@pytest.mark.parametrize("axis", ["samples", "properties"])
def test_empty_intersection_of_maps_with_other_sample_names_is_metatensors(axis):
    def joined(module):
        tensors = [_map(module, 0), _map(module, 1, sample="t")]
        return module.join(tensors, axis, different_keys="intersection")

    ours, theirs = joined(mtd), joined(metatensor)
    assert len(theirs) == 0
    assert_equal_to_metatensor(ours, theirs)


def test_common_keys_with_other_sample_names_are_still_refused_as_metatensor():
    def joined(module):
        first = _map(module, 0)
        second = module.join(
            [_map(module, 0, sample="t"), _map(module, 1, sample="t")],
            "samples",
            different_keys="union",
        )
        return module.join([first, second], "samples", different_keys="intersection")

    assert_same_error_of(joined)
