import metatensor
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle2 import (
    assert_co_partitioned,
    assert_same_error,
    check_against_metatensor,
    to_mts,
    tutorial,
)

import metatensor_dask as mtd
from metatensor_dask.testing import strategies


def _moves(name):
    if name == "radial-spectrum":
        return ["neighbor_type", ["center_type"], ["center_type", "neighbor_type"]]
    return ["neighbor_type", ["center_type", "neighbor_type"]]


@pytest.mark.parametrize("name", ["radial-spectrum", "spherical-expansion"])
@pytest.mark.parametrize("sort_samples", [True, False])
@pytest.mark.parametrize("method", ["keys_to_samples", "keys_to_properties"])
def test_like_metatensor(name, sort_samples, method):
    ours, theirs = tutorial(name)
    theirs.set_info("creator", "test")
    ours.set_info("creator", "test")
    for keys in _moves(name):
        result = check_against_metatensor(
            lambda keys=keys: getattr(ours, method)(
                keys, fill_value=-2.0, sort_samples=sort_samples
            ),
            lambda keys=keys: getattr(theirs, method)(
                keys, fill_value=-2.0, sort_samples=sort_samples
            ),
            [ours],
        )
        assert_co_partitioned(result)


def test_keys_to_properties_with_labels():
    ours, theirs = tutorial("radial-spectrum")
    values = np.array([[8], [1], [6]])
    check_against_metatensor(
        lambda: mtd.keys_to_properties(ours, mtd.Labels(["neighbor_type"], values)),
        lambda: theirs.keys_to_properties(metatensor.Labels(["neighbor_type"], values)),
        [ours],
    )
    check_against_metatensor(
        lambda: mtd.keys_to_properties(ours, mtd.Labels.empty(["neighbor_type"])),
        lambda: theirs.keys_to_properties(metatensor.Labels.empty(["neighbor_type"])),
        [ours],
    )


def test_components_to_properties():
    ours, theirs = tutorial("spherical-expansion")
    result = check_against_metatensor(
        lambda: ours.components_to_properties("o3_mu"),
        lambda: theirs.components_to_properties("o3_mu"),
        [ours],
    )
    assert_co_partitioned(result)


@settings(max_examples=10)
@given(
    tensor=strategies.tensor_maps(max_samples=5, max_components=0, grouped=False),
    method=st.sampled_from(["keys_to_samples", "keys_to_properties"]),
    sort_samples=st.booleans(),
)
def test_random_tensors(tensor, method, sort_samples):
    theirs = to_mts(tensor)
    keys = tensor.keys.names[-1]
    check_against_metatensor(
        lambda: getattr(mtd, method)(tensor, keys, sort_samples=sort_samples),
        lambda: getattr(theirs, method)(keys, sort_samples=sort_samples),
        [tensor],
    )


def test_errors_like_metatensor():
    ours, theirs = tutorial("spherical-expansion")
    empty = mtd.TensorMap(mtd.Labels.empty(["a"]), [])
    empty_theirs = metatensor.TensorMap(metatensor.Labels.empty(["a"]), [])
    cases = [
        (lambda: ours.keys_to_samples("zz"), lambda: theirs.keys_to_samples("zz")),
        (lambda: ours.keys_to_properties("zz"), lambda: theirs.keys_to_properties("zz")),
        (lambda: empty.keys_to_samples("a"), lambda: empty_theirs.keys_to_samples("a")),
        (
            lambda: ours.keys_to_samples(mtd.Labels(["o3_lambda"], np.array([[0]]))),
            lambda: theirs.keys_to_samples(metatensor.Labels(["o3_lambda"], np.array([[0]]))),
        ),
        (lambda: ours.keys_to_samples("o3_lambda"), lambda: theirs.keys_to_samples("o3_lambda")),
        (
            lambda: ours.keys_to_properties("o3_lambda"),
            lambda: theirs.keys_to_properties("o3_lambda"),
        ),
        (
            lambda: ours.components_to_properties("zz"),
            lambda: theirs.components_to_properties("zz"),
        ),
    ]
    for mine, other in cases:
        assert_same_error(mine, other)
