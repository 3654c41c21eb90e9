"""``keys_to_samples`` and ``keys_to_properties`` on maps of many tiny blocks: results
equal to metatensor's (values and every gradient) whether the outputs are one grouped
call, a few row chunks written into one buffer or many row chunks; nothing computed
while building; tasks that grow with the chunks, not with the blocks."""

import itertools
import pickle

import dask
import dask.array as da
import dask.array.core
import metatensor
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import lazily, rechunked
from test_tiny_blocks import scheduled_tasks
from test_tiny_manipulation import many

import metatensor_dask as mtd
from metatensor_dask import _row_buffer
from metatensor_dask.operations import _stacking
from metatensor_dask.operations._keys_to import _unique_grouped_rows
from metatensor_dask.operations._manipulation_utils import unique_rows
from metatensor_dask.testing import assert_equal_to_metatensor


def _labels(values, module=mtd):
    return module.Labels(["k"], np.array(values, np.int32).reshape(-1, 1))


CASES = {
    "samples": (lambda t: mtd.keys_to_samples(t, "k"), lambda t: t.keys_to_samples("k")),
    "samples unsorted": (
        lambda t: mtd.keys_to_samples(t, "k", sort_samples=False, fill_value=-1.0),
        lambda t: t.keys_to_samples("k", sort_samples=False, fill_value=-1.0),
    ),
    "samples all keys": (
        lambda t: mtd.keys_to_samples(t, ["a", "k"]),
        lambda t: t.keys_to_samples(["a", "k"]),
    ),
    "properties": (
        lambda t: mtd.keys_to_properties(t, "k", fill_value=0.5),
        lambda t: t.keys_to_properties("k", fill_value=0.5),
    ),
    "properties unsorted": (
        lambda t: mtd.keys_to_properties(t, "a", sort_samples=False),
        lambda t: t.keys_to_properties("a", sort_samples=False),
    ),
}

# one chunk per output (grouped calls), a few row chunks (one buffer), many row chunks
CHUNK_SIZES = [None, "4KiB", "200B"]


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("name", list(CASES))
def test_equal_to_metatensor(name, uniform, chunk_size):
    """Blocks with the same samples and properties, or with 0 to 5 samples (some none)
    and properties varying by block (one with none)."""
    theirs = many(36, uniform=uniform)
    ours = mtd.from_metatensor(theirs)
    settings = {} if chunk_size is None else {"metatensor_dask.chunk-size": chunk_size}
    with dask.config.set(settings):
        result = lazily(CASES[name][0], ours)
    assert_equal_to_metatensor(result, CASES[name][1](theirs))


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
@pytest.mark.parametrize("selected", [[[0], [2], [7], [100]], [[11], [3]], [[50]]])
def test_keys_to_properties_with_given_keys(selected, chunk_size):
    """Entries listed in any order, blocks left out, entries of no block (filled)."""
    theirs = many(36, uniform=True)
    ours = mtd.from_metatensor(theirs)
    settings = {} if chunk_size is None else {"metatensor_dask.chunk-size": chunk_size}
    with dask.config.set(settings):
        result = lazily(lambda: mtd.keys_to_properties(ours, _labels(selected), fill_value=-3.0))
    expected = theirs.keys_to_properties(_labels(selected, metatensor), fill_value=-3.0)
    assert_equal_to_metatensor(result, expected)


def _few_row_chunks():
    theirs = many(36, uniform=True)
    with dask.config.set({"metatensor_dask.chunk-size": "4KiB"}):
        result = mtd.keys_to_samples(mtd.from_metatensor(theirs), "k")
    gradient = result.block(0).gradient("positions").values
    assert 1 < gradient.numblocks[0] <= 4
    return result, gradient, theirs.keys_to_samples("k")


def test_few_row_chunks_computed_without_joining_them(monkeypatch):
    """Rows written into one buffer: computing gives the buffer, not a copy."""
    result, gradient, expected = _few_row_chunks()

    def refused(*_):
        raise AssertionError("the row chunks were joined into a new array")

    monkeypatch.setattr(dask.array.core, "concatenate3", refused)
    computed = gradient.compute()
    np.testing.assert_array_equal(computed, expected.block(0).gradient("positions").values)
    assert_equal_to_metatensor(result, expected)


@pytest.mark.parametrize("name", ["samples", "samples unsorted"])
def test_few_row_chunks_placed_by_one_task(monkeypatch, name):
    """The rows of every block are in every row chunk when samples are sorted: one
    task places all of them, once, into the buffer that the chunks are views of."""
    calls = []
    placed = _stacking.RowTargets.placed

    def counted(self, arrays, shape, *rest):
        calls.append(shape[0])
        return placed(self, arrays, shape, *rest)

    monkeypatch.setattr(_stacking.RowTargets, "placed", counted)
    theirs = many(36, uniform=True)
    with dask.config.set({"metatensor_dask.chunk-size": "4KiB"}):
        result = lazily(CASES[name][0], mtd.from_metatensor(theirs))
    gradient = result.block(0).gradient("positions").values
    assert 1 < gradient.numblocks[0] <= 4
    calls.clear()
    computed = gradient.compute()
    assert calls == [len(computed)]
    expected = CASES[name][1](theirs).block(0).gradient("positions").values
    np.testing.assert_array_equal(computed, expected)


def test_persisted_rows_are_not_shared_with_computed_arrays():
    result, gradient, expected = _few_row_chunks()
    reference = expected.block(0).gradient("positions").values
    for persisted in (gradient.persist(), result.persist().block(0).gradient("positions").values):
        first = persisted.compute()
        first[...] = -7.0
        np.testing.assert_array_equal(persisted.compute(), reference)


def test_chunks_of_one_buffer_are_joined_when_not_whole():
    """Some of the row chunks, or the chunks in another order: joined as usual."""
    _, gradient, expected = _few_row_chunks()
    reference = expected.block(0).gradient("positions").values
    bounds = np.cumsum([0, *gradient.chunks[0]])
    rest = gradient[int(bounds[1]) :]
    np.testing.assert_array_equal(rest.compute(), reference[bounds[1] :])
    backwards = da.concatenate([gradient.blocks[i] for i in range(gradient.numblocks[0])][::-1])
    expected_backwards = np.concatenate(
        [reference[a:b] for a, b in itertools.pairwise(bounds)][::-1]
    )
    np.testing.assert_array_equal(backwards.compute(), expected_backwards)


def test_many_row_chunks_are_arrays_of_their_own():
    theirs = many(36, uniform=True)
    with dask.config.set({"metatensor_dask.chunk-size": "200B"}):
        result = mtd.keys_to_samples(mtd.from_metatensor(theirs), "k")
    gradient = result.block(0).gradient("positions").values
    assert gradient.numblocks[0] > 4
    assert not any("buffer" in str(key) for key in gradient.__dask_graph__())
    assert_equal_to_metatensor(result, theirs.keys_to_samples("k"))


@pytest.fixture(scope="module")
def uniform_maps() -> dict[int, mtd.TensorMap]:
    """``many(n, uniform=True)`` in metatensor-dask for 30 and 600 blocks, built once
    for the tests of the module (operations leave their inputs as they are)."""
    return {n: mtd.from_metatensor(many(n, uniform=True)) for n in (30, 600)}


@pytest.mark.parametrize("name", ["samples", "properties"])
def test_tasks_grow_with_chunks_not_blocks(name, uniform_maps):
    """The same number of tasks for 30 and 600 blocks when the outputs fit in a chunk;
    with small chunks, one task per row chunk (and one per buffer)."""
    counts = [scheduled_tasks(CASES[name][0](uniform_maps[n])) for n in (30, 600)]
    assert counts[0] == counts[1]
    ours = uniform_maps[600]
    with dask.config.set({"metatensor_dask.chunk-size": "4KiB"}):
        result = CASES[name][0](ours)
    arrays = [a for block in result.blocks() for a in block._arrays()]
    chunks = sum(a.numblocks[0] for a in arrays)
    buffers = sum(any("buffer" in str(k) for k in a.__dask_graph__()) for a in arrays)
    assert scheduled_tasks(result) <= chunks + buffers


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
@pytest.mark.parametrize("method", ["keys_to_samples", "keys_to_properties"])
def test_on_results_of_grouped_tasks_and_computed_maps(method, chunk_size):
    """Pieces that are items of an earlier operation's groups, or numpy arrays."""
    theirs = many(36)
    ours = mtd.from_metatensor(theirs)
    settings = {} if chunk_size is None else {"metatensor_dask.chunk-size": chunk_size}
    with dask.config.set(settings):
        chained = lazily(lambda: getattr(mtd, method)(mtd.add(ours, ours), "k"))
        computed = getattr(mtd, method)(ours.compute(), "k")
    assert_equal_to_metatensor(chained, getattr(metatensor.add(theirs, theirs), method)("k"))
    assert_equal_to_metatensor(computed, getattr(theirs, method)("k"))


def test_a_buffer_sent_to_another_process_is_no_buffer():
    """Its rows sent elsewhere are copies, joined as usual; the rows themselves give
    the buffer, once."""
    array = _row_buffer.buffer((6, 2), np.float64)
    first, second = _row_buffer.rows(array, 0, 3), _row_buffer.rows(array, 3, 6)
    first[...], second[...] = 1.0, 2.0
    sent = [pickle.loads(pickle.dumps(chunk)) for chunk in (first, second)]
    assert _row_buffer.whole(sent) is None
    copy = pickle.loads(pickle.dumps(array))
    assert _row_buffer.whole([copy[:3], copy[3:]]) is None
    joined = _row_buffer.whole([first, second])
    assert joined is array
    assert _row_buffer.whole([first, second]) is None  # handed out once
    np.testing.assert_array_equal(joined, [[1.0, 1.0]] * 3 + [[2.0, 2.0]] * 3)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 4), st.integers(-2, 2), st.integers(0, 2)), max_size=12),
    st.integers(1, 3),
)
def test_unique_grouped_rows_as_unique_rows(entries, columns):
    """The linear merge of gradient samples gives the sorted unique rows, or None."""
    rows = np.array(entries, np.int32).reshape(-1, 3)[:, :columns]
    found = _unique_grouped_rows(rows, 5)
    if found is None:
        return
    merged, position = found
    expected, expected_position = unique_rows(rows)
    np.testing.assert_array_equal(merged, expected)
    np.testing.assert_array_equal(position, expected_position)


def test_unique_grouped_rows_found_or_not():
    grouped = np.array([[2, 0], [2, 3], [0, 1], [1, 0], [1, 2]], np.int32)
    merged, position = _unique_grouped_rows(grouped, 3)
    np.testing.assert_array_equal(merged, grouped[[2, 3, 4, 0, 1]])
    np.testing.assert_array_equal(position, [3, 4, 0, 1, 2])
    for rows in ([[1, 0], [0, 0], [1, 1]], [[0, 1], [0, 0]], [[0, 1], [0, 1]], [[0], [0]]):
        assert _unique_grouped_rows(np.array(rows, np.int32), 2) is None


def _same_samples(sample_entries, gradient_entries, n_blocks, shared):
    """``n_blocks`` blocks (keys ``k``) with the same samples and gradient samples (one
    Labels object for all when ``shared``, else equal copies), 1 or 2 properties."""
    rng = np.random.default_rng(0)
    samples = np.array(sample_entries, np.int32).reshape(-1, 2)
    gradient_rows = np.array(gradient_entries, np.int32).reshape(-1, 2)
    gradient_rows = gradient_rows[gradient_rows[:, 0] < len(samples)]

    def both_labels():
        return (
            metatensor.Labels(["s", "t"], samples),
            metatensor.Labels(["sample", "n"], gradient_rows),
        )

    common = both_labels()
    blocks = []
    for k in range(n_blocks):
        own_samples, own_gradient_samples = common if shared else both_labels()
        properties = metatensor.Labels.range("p", 1 + k % 2)
        block = metatensor.TensorBlock(
            rng.random((len(samples), len(properties))), own_samples, [], properties
        )
        gradient = metatensor.TensorBlock(
            rng.random((len(gradient_rows), len(properties))), own_gradient_samples, [], properties
        )
        block.add_gradient("g", gradient)
        blocks.append(block)
    return metatensor.TensorMap(_labels(range(n_blocks), metatensor), blocks)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(-1, 1)), max_size=6, unique=True),
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2)), max_size=10, unique=True),
    st.integers(1, 4),
    st.booleans(),
    st.booleans(),
    st.sampled_from(CHUNK_SIZES),
)
def test_properties_of_blocks_with_the_same_gradient_samples(
    samples, gradient_rows, n_blocks, shared, sort, chunk_size
):
    """Blocks of the same samples (in any order) and the same gradient samples (in any
    order, some samples without rows), whose gradient samples are merged once for all
    blocks: equal to metatensor's, sorted or not, tiny or in row chunks."""
    theirs = _same_samples(samples, gradient_rows, n_blocks, shared)
    expected = theirs.keys_to_properties("k", sort_samples=sort)
    ours = mtd.from_metatensor(theirs)
    config = {} if chunk_size is None else {"metatensor_dask.chunk-size": chunk_size}
    with dask.config.set(config):
        for tensor in (ours, rechunked(ours, 2, 3)):
            result = lazily(lambda t=tensor: mtd.keys_to_properties(t, "k", sort_samples=sort))
            assert_equal_to_metatensor(result, expected)
