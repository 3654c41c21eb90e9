"""Gradient co-partitioning against brute-force numpy: row pointers, chunks, local indices."""

import dask.array as da
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import metatensor_dask as mtd
from metatensor_dask._partition import (
    block_row_pointer,
    co_partitioned,
    gradient_row_chunks,
    local_sample_index,
    row_pointer,
)
from metatensor_dask.testing import raise_if_dask_computes
from metatensor_dask.testing.strategies import chunkings


@st.composite
def grouped_gradients(draw):
    """A number of value rows, a grouped "sample" column, and a values chunking."""
    n_samples = draw(st.integers(0, 12))
    counts = draw(st.lists(st.integers(0, 3), min_size=n_samples, max_size=n_samples))
    column = np.repeat(np.arange(n_samples), counts).astype(np.int32)
    return n_samples, column, draw(chunkings(n_samples))


def chunk_of_each_row(value_chunks):
    """For each value row: (its chunk, the chunk's first row)."""
    starts = np.concatenate([[0], np.cumsum(value_chunks)[:-1]]).astype(int)
    chunk = np.repeat(np.arange(len(value_chunks)), value_chunks)
    return chunk, starts[chunk]


@given(grouped_gradients())
def test_row_pointer_against_brute_force(case):
    n_samples, column, _ = case
    pointer = row_pointer(column, n_samples)
    assert pointer.dtype == np.int64
    assert len(pointer) == n_samples + 1
    for r in range(n_samples):
        rows = np.nonzero(column == r)[0]
        assert list(range(pointer[r], pointer[r + 1])) == rows.tolist()
    assert pointer[0] == 0
    assert pointer[-1] == len(column)


@given(grouped_gradients())
def test_gradient_row_chunks_against_brute_force(case):
    n_samples, column, value_chunks = case
    pointer = row_pointer(column, n_samples)
    chunks = gradient_row_chunks(pointer, value_chunks)
    assert len(chunks) == len(value_chunks)
    chunk, _ = chunk_of_each_row(value_chunks)
    expected = [int(np.sum(chunk[column] == i)) for i in range(len(value_chunks))]
    assert list(chunks) == expected
    assert all(isinstance(n, int) for n in chunks)


@given(grouped_gradients())
def test_local_sample_index_against_brute_force(case):
    n_samples, column, value_chunks = case
    pointer = row_pointer(column, n_samples)
    with raise_if_dask_computes():
        local = local_sample_index(pointer, value_chunks)
    assert local.dtype == np.int64
    assert local.chunks == (gradient_row_chunks(pointer, value_chunks),)
    _, start = chunk_of_each_row(value_chunks)
    np.testing.assert_array_equal(local.compute(), column - start[column])


def test_rows_not_grouped_by_sample_have_no_pointer():
    assert row_pointer(np.array([0, 1, 0]), 2) is None
    assert row_pointer(np.array([1, 0]), 2) is None
    # grouped but not starting at 0, or with gaps: fine
    np.testing.assert_array_equal(row_pointer(np.array([1, 1, 3]), 4), [0, 0, 2, 2, 3])
    np.testing.assert_array_equal(row_pointer(np.array([], dtype=np.int32), 3), [0, 0, 0, 0])
    np.testing.assert_array_equal(row_pointer(np.array([], dtype=np.int32), 0), [0])


def block_with_gradient(n_samples, column, value_chunks, seed=0):
    rng = np.random.default_rng(seed)
    values = rng.random((n_samples, 2))
    gradient_values = rng.random((len(column), 3, 2))
    block = mtd.TensorBlock(
        da.from_array(values, chunks=(value_chunks, 2)),
        mtd.Labels.range("s", n_samples),
        [],
        mtd.Labels.range("p", 2),
    )
    samples = np.stack([column, np.arange(len(column))], axis=1)
    gradient = mtd.TensorBlock(
        da.from_array(gradient_values, chunks=(max(len(column), 1), 3, 2)),
        mtd.Labels(["sample", "atom"], samples),
        [mtd.Labels.range("xyz", 3)],
        mtd.Labels.range("p", 2),
    )
    block.add_gradient("positions", gradient)
    return block, values, gradient_values


@given(grouped_gradients())
def test_co_partitioned_chunks_hold_the_rows_of_their_values_chunk(case):
    n_samples, column, value_chunks = case
    block, values, gradient_values = block_with_gradient(n_samples, column, value_chunks)
    with raise_if_dask_computes():
        values_array, gradient = co_partitioned(block, "positions")
    assert values_array.chunks[0] == value_chunks
    assert gradient.chunks[0] == gradient_row_chunks(row_pointer(column, n_samples), value_chunks)
    assert gradient.chunks[1:] == ((3,), (2,))
    np.testing.assert_array_equal(gradient.compute(), gradient_values)
    if n_samples == 0:
        return
    # chunk by chunk, with local indices: each gradient row times its value row
    local = local_sample_index(row_pointer(column, n_samples), value_chunks)
    products = da.map_blocks(
        lambda v, g, i: v[i[:, 0, 0], 0][:, None, :] * g,
        values_array[:, None, :],
        gradient,
        local[:, None, None],
        dtype=np.float64,
        chunks=gradient.chunks,
    )
    expected = values[column][:, None, :] * gradient_values
    np.testing.assert_array_equal(products.compute(), expected)


def test_co_partitioned_keeps_an_already_matching_gradient():
    column = np.array([0, 0, 1, 2, 2, 2])
    block, _, _ = block_with_gradient(3, column, (1, 2))
    _, gradient = co_partitioned(block, "positions")
    aligned = mtd.TensorBlock(
        gradient,
        block.gradient("positions").samples,
        block.gradient("positions").components,
        block.properties,
    )
    again = mtd.TensorBlock(block.values, block.samples, [], block.properties)
    again.add_gradient("positions", aligned)
    _, same = co_partitioned(again, "positions")
    assert same.name == gradient.name
    assert same.chunks == gradient.chunks


def test_co_partitioned_needs_grouped_rows():
    block, _, _ = block_with_gradient(3, np.array([2, 0, 1]), (2, 1))
    assert co_partitioned(block, "positions") is None
    assert block_row_pointer(block, "positions") is None


def test_block_row_pointer_is_computed_once_and_uses_sample_labels():
    column = np.array([0, 1, 1, 2])
    block, _, _ = block_with_gradient(3, column, (3,))
    pointer = block_row_pointer(block, "positions")
    np.testing.assert_array_equal(pointer, [0, 1, 3, 4])
    assert block_row_pointer(block, "positions") is pointer


def test_stored_row_pointer_avoids_loading_gradient_samples():
    def fail():
        raise AssertionError("gradient sample labels were loaded")

    pointer = np.array([0, 2, 2, 3], dtype=np.int64)
    values = da.zeros((3, 2), chunks=(2, 2))
    gradient = mtd.TensorBlock._trusted(
        da.zeros((3, 3, 2), chunks=(3, 3, 2)),
        mtd.Labels.lazy(["sample", "atom"], 3, fail),
        [mtd.Labels.range("xyz", 3)],
        mtd.Labels.range("p", 2),
        row_pointer=pointer,
    )
    block = mtd.TensorBlock._trusted(
        values,
        mtd.Labels.range("s", 3),
        [],
        mtd.Labels.range("p", 2),
        gradients={"positions": gradient},
    )
    with raise_if_dask_computes():
        _, co = co_partitioned(block, "positions")
    assert co.chunks[0] == (2, 1)
    # the stored pointer itself (a read-only view of it), not one rebuilt from samples
    assert np.shares_memory(block_row_pointer(block, "positions"), pointer)
    assert not block.gradient("positions").samples.is_loaded


def test_computed_blocks_are_one_chunk():
    column = np.array([0, 0, 1])
    block, _, gradient_values = block_with_gradient(2, column, (1, 1))
    computed = block.compute()
    values, gradient = co_partitioned(computed, "positions")
    assert values.chunks[0] == (2,)
    assert gradient.chunks[0] == (3,)
    np.testing.assert_array_equal(gradient.compute(), gradient_values)


@pytest.mark.parametrize("value_chunks", [(0,), (3,), (1, 1, 1)])
def test_gradients_without_rows(value_chunks):
    n = sum(value_chunks)
    block, _, _ = block_with_gradient(n, np.array([], dtype=np.int32), value_chunks)
    _, gradient = co_partitioned(block, "positions")
    assert gradient.shape == (0, 3, 2)
    assert sum(gradient.chunks[0]) == 0
    local = local_sample_index(row_pointer(np.array([], dtype=np.int32), n), value_chunks)
    assert local.shape == (0,)


def _blocks_sharing_gradient_samples(samples, n_samples):
    blocks = []
    for _ in range(3):
        block = mtd.TensorBlock(
            da.zeros((n_samples, 2), chunks=(n_samples, 2)),
            mtd.Labels.range("s", n_samples),
            [],
            mtd.Labels.range("p", 2),
        )
        gradient = mtd.TensorBlock(
            da.zeros((len(samples), 3, 2), chunks=(len(samples), 3, 2)),
            samples,
            [mtd.Labels.range("xyz", 3)],
            mtd.Labels.range("p", 2),
        )
        block.add_gradient("positions", gradient)
        blocks.append(block)
    return blocks


def test_blocks_sharing_gradient_samples_share_the_row_pointer():
    samples = mtd.Labels(["sample", "atom"], np.array([[0, 0], [1, 0], [1, 1], [2, 1]]))
    first, second, _ = _blocks_sharing_gradient_samples(samples, 3)
    pointer = block_row_pointer(first, "positions")
    np.testing.assert_array_equal(pointer, [0, 1, 3, 4])
    assert block_row_pointer(second, "positions") is pointer
    assert second.gradient("positions").row_pointer is pointer
    assert not pointer.flags.writeable
    # the same samples under more value rows: another pointer
    (longer, *_) = _blocks_sharing_gradient_samples(samples, 5)
    np.testing.assert_array_equal(block_row_pointer(longer, "positions"), [0, 1, 3, 4, 4, 4])
    # rows not grouped by sample: no pointer for any block
    shuffled = mtd.Labels(["sample", "atom"], np.array([[1, 0], [0, 0]]))
    for block in _blocks_sharing_gradient_samples(shuffled, 2):
        assert block_row_pointer(block, "positions") is None
