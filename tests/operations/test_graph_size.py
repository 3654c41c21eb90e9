"""Operations on maps of many tiny blocks: graphs that do not grow with the blocks.

Chunks held in memory are arguments of the grouped tasks, not graph nodes, and the
label arithmetic of reductions is done once per distinct Labels: these tests count
graph nodes (of every kind) and shared Labels, not time.
"""

import metatensor
import pytest
from test_tiny_blocks import tiny

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

OPERATIONS = {
    "multiply": lambda t: mtd.multiply(t, t),
    "add": lambda t: mtd.add(t, mtd.multiply(t, 2.0)),
    "multiply-scalar": lambda t: mtd.multiply(t, 1.5),
    "sum_over_samples": lambda t: mtd.sum_over_samples(t, "s"),
    "std_over_samples": lambda t: mtd.std_over_samples(t, "s"),
    "sum_over_properties": lambda t: mtd.sum_over_properties(t, "p"),
    "var_over_properties": lambda t: mtd.var_over_properties(t, "p"),
}


def graph_nodes(collection) -> int:
    """The nodes of the graph run to compute ``collection``: tasks, data, aliases."""
    keys = collection.__dask_keys__()
    return len(collection.__dask_optimize__(collection.__dask_graph__(), keys))


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_graph_nodes_and_layers_do_not_grow_with_blocks(name):
    nodes, layers = [], []
    for n_blocks in (10, 200):
        result = OPERATIONS[name](mtd.from_metatensor(tiny(n_blocks)))
        nodes.append(graph_nodes(result))
        layers.append(len(result.__dask_layers__()))
    assert nodes[0] == nodes[1] <= 2
    assert layers[0] == layers[1] <= 2


def test_one_array_of_a_group_needs_no_graph_of_the_group():
    ours = mtd.from_metatensor(tiny(50))
    values = mtd.multiply(ours, ours).block(7).values
    assert graph_nodes(values) == 1
    assert len(values.dask.layers) == 1


def _distinct_samples(n_blocks: int) -> metatensor.TensorMap:
    """``tiny(n_blocks)``, the samples of every other block renumbered."""
    theirs = tiny(n_blocks)
    blocks = []
    for i, block in enumerate(theirs.blocks()):
        samples = block.samples
        if i % 2:
            samples = metatensor.Labels(["s"], samples.values[::-1].copy())
        new = metatensor.TensorBlock(block.values, samples, block.components, block.properties)
        gradient = block.gradient("positions")
        new.add_gradient("positions", gradient.copy())
        blocks.append(new)
    return metatensor.TensorMap(theirs.keys, blocks)


@pytest.mark.parametrize("reduction", ["sum", "mean", "var", "std"])
def test_reductions_share_the_labels_of_blocks_with_the_same_samples(reduction):
    theirs = _distinct_samples(6)
    ours = mtd.from_metatensor(theirs)
    assert ours.block(0).samples is not ours.block(2).samples
    result = getattr(mtd, f"{reduction}_over_samples")(ours, "s")
    blocks = result.blocks()
    # worked out once per distinct Labels, whatever the number of blocks
    assert blocks[0].samples is blocks[2].samples is blocks[4].samples
    assert blocks[1].samples is blocks[3].samples
    gradients = [b.gradient("positions") for b in blocks]
    assert gradients[0].samples is gradients[2].samples
    assert gradients[0].row_pointer is gradients[4].row_pointer
    by_properties = getattr(mtd, f"{reduction}_over_properties")(ours, "p")
    assert by_properties.block(0).properties is by_properties.block(5).properties
    if reduction in ("sum", "mean"):
        expected = getattr(metatensor, f"{reduction}_over_samples")(theirs, "s")
        assert_equal_to_metatensor(result, expected, rtol=1e-12)
        expected = getattr(metatensor, f"{reduction}_over_properties")(theirs, "p")
        assert_equal_to_metatensor(by_properties, expected, rtol=1e-12)
