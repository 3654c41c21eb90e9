"""``block_from_array`` on dask arrays in any chunking equals metatensor's
``block_from_array`` on the same numpy array: several sample or property axes flattened
into one whatever the chunks of the flattened axes (irregular, of zero rows, or an axis
of zero entries), and the block is built without computing."""

import dask.array as da
import metatensor
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes


def _assert_like_metatensor(shape, chunks, names):
    array = np.random.default_rng(len(shape)).uniform(-1, 1, shape)
    expected = metatensor.block_from_array(array, **names)
    chunked = da.from_array(array, chunks=-1).rechunk(chunks)
    with raise_if_dask_computes():
        block = mtd.block_from_array(chunked, **names)
    assert_equal_to_metatensor(block, expected)


@pytest.mark.parametrize(
    "shape, chunks, names",
    [
        # axes of zero entries among the flattened ones
        ((0, 3, 1, 0), ((0,), (1, 1, 1), (1,), (0,)), {"sample_names": ["a", "b"]}),
        ((2, 0, 4), ((1, 1), (0,), (0, 3, 1)), {"property_names": ["p", "q"]}),
        ((1, 3, 4, 0, 4), ((1,), (1, 1, 1), (2, 2), (0,), (4,)), {"sample_names": list("abcd")}),
        # chunks of zero rows on flattened axes
        ((1, 1, 4, 2, 1), ((1,), (0, 1), (1, 2, 1), (2,), (1,)), {"sample_names": list("abc")}),
        (
            (3, 4, 4, 3, 2),
            ((0, 0, 3), (2, 0, 1, 1), (4,), (0, 1, 1, 1, 0), (2,)),
            {"sample_names": list("abc")},
        ),
        # irregular chunks on every flattened axis
        (
            (5, 3, 4, 6),
            ((2, 3), (1, 2), (3, 1), (4, 2)),
            {"sample_names": ["a", "b"], "property_names": ["p", "q"]},
        ),
    ],
)
def test_flattened_axes_in_any_chunks_are_metatensors(shape, chunks, names):
    _assert_like_metatensor(shape, chunks, names)


@st.composite
def _chunks_of(draw, n):
    """Chunk sizes summing to ``n``, with chunks of zero entries anywhere."""
    sizes = []
    left = n
    while left:
        size = draw(st.integers(0, left))
        sizes.append(size)
        left -= size
    if draw(st.booleans()):
        sizes.insert(draw(st.integers(0, len(sizes))), 0)
    return tuple(sizes) or (0,)


@st.composite
def _layouts(draw):
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=2, max_size=5)))
    chunks = tuple(draw(_chunks_of(n)) for n in shape)
    d_samples = draw(st.integers(1, len(shape) - 1))
    d_properties = draw(st.integers(1, len(shape) - d_samples))
    names = {
        "sample_names": [f"s{i}" for i in range(d_samples)],
        "property_names": [f"p{i}" for i in range(d_properties)],
    }
    return shape, chunks, names


@settings(max_examples=60, deadline=None)
@given(_layouts())
def test_any_chunking_is_metatensors(layout):
    shape, chunks, names = layout
    n_components = len(shape) - len(names["sample_names"]) - len(names["property_names"])
    component_shape = shape[len(names["sample_names"]) :][:n_components]
    assume(0 not in component_shape)  # metatensor refuses components without entries
    _assert_like_metatensor(shape, chunks, names)
