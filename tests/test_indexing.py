"""``TensorBlock.values`` accepts the tutorial's ``values[rows, None, :]`` on any chunking."""

import dask.array as da
import numpy as np
import pytest

from metatensor_dask import Labels, TensorBlock
from metatensor_dask._graph import BlockValues, block_values


@pytest.mark.parametrize("shape", [(1, 3), (4, 3), (5, 2, 3)])
@pytest.mark.parametrize("rows", [[0], [0, 0], [0, 0, 0]])
def test_integer_rows_with_new_axis_match_numpy(shape, rows):
    data = np.arange(np.prod(shape), dtype=float).reshape(shape)
    values = block_values(da.from_array(data, chunks=(1, *shape[1:])))
    rows = np.array(rows)
    index = (rows, None) + (slice(None),) * (len(shape) - 1)
    np.testing.assert_array_equal(values[index].compute(), data[index])


@pytest.mark.parametrize(
    "index", [(slice(None), None), (0, None, slice(None)), (np.array([1, 0]), slice(1, 3))]
)
def test_other_indices_match_numpy(index):
    data = np.arange(12.0).reshape(4, 3)
    values = block_values(da.from_array(data, chunks=(2, 3)))
    np.testing.assert_array_equal(values[index].compute(), data[index])


def test_is_a_dask_array_with_the_same_graph():
    array = da.ones((3, 2), chunks=(1, 2))
    values = block_values(array)
    assert isinstance(values, da.Array)
    assert values.name == array.name
    assert values.chunks == array.chunks


@pytest.mark.parametrize("n_rows", [1, 3])
def test_block_values_take_every_row_with_a_new_axis(n_rows):
    # dask 2026.8 alone raises "'Alias' object has no attribute 'args'" when the integer
    # rows select every row in order, as a strain gradient's "sample" column does
    data = np.arange(n_rows * 2.0).reshape(n_rows, 2)
    block = TensorBlock(
        da.from_array(data, chunks=(n_rows, 2)),
        Labels.range("s", n_rows),
        [],
        Labels.range("p", 2),
    )
    rows = np.arange(n_rows)
    with pytest.raises(AttributeError, match="Alias"):
        da.from_array(data, chunks=(n_rows, 2))[rows, None, :]
    np.testing.assert_array_equal(block.values[rows, None, :].compute(), data[rows, None, :])


def test_values_getter_has_no_side_effect():
    block = TensorBlock(da.ones((3, 2)), Labels.range("s", 3), [], Labels.range("p", 2))
    held = block._values
    assert isinstance(block.values, BlockValues)
    assert block.values is held
    assert block._values is held
