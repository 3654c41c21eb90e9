"""Rows gathered in any order, with missing rows filled: one task per output chunk.

Merging the samples of several blocks (``keys_to_samples``) or placing a block's rows
among rows it does not have (``keys_to_properties``, ``join``) takes rows in an order
that dask's fancy indexing turns into a shuffle: every input chunk split for every
output chunk. :func:`metatensor_dask._graph.gathered_rows` reads, for each output
chunk, only the input chunks its rows come from.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from metatensor_dask import _graph
from metatensor_dask.testing import raise_if_dask_computes


def _expected(values: np.ndarray, index: np.ndarray, fill: float) -> np.ndarray:
    out = np.full((len(index), *values.shape[1:]), fill, dtype=values.dtype)
    out[index >= 0] = values[index[index >= 0]]
    return out


def _random_index(rng: np.random.Generator, rows: int, count: int) -> np.ndarray:
    """``count`` rows of ``rows`` in random order (repeats allowed), a fifth missing."""
    index = rng.integers(0, max(rows, 1), size=count)
    index[rng.random(count) < 0.2] = -1
    return index if rows else np.full(count, -1)


@pytest.mark.parametrize("seed", range(6))
def test_equals_numpy_for_random_shapes_chunks_and_orders(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = int(rng.integers(0, 40))
    trailing = tuple(int(n) for n in rng.integers(1, 4, size=int(rng.integers(0, 3))))
    values = rng.normal(size=(rows, *trailing)).astype(rng.choice([np.float64, np.float32]))
    chunks = (int(rng.integers(1, 9)), *(1,) * len(trailing))
    index = _random_index(rng, rows, int(rng.integers(0, 60)))
    fill = float(rng.choice([0.0, -7.5, np.nan]))
    with raise_if_dask_computes():
        result = _graph.gathered_rows(da.from_array(values, chunks=chunks), index, fill)
    assert result is not None
    assert result.dtype == values.dtype
    computed = result.compute(scheduler="sync")
    assert computed.shape == (len(index), *trailing)
    np.testing.assert_array_equal(computed, _expected(values, index, fill))


def test_one_task_per_output_chunk_reading_only_its_sources() -> None:
    values = np.arange(120.0).reshape(40, 3)
    array = da.from_array(values, chunks=(10, 3))
    # the rows of chunks 1 and 3, interleaved, with missing rows between them
    index = np.ravel(np.column_stack([np.arange(10, 20), np.arange(30, 40), -np.ones(10)]))
    result = _graph.gathered_rows(array, index.astype(np.int64), 0.0)
    assert result is not None
    assert result.chunks == ((10, 10, 10), (3,))
    own = {key: node for key, node in dict(result.dask).items() if key[0] == result.name}
    assert len(own) == 3
    inputs = {dep for node in own.values() for dep in node.dependencies}
    assert inputs == {(array.name, 1, 0), (array.name, 3, 0)}
    shuffled = da.from_array(values, chunks=(10, 3))[np.where(index < 0, 0, index).astype(int)]
    assert len(dict(result.__dask_graph__())) < len(dict(shuffled.__dask_graph__()))
    np.testing.assert_array_equal(result.compute(), _expected(values, index.astype(int), 0.0))


def test_an_in_memory_chunk_is_held_by_the_tasks() -> None:
    values = np.arange(12.0).reshape(6, 2)
    array = _graph.in_memory_array(values)
    index = np.array([5, -1, 0, 0, 3])
    result = _graph.gathered_rows(array, index, 1.5)
    assert result is not None
    own = [node for key, node in dict(result.dask).items() if key[0] == result.name]
    assert len(own) == 1
    assert not own[0].dependencies
    np.testing.assert_array_equal(result.compute(), _expected(values, index, 1.5))


def test_no_rows_and_only_missing_rows() -> None:
    array = da.from_array(np.ones((5, 2)), chunks=(2, 2))
    empty = _graph.gathered_rows(array, np.array([], dtype=np.int64), 0.0)
    assert empty is not None
    assert empty.compute().shape == (0, 2)
    missing = _graph.gathered_rows(array, np.full(3, -1), 4.0)
    assert missing is not None
    assert missing.chunks == ((2, 1), (2,))
    np.testing.assert_array_equal(missing.compute(), np.full((3, 2), 4.0))


def test_trailing_axes_in_several_chunks_are_joined() -> None:
    values = np.arange(60.0).reshape(5, 3, 4)
    array = da.from_array(values, chunks=(2, 1, 2))
    index = np.array([4, 0, -1, 2])
    result = _graph.gathered_rows(array, index, 0.0)
    assert result is not None
    assert result.chunks[1:] == ((3,), (4,))
    np.testing.assert_array_equal(result.compute(), _expected(values, index, 0.0))


def test_too_many_sources_for_one_chunk_is_refused() -> None:
    many = _graph.MAX_GATHER_SOURCES + 1
    # a chunk of 16 rows, then `many` chunks of one row: the output chunk (16 rows)
    # takes one row of each of these
    array = da.from_array(np.arange(16.0 + many), chunks=((16, *(1,) * many),))
    index = np.arange(16, 16 + many)
    assert _graph.gathered_rows(array, index, 0.0) is None
    assert _graph.gathered_rows(array, index[:-1], 0.0) is not None
