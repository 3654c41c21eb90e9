"""Maps of many tiny blocks: element-wise operations run as a few grouped tasks."""

import dask
import dask.array as da
import metatensor
import numpy as np
import pytest
from dask.task_spec import Task
from oracle import lazily, rechunked

import metatensor_dask as mtd
from metatensor_dask.operations import _grouping
from metatensor_dask.testing import assert_equal_to_metatensor


def tiny(
    n_blocks: int, seed: int = 0, positive: bool = False, shuffled: bool = False
) -> metatensor.TensorMap:
    """``n_blocks`` blocks of values ``(4, 2, 3)`` with a gradient ``(8, 3, 2, 3)``,
    whose rows are grouped by sample unless ``shuffled``."""
    rng = np.random.default_rng(seed)
    samples = np.stack([np.repeat(np.arange(4), 2), np.tile(np.arange(2), 4)], axis=1)
    if shuffled:
        samples = samples[rng.permutation(len(samples))]
    blocks = []
    for _ in range(n_blocks):
        values = rng.random((4, 2, 3)) + (1.0 if positive else -0.5)
        block = metatensor.TensorBlock(
            values,
            metatensor.Labels.range("s", 4),
            [metatensor.Labels.range("c", 2)],
            metatensor.Labels.range("p", 3),
        )
        block.add_gradient(
            "positions",
            metatensor.TensorBlock(
                rng.random((8, 3, 2, 3)) - 0.5,
                metatensor.Labels(["sample", "atom"], samples.astype(np.int32)),
                [metatensor.Labels.range("xyz", 3), metatensor.Labels.range("c", 2)],
                metatensor.Labels.range("p", 3),
            ),
        )
        blocks.append(block)
    return metatensor.TensorMap(metatensor.Labels.range("k", n_blocks), blocks)


def scheduled_tasks(collection) -> int:
    """The number of tasks run to compute ``collection`` (data and aliases excluded)."""
    keys = collection.__dask_keys__()
    graph = collection.__dask_optimize__(collection.__dask_graph__(), keys)
    return sum(type(task) is Task for task in graph.values())


OPERATIONS = {
    "multiply": lambda a, b: mtd.multiply(a, b),
    "add": lambda a, b: mtd.add(a, b),
    "subtract": lambda a, b: mtd.subtract(a, b),
    "divide": lambda a, b: mtd.divide(a, b),
    "multiply-scalar": lambda a, _: mtd.multiply(a, 2.5),
    "pow": lambda a, _: mtd.pow(a, 3),
    "abs": lambda a, _: mtd.abs(a),
}

ORACLES = {
    "multiply": metatensor.multiply,
    "add": metatensor.add,
    "subtract": metatensor.subtract,
    "divide": metatensor.divide,
    "multiply-scalar": lambda a, _: metatensor.multiply(a, 2.5),
    "pow": lambda a, _: metatensor.pow(a, 3),
    "abs": lambda a, _: metatensor.abs(a),
}


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_results_equal_metatensor(name):
    a, b = tiny(20), tiny(20, seed=1, positive=True)
    result = lazily(OPERATIONS[name], mtd.from_metatensor(a), mtd.from_metatensor(b))
    assert scheduled_tasks(result) == 1
    assert_equal_to_metatensor(result, ORACLES[name](a, b))


@pytest.mark.parametrize("n_blocks", [10, 200])
def test_number_of_tasks_does_not_grow_with_blocks(n_blocks):
    ours = mtd.from_metatensor(tiny(n_blocks))
    result = mtd.multiply(ours, ours)
    # one grouped task (the inputs are data), instead of 2 tasks per block
    assert len(result.__dask_keys__()) == 1
    assert scheduled_tasks(result) == 1


def test_groups_are_bounded_in_bytes(monkeypatch):
    theirs = tiny(30)
    ours = mtd.from_metatensor(theirs)
    values, gradient = ours.block(0)._arrays()
    # the inputs of a block: A and B values (values), then A and B values and gradients
    block_inputs = 4 * values.nbytes + 2 * gradient.nbytes
    monkeypatch.setattr(_grouping, "GROUP_BYTES", 5 * block_inputs)
    result = mtd.multiply(ours, ours)
    assert scheduled_tasks(result) == 6
    assert_equal_to_metatensor(result, metatensor.multiply(theirs, theirs))


def test_gradients_not_grouped_by_sample():
    theirs = tiny(5, shuffled=True)
    ours = mtd.from_metatensor(theirs)
    result = mtd.multiply(ours, ours)
    assert scheduled_tasks(result) == 1
    assert_equal_to_metatensor(result, metatensor.multiply(theirs, theirs))


def test_chunked_blocks_keep_one_task_per_chunk():
    theirs = tiny(4)
    ours = mtd.from_metatensor(theirs)
    chunked = rechunked(ours, 2)
    mixed = mtd.TensorMap(
        ours.keys, [chunked.block(0).copy(), *(b.copy() for b in ours.blocks()[1:])]
    )
    result = mtd.multiply(mixed, mixed)
    values = result.block(0).values
    assert len(values.dask.layers[values.name]) == values.numblocks[0] == 2
    # block 0 as on its own, and one task for the other blocks
    alone = mtd.TensorMap(mtd.Labels.range("k", 1), [chunked.block(0).copy()])
    assert scheduled_tasks(result) == scheduled_tasks(mtd.multiply(alone, alone)) + 1
    assert_equal_to_metatensor(result, metatensor.multiply(theirs, theirs))


def test_one_array_computes_one_block_only():
    theirs = tiny(6)
    ours = mtd.from_metatensor(theirs)
    result = mtd.multiply(ours, ours)
    values = result.block(2).values
    assert isinstance(values, da.Array) and values.npartitions == 1
    assert scheduled_tasks(values) == 1
    expected = metatensor.multiply(theirs, theirs).block(2)
    np.testing.assert_array_equal(values.compute(), expected.values)
    gradient = result.block(2).gradient("positions").values.compute()
    np.testing.assert_array_equal(gradient, expected.gradient("positions").values)


def test_names_are_deterministic_and_depend_on_inputs():
    ours = mtd.from_metatensor(tiny(3))
    other = mtd.from_metatensor(tiny(3, seed=1))
    first, second = mtd.multiply(ours, ours), mtd.multiply(ours, ours)
    assert dask.base.tokenize(first) == dask.base.tokenize(second)
    assert first.block(1).values.name == second.block(1).values.name
    assert first.__dask_keys__() != mtd.multiply(ours, other).__dask_keys__()
    assert first.__dask_keys__() != mtd.multiply(ours, 2.0).__dask_keys__()


def test_persist_and_chained_operations():
    theirs = tiny(8)
    ours = mtd.from_metatensor(theirs)
    product = mtd.multiply(ours, ours)
    persisted = product.persist()
    # the persisted group's result, no task per array
    assert scheduled_tasks(persisted) == 0
    expected = metatensor.multiply(theirs, theirs)
    assert_equal_to_metatensor(persisted, expected)
    # the second operation reads the first one's grouped result (its other inputs are
    # data, inlined in its task: dask fuses the two tasks)
    chained = mtd.add(product, ours)
    assert scheduled_tasks(chained) == 1
    assert_equal_to_metatensor(chained, metatensor.add(expected, theirs))


def test_computed_maps_stay_eager():
    theirs = tiny(3)
    computed = mtd.from_metatensor(theirs).compute()
    result = mtd.multiply(computed, computed)
    assert isinstance(result.block(0).values, np.ndarray)
    assert_equal_to_metatensor(result, metatensor.multiply(theirs, theirs))
