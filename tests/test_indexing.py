"""``TensorBlock.values`` accepts the tutorial's ``values[rows, None, :]`` on any chunking."""

import dask.array as da
import numpy as np
import pytest

from metatensor_dask._indexing import BlockValues


@pytest.mark.parametrize("shape", [(1, 3), (4, 3), (5, 2, 3)])
@pytest.mark.parametrize("rows", [[0], [0, 0], [0, 0, 0]])
def test_integer_rows_with_new_axis_match_numpy(shape, rows):
    data = np.arange(np.prod(shape), dtype=float).reshape(shape)
    values = BlockValues.view_of(da.from_array(data, chunks=(1, *shape[1:])))
    rows = np.array(rows)
    index = (rows, None) + (slice(None),) * (len(shape) - 1)
    np.testing.assert_array_equal(values[index].compute(), data[index])


@pytest.mark.parametrize(
    "index", [(slice(None), None), (0, None, slice(None)), (np.array([1, 0]), slice(1, 3))]
)
def test_other_indices_match_numpy(index):
    data = np.arange(12.0).reshape(4, 3)
    values = BlockValues.view_of(da.from_array(data, chunks=(2, 3)))
    np.testing.assert_array_equal(values[index].compute(), data[index])


def test_is_a_dask_array_with_the_same_graph():
    array = da.ones((3, 2), chunks=(1, 2))
    values = BlockValues.view_of(array)
    assert isinstance(values, da.Array)
    assert values.name == array.name
    assert values.chunks == array.chunks
