"""``slice``, ``join`` and ``keys_to_*`` on maps of many tiny blocks: one numpy call per
output array, a few grouped tasks per map, results equal to metatensor's."""

import gc

import dask
import dask.array as da
import metatensor
import numpy as np
import pytest
from oracle import lazily, rechunked
from test_tiny_blocks import scheduled_tasks

import metatensor_dask as mtd
from metatensor_dask.operations import _grouping
from metatensor_dask.testing import assert_equal_to_metatensor


def _gradient(rng, rows, extra, components, properties):
    return metatensor.TensorBlock(
        rng.random((len(rows), *(len(c) for c in extra + components), len(properties))),
        metatensor.Labels(["sample", "atom"], rows.astype(np.int32).reshape(-1, 2)),
        extra + components,
        properties,
    )


def many(n_blocks: int, seed: int = 0, uniform: bool = False) -> metatensor.TensorMap:
    """``n_blocks`` tiny blocks with keys ``(a, k)`` (``a = k % 3``), a ``positions``
    gradient with its own component, and a ``strain`` gradient for some samples only.
    Unless ``uniform``, blocks have 0 to 5 samples (every fourth block none) and
    properties varying by block (the last block none); else 4 samples and the same
    properties."""
    rng = np.random.default_rng(seed)
    components = [metatensor.Labels.range("c", 2)]
    blocks = []
    for i in range(n_blocks):
        n_samples = 4 if uniform else (0 if i % 4 == 1 else 1 + i % 5)
        samples = np.stack([np.arange(n_samples) // 2, np.arange(n_samples) % 2], axis=1)
        if uniform:
            properties = metatensor.Labels.range("p", 3)
        elif i == n_blocks - 1 and n_blocks > 1:
            properties = metatensor.Labels.range("p", 0)
        else:
            properties = metatensor.Labels(["p"], np.array([[0], [1 + i % 2], [3]], np.int32))
        block = metatensor.TensorBlock(
            rng.random((n_samples, 2, len(properties))),
            metatensor.Labels(["system", "atom"], samples.astype(np.int32).reshape(-1, 2)),
            components,
            properties,
        )
        rows = np.stack([np.repeat(np.arange(n_samples), 2), np.tile([0, 1], n_samples)], 1)
        xyz = [metatensor.Labels.range("xyz", 3)]
        block.add_gradient("positions", _gradient(rng, rows, xyz, components, properties))
        kept = np.arange(0, n_samples, 2)
        strain_rows = np.stack([kept, np.zeros_like(kept)], 1)
        block.add_gradient("strain", _gradient(rng, strain_rows, [], components, properties))
        blocks.append(block)
    index = np.arange(n_blocks)
    keys = metatensor.Labels(["a", "k"], np.stack([index % 3, index // 3], axis=1))
    return metatensor.TensorMap(keys, blocks)


def _labels(names, values, module=mtd):
    return module.Labels(names, np.array(values, np.int32))


CASES = {
    "slice samples": (
        lambda t: mtd.slice(t, "samples", _labels(["atom"], [[1]])),
        lambda t: metatensor.slice(t, "samples", _labels(["atom"], [[1]], metatensor)),
    ),
    "slice properties": (
        lambda t: mtd.slice(t, "properties", _labels(["p"], [[3], [2]])),
        lambda t: metatensor.slice(t, "properties", _labels(["p"], [[3], [2]], metatensor)),
    ),
    "join samples": (
        lambda t: mtd.join([t, t], "samples", add_dimension="tensor"),
        lambda t: metatensor.join([t, t], "samples", add_dimension="tensor"),
    ),
    "join properties": (
        lambda t: mtd.join([t, t, t], "properties", add_dimension="tensor"),
        lambda t: metatensor.join([t, t, t], "properties", add_dimension="tensor"),
    ),
    "keys_to_samples": (
        lambda t: mtd.keys_to_samples(t, "k"),
        lambda t: t.keys_to_samples("k"),
    ),
    "keys_to_samples unsorted": (
        lambda t: mtd.keys_to_samples(t, "k", sort_samples=False, fill_value=-1.0),
        lambda t: t.keys_to_samples("k", sort_samples=False, fill_value=-1.0),
    ),
    "keys_to_samples all keys": (
        lambda t: mtd.keys_to_samples(t, ["a", "k"]),
        lambda t: t.keys_to_samples(["a", "k"]),
    ),
    "keys_to_properties": (
        lambda t: mtd.keys_to_properties(t, "k"),
        lambda t: t.keys_to_properties("k"),
    ),
    "keys_to_properties unsorted": (
        lambda t: mtd.keys_to_properties(t, "a", sort_samples=False, fill_value=2.0),
        lambda t: t.keys_to_properties("a", sort_samples=False, fill_value=2.0),
    ),
}


def _ours_and_theirs(name: str, n_blocks: int = 24, **kwargs):
    theirs = many(n_blocks, **kwargs)
    return mtd.from_metatensor(theirs), theirs


@pytest.mark.parametrize("name", list(CASES))
def test_results_equal_metatensor(name):
    ours, theirs = _ours_and_theirs(name)
    lazy, eager = CASES[name]
    result = lazily(lazy, ours)
    # one grouped task and one graph layer for the whole map (the inputs are data)
    assert scheduled_tasks(result) == 1
    assert len(result.__dask_layers__()) == 1
    assert_equal_to_metatensor(result, eager(theirs))


def test_keys_to_properties_with_given_keys():
    ours, theirs = _ours_and_theirs("", 30, uniform=True)
    selected = [[0], [2], [7], [100]]
    result = lazily(mtd.keys_to_properties, ours, _labels(["k"], selected))
    assert scheduled_tasks(result) == 1
    expected = theirs.keys_to_properties(_labels(["k"], selected, metatensor))
    assert_equal_to_metatensor(result, expected)


def test_slice_by_positions_in_any_order():
    ours, theirs = _ours_and_theirs("", 30, uniform=True)
    result = lazily(mtd.slice, ours, "samples", np.array([3, 0]))
    assert scheduled_tasks(result) == 1
    assert_equal_to_metatensor(result, metatensor.slice(theirs, "samples", np.array([3, 0])))


@pytest.mark.parametrize("name", ["slice samples", "join samples", "keys_to_properties"])
@pytest.mark.parametrize("n_blocks", [6, 300])
def test_tasks_and_layers_do_not_grow_with_blocks(name, n_blocks):
    ours, theirs = _ours_and_theirs(name, n_blocks)
    result = CASES[name][0](ours)
    assert len(result.__dask_keys__()) == 1
    assert len(result.__dask_layers__()) == 1
    assert scheduled_tasks(result) == 1
    assert_equal_to_metatensor(result, CASES[name][1](theirs))


@pytest.mark.parametrize("name", ["slice samples", "join properties", "keys_to_samples"])
def test_groups_are_bounded_in_bytes(monkeypatch, name):
    ours, theirs = _ours_and_theirs(name, 60)
    monkeypatch.setattr(_grouping, "GROUP_BYTES", 2000)
    result = CASES[name][0](ours)
    assert scheduled_tasks(result) > 1
    assert len(result.__dask_layers__()) == scheduled_tasks(result)
    assert_equal_to_metatensor(result, CASES[name][1](theirs))


@pytest.mark.parametrize("name", list(CASES))
def test_mixed_tiny_and_chunked_blocks(name):
    """Blocks in several chunks keep the chunk-by-chunk path, next to grouped ones."""
    ours, theirs = _ours_and_theirs(name, 12)
    chunked = rechunked(ours, 2)
    blocks = [
        chunked.block(i).copy() if i % 3 == 2 else block.copy()
        for i, block in enumerate(ours.blocks())
    ]
    mixed = mtd.TensorMap(ours.keys, blocks)
    result = lazily(CASES[name][0], mixed)
    assert_equal_to_metatensor(result, CASES[name][1](theirs))


@pytest.mark.parametrize("sort_samples", [True, False])
def test_large_outputs_are_cut_in_row_chunks(sort_samples):
    """An output beyond the configured chunk size gets row chunks, one task each (rows
    of a block in several chunks when sorted, blocks cut between chunks when not)."""
    ours, theirs = _ours_and_theirs("", 30, uniform=True)
    with dask.config.set({"metatensor_dask.chunk-size": "400B"}):
        result = lazily(lambda: mtd.keys_to_samples(ours, "k", sort_samples=sort_samples))
    values = result.block(0).values
    assert values.numblocks[0] > 1
    assert max(values.chunks[0]) * 2 * 3 * 8 <= 400
    gradient = result.block(0).gradient("positions").values
    assert scheduled_tasks(gradient) == gradient.numblocks[0]
    assert_equal_to_metatensor(result, theirs.keys_to_samples("k", sort_samples=sort_samples))


@pytest.mark.parametrize("uniform", [True, False])
def test_properties_merged_beyond_the_chunk_size_are_cut_in_row_chunks(uniform):
    """``keys_to_properties`` beyond the chunk size: each row chunk takes the rows of
    every piece that fall in it (pieces cut between chunks), the rest is filled."""
    ours, theirs = _ours_and_theirs("", 30, uniform=uniform)
    with dask.config.set({"metatensor_dask.chunk-size": "600B"}):
        result = lazily(mtd.keys_to_properties, ours, "k")
    gradient = result.block(0).gradient("positions").values
    assert gradient.numblocks[0] > 1
    assert scheduled_tasks(gradient) == gradient.numblocks[0]
    assert_equal_to_metatensor(result, theirs.keys_to_properties("k"))


def test_blocks_outside_a_map():
    """``join_blocks`` and ``slice_block`` on tiny blocks give one task per array."""
    ours, theirs = _ours_and_theirs("", 4, uniform=True)
    joined = lazily(mtd.join_blocks, ours.blocks()[:3], "samples", "tensor")
    expected = metatensor.join_blocks(theirs.blocks()[:3], "samples", "tensor")
    assert scheduled_tasks(joined.values) == 1
    np.testing.assert_array_equal(joined.values.compute(), expected.values)
    gradient = joined.gradient("positions").values.compute()
    np.testing.assert_array_equal(gradient, expected.gradient("positions").values)
    sliced = lazily(mtd.slice_block, ours.block(0), "samples", np.array([0]))
    np.testing.assert_array_equal(
        sliced.values.compute(),
        metatensor.slice_block(theirs.block(0), "samples", np.array([0])).values,
    )


def test_chained_operations_read_the_groups():
    ours, theirs = _ours_and_theirs("", 20, uniform=True)
    product = mtd.multiply(ours, ours)
    result = mtd.keys_to_properties(mtd.slice(product, "samples", _labels(["atom"], [[0]])), "k")
    # three grouped operations, fused by dask into one task
    assert scheduled_tasks(result) == 1
    selection = _labels(["atom"], [[0]], metatensor)
    expected = metatensor.slice(metatensor.multiply(theirs, theirs), "samples", selection)
    expected = expected.keys_to_properties("k")
    assert_equal_to_metatensor(result, expected)
    # a block of the result alone computes its own call only
    values = result.block(1).values
    assert isinstance(values, da.Array)
    np.testing.assert_array_equal(values.compute(), expected.block(1).values)


def test_names_are_deterministic_and_depend_on_selection():
    ours, _ = _ours_and_theirs("", 5)
    first = mtd.slice(ours, "samples", _labels(["atom"], [[1]]))
    second = mtd.slice(ours, "samples", _labels(["atom"], [[1]]))
    other = mtd.slice(ours, "samples", _labels(["atom"], [[0]]))
    assert first.__dask_keys__() == second.__dask_keys__()
    assert first.__dask_keys__() != other.__dask_keys__()
    assert dask.base.tokenize(first) != dask.base.tokenize(other)


def test_garbage_collector_paused_while_building_only():
    ours, _ = _ours_and_theirs("", 3, uniform=True)
    assert gc.isenabled()
    with pytest.raises(IndexError, match="out of bounds"):
        mtd.slice(ours, "samples", np.array([100]))
    assert gc.isenabled()
    gc.disable()
    try:
        mtd.slice(ours, "samples", np.array([0]))
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.parametrize("axis", ["samples", "properties"])
def test_join_union_of_different_keys(axis):
    """Missing blocks count as empty ones, grouped with the others."""
    ours, theirs = _ours_and_theirs("", 12, uniform=True)
    dropped = metatensor.Labels(["a", "k"], theirs.keys.values[::2])
    half = metatensor.drop_blocks(theirs, dropped)
    tensors = [mtd.from_metatensor(half), ours]
    result = lazily(mtd.join, tensors, axis, "union", "tensor")
    assert scheduled_tasks(result) == 1
    expected = metatensor.join([half, theirs], axis, different_keys="union", add_dimension="tensor")
    assert_equal_to_metatensor(result, expected)
