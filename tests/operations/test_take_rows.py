"""``take_rows``: rows in any order, also from arrays with empty chunks."""

import dask.array as da
import numpy as np
import pytest

from metatensor_dask.operations._manipulation_utils import take_rows


@pytest.mark.parametrize("chunks", [((0, 0, 0, 3), 2), ((1, 0, 2), 2), ((3,), 2), ((0, 3, 0), 2)])
@pytest.mark.parametrize("index", [[2, 0, 1], [1, 1, 0], [2, -1, 0], []])
def test_matches_numpy(chunks, index):
    data = np.arange(6.0).reshape(3, 2)
    array = da.from_array(data, chunks=chunks)
    index = np.array(index, dtype=np.int64)
    expected = np.concatenate([data, np.full((1, 2), 7.0)])[index]
    result = take_rows(array, index, fill=7.0)
    np.testing.assert_array_equal(result.compute(), expected)
