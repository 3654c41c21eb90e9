"""Maps of many blocks of mixed edge shapes (blocks of 0 samples, gradients of 0 rows,
components of length 1 to 3), read lazily from a ``.mts`` file: creation operations
and operations changing only metadata against metatensor, in bounded time and graphs."""

from __future__ import annotations

from typing import Any

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes

# gradient rows of each sample: 0 to 4 samples, some without gradient rows
ROWS = [[], [1], [0, 2, 1], [0, 0], [2, 2, 2, 2]]


def _block(rng: np.random.Generator, rows: list[int], components: int, properties: int) -> Any:
    n = len(rows)
    order = np.arange(n)[::-1]
    samples = np.stack([order // 2, order % 2], axis=1).astype(np.int32).reshape(-1, 2)
    gradient_samples = np.array(
        [(s, samples[s][0], r) for s, count in enumerate(rows) for r in range(count)],
        dtype=np.int32,
    ).reshape(-1, 3)
    component = [metatensor.Labels.range("c", components)]
    property_labels = metatensor.Labels(
        ["p"], np.arange(properties, dtype=np.int32).reshape(-1, 1) * 2
    )
    block = metatensor.TensorBlock(
        rng.random((n, components, properties)) - 0.5,
        metatensor.Labels(["s", "a"], samples),
        component,
        property_labels,
    )
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.random((len(gradient_samples), 3, components, properties)) - 0.5,
            metatensor.Labels(["sample", "s", "atom"], gradient_samples),
            [metatensor.Labels.range("xyz", 3), *component],
            property_labels,
        ),
    )
    return block


def mixed(n_keys: int, seed: int = 0) -> Any:
    """A metatensor map of ``2 * n_keys`` blocks (keys ``k``, ``t``) of mixed shapes:
    the two blocks of a ``k`` share components and properties, not samples."""
    rng = np.random.default_rng(seed)
    blocks, keys = [], []
    for k in range(n_keys):
        for t in range(2):
            blocks.append(_block(rng, ROWS[(k + 2 * t) % 5], 1 + k % 3, [3, 2, 1, 3][k % 4]))
            keys.append((k, t))
    return metatensor.TensorMap(metatensor.Labels(["k", "t"], np.array(keys, np.int32)), blocks)


def _loaded(tmp_path: Any, theirs: Any, name: str = "mixed") -> mtd.TensorMap:
    path = tmp_path / f"{name}.mts"
    metatensor.save(path, theirs)
    return mtd.load(path)


@pytest.mark.parametrize("name", ["zeros_like", "ones_like"])
def test_creation_of_many_blocks_matches_metatensor(tmp_path, name):
    theirs = mixed(60)
    ours = _loaded(tmp_path, theirs)
    with raise_if_dask_computes():
        result = getattr(mtd, name)(ours)
    assert_equal_to_metatensor(result, getattr(metatensor, name)(theirs))


@pytest.mark.parametrize("name", ["empty_like", "random_uniform_like"])
def test_uninitialised_and_random_maps_of_many_blocks(tmp_path, name):
    theirs = mixed(60)
    ours = _loaded(tmp_path, theirs)
    with raise_if_dask_computes():
        result = getattr(mtd, name)(ours)
    assert mtd.equal_metadata(result, ours)
    computed = result.compute()
    if name == "random_uniform_like":
        values = np.concatenate([np.ravel(a) for a in computed._arrays()])
        assert values.min() >= 0 and values.max() < 1 and values.std() > 0.1
        # another call draws other values
        again = np.concatenate(
            [np.ravel(a) for a in mtd.random_uniform_like(ours).compute()._arrays()]
        )
        assert not np.array_equal(values, again)


def _graph_nodes(collection: Any) -> int:
    """The nodes of the graph run to compute ``collection``."""
    keys = collection.__dask_keys__()
    return len(collection.__dask_optimize__(collection.__dask_graph__(), keys))


# operations that change metadata only, or not the gradients (adding a scalar)
KEEPING_ARRAYS = {
    "add-scalar": lambda m, t: m.add(t, 1.5),
    "remove_gradients": lambda m, t: m.remove_gradients(t),
    "detach": lambda m, t: m.detach(t),
    "append_dimension": lambda m, t: m.append_dimension(t, "samples", "new", 3),
    "insert_dimension": lambda m, t: m.insert_dimension(t, "properties", 0, "new", 1),
    "permute_dimensions": lambda m, t: m.permute_dimensions(t, "samples", [1, 0]),
    "rename_dimension": lambda m, t: m.rename_dimension(t, "properties", "p", "q"),
}


@pytest.mark.parametrize("name", list(KEEPING_ARRAYS))
def test_operations_keeping_arrays_keep_the_groups_of_a_loaded_file(tmp_path, name):
    """A ``.mts`` file of tiny blocks is read by a few grouped tasks; an operation that
    passes arrays through kept them as items of those groups, instead of one array
    (and one read of the file, when computed) per block."""
    operation = KEEPING_ARRAYS[name]
    nodes = []
    for n_keys in (10, 100):
        theirs = mixed(n_keys)
        ours = _loaded(tmp_path, theirs, f"mixed-{n_keys}")
        with raise_if_dask_computes():
            result = operation(mtd, ours)
        nodes.append(_graph_nodes(result))
        assert_equal_to_metatensor(result, operation(metatensor, theirs))
    assert nodes[0] == nodes[1] <= 2, nodes


def test_make_contiguous_of_many_blocks_runs_as_grouped_tasks(tmp_path):
    """``make_contiguous`` made one task per array of a map of tiny blocks (it did not
    group them as the element-wise operations do): graphs growing with the blocks."""
    nodes = []
    for n_keys in (5, 50):
        theirs = mixed(n_keys)
        for ours in (_loaded(tmp_path, theirs, f"mixed-{n_keys}"), mtd.from_metatensor(theirs)):
            with raise_if_dask_computes():
                result = mtd.make_contiguous(ours)
                assert mtd.is_contiguous(result)
            nodes.append(_graph_nodes(result))
            assert_equal_to_metatensor(result, metatensor.make_contiguous(theirs))
    assert nodes[:2] == nodes[2:], nodes
    assert max(nodes) <= 2, nodes


@pytest.mark.parametrize("reduction", ["sum", "mean", "var", "std"])
def test_reductions_of_a_loaded_file_with_empty_blocks_stay_grouped(tmp_path, reduction):
    """Blocks of no sample (and gradients of no row) are passed through by reductions
    over samples; from a loaded file, they were passed as one array (and one read of
    the file) per block, the others as items of a few groups."""
    nodes = []
    for n_keys in (5, 50):
        theirs = mixed(n_keys)
        ours = _loaded(tmp_path, theirs, f"mixed-{n_keys}")
        with raise_if_dask_computes():
            result = getattr(mtd, f"{reduction}_over_samples")(ours, "a")
        nodes.append(_graph_nodes(result))
        if reduction == "sum":
            expected = metatensor.sum_over_samples(theirs, "a")
            assert_equal_to_metatensor(result, expected, rtol=1e-12, atol=1e-14)
    assert nodes[0] == nodes[1] <= 2, nodes


def test_reductions_over_properties_of_blocks_without_properties_stay_grouped(tmp_path):
    """Blocks of no property are passed through by reductions over properties (see
    ``test_edge_shapes`` for their values: metatensor fails on them)."""
    nodes = []
    for n_blocks in (6, 60):
        rng = np.random.default_rng(0)
        blocks = [_block(rng, ROWS[i % 5], 2, 3 * (i % 2)) for i in range(n_blocks)]
        theirs = metatensor.TensorMap(metatensor.Labels.range("k", n_blocks), blocks)
        ours = _loaded(tmp_path, theirs, f"no-properties-{n_blocks}")
        with raise_if_dask_computes():
            result = mtd.sum_over_properties(ours, "p")
        nodes.append(_graph_nodes(result))
        for mine, block in zip(result.blocks(), theirs.blocks(), strict=True):
            expected = np.asarray(block.values).sum(axis=-1, keepdims=True)
            np.testing.assert_allclose(mine.values.compute(), expected[..., : mine.shape[-1]])
    assert nodes[0] == nodes[1] <= 2, nodes


def _selections(module: Any, name: str) -> list[Any]:
    return [
        module.Labels([name], np.array([[1]], np.int32)),
        module.Labels([name], np.array([[0], [2]], np.int32)),
    ]


@pytest.mark.parametrize("axis", ["samples", "properties"])
def test_split_of_many_blocks_runs_as_grouped_tasks(tmp_path, axis):
    """``split`` sliced block by block (``slice`` groups tiny blocks and slices each
    distinct Labels once): graphs growing with the blocks, 7 times metatensor's time."""
    name = "a" if axis == "samples" else "p"
    nodes = []
    for n_keys in (5, 50):
        theirs = mixed(n_keys)
        ours = _loaded(tmp_path, theirs, f"mixed-{n_keys}")
        with raise_if_dask_computes():
            result = mtd.split(ours, axis, _selections(mtd, name))
        nodes.append(sum(_graph_nodes(part) for part in result))
        expected = metatensor.split(theirs, axis, _selections(metatensor, name))
        for mine, other in zip(result, expected, strict=True):
            assert_equal_to_metatensor(mine, other)
    assert nodes[0] == nodes[1] <= 4, nodes


def test_components_to_properties_of_many_blocks_runs_as_grouped_tasks(tmp_path):
    """``components_to_properties`` made two dask arrays (a transpose and a reshape)
    per array of every block: graphs growing with the blocks, 20 times metatensor's
    time on a loaded file of 200 tiny blocks."""
    nodes = []
    for n_keys in (5, 50):
        theirs = mixed(n_keys)
        for ours in (_loaded(tmp_path, theirs, f"mixed-{n_keys}"), mtd.from_metatensor(theirs)):
            with raise_if_dask_computes():
                result = mtd.components_to_properties(ours, "c")
            nodes.append(_graph_nodes(result))
            assert_equal_to_metatensor(result, theirs.components_to_properties("c"))
    assert nodes[:2] == nodes[2:], nodes
    assert max(nodes) <= 2, nodes


def test_unique_metadata_of_an_empty_map():
    """metatensor raises an IndexError (it reads the first block); the unique entries
    of no block are no entries, of the dimensions asked for."""
    empty = metatensor.TensorMap(metatensor.Labels(["k"], np.zeros((0, 1), np.int32)), [])
    with pytest.raises(IndexError):
        metatensor.unique_metadata(empty, "samples", ["s", "a"])
    result = mtd.unique_metadata(mtd.from_metatensor(empty), "samples", ["s", "a"])
    assert result.names == ["s", "a"] and len(result) == 0


def _weights(theirs: Any) -> Any:
    """A gradient-free map of two samples whose properties are ``theirs``'s."""
    blocks = []
    for block in theirs.blocks():
        n = len(block.properties)
        blocks.append(
            metatensor.TensorBlock(
                np.linspace(-1, 1, 2 * n).reshape(2, n),
                metatensor.Labels.range("w", 2),
                [],
                block.properties,
            )
        )
    return metatensor.TensorMap(theirs.keys, blocks)


def test_dot_of_many_blocks_runs_as_grouped_tasks(tmp_path):
    """``dot`` made one dask array per array of every block (not grouped as the
    element-wise operations are): graphs growing with the blocks."""
    nodes = []
    for n_keys in (5, 50):
        theirs = mixed(n_keys)
        weights = _weights(theirs)
        ours = _loaded(tmp_path, theirs, f"mixed-{n_keys}")
        with raise_if_dask_computes():
            result = mtd.dot(ours, _loaded(tmp_path, weights, f"weights-{n_keys}"))
        nodes.append(_graph_nodes(result))
        assert_equal_to_metatensor(result, metatensor.dot(theirs, weights))
    assert nodes[0] == nodes[1] <= 3, nodes
