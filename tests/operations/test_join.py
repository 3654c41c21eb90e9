import dask.array as da
import metatensor
import numpy as np
import pytest
from hypothesis import given
from oracle2 import (
    assert_co_partitioned,
    assert_same_error,
    big_block,
    check_against_metatensor,
    max_chunk,
    to_mts,
    tutorial,
)

import metatensor_dask as mtd
from metatensor_dask.testing import (
    assert_equal_to_metatensor,
    raise_if_dask_computes,
    strategies,
)


def _pieces(ours, theirs, axis):
    """Two disjoint halves of a tensor (samples by atom parity, or properties)."""
    if axis == "samples":
        names, first, second = ["atom"], [[0], [2], [4]], [[1], [3], [5]]
    else:
        names, first, second = ["n"], [[0], [2], [4]], [[1], [3]]
    mine = [mtd.slice(ours, axis, mtd.Labels(names, np.array(v))) for v in (first, second)]
    other = [
        metatensor.slice(theirs, axis, metatensor.Labels(names, np.array(v)))
        for v in (first, second)
    ]
    return mine, other


@pytest.mark.parametrize("name", ["radial-spectrum", "spherical-expansion"])
@pytest.mark.parametrize("axis", ["samples", "properties"])
@pytest.mark.parametrize("add_dimension", [None, "tensor"])
def test_like_metatensor(name, axis, add_dimension):
    ours, theirs = tutorial(name)
    mine, other = _pieces(ours, theirs, axis)
    result = check_against_metatensor(
        lambda: mtd.join(mine, axis, add_dimension=add_dimension),
        lambda: metatensor.join(other, axis, add_dimension=add_dimension),
        mine,
    )
    if axis == "samples":
        assert_co_partitioned(result)


@pytest.mark.parametrize("different_keys", ["intersection", "union"])
@pytest.mark.parametrize("axis", ["samples", "properties"])
def test_different_keys(different_keys, axis):
    ours, theirs = tutorial("radial-spectrum")
    mine, other = _pieces(ours, theirs, axis)
    keys = np.array([[8, 8], [6, 6]])
    mine[1] = mtd.drop_blocks(mine[1], mtd.Labels(["center_type", "neighbor_type"], keys))
    other[1] = metatensor.drop_blocks(
        other[1], metatensor.Labels(["center_type", "neighbor_type"], keys)
    )
    check_against_metatensor(
        lambda: mtd.join(mine[::-1], axis, different_keys=different_keys),
        lambda: metatensor.join(other[::-1], axis, different_keys=different_keys),
        mine,
    )


def test_properties_with_different_gradient_samples_and_names():
    ours, theirs = tutorial("spherical-expansion")
    renamed = mtd.rename_dimension(ours, "properties", "n", "k")
    renamed_theirs = metatensor.rename_dimension(theirs, "properties", "n", "k")
    check_against_metatensor(
        lambda: mtd.join([ours, renamed], "properties"),
        lambda: metatensor.join([theirs, renamed_theirs], "properties"),
        [ours],
    )
    # same samples, but the gradient samples of one block are a subset of the other's
    block = ours.block(6)
    gradient = block.gradient("positions")
    keep = np.flatnonzero(gradient.samples.column("atom") != 0)
    sparse = mtd.TensorBlock(block.values, block.samples, block.components, block.properties)
    sparse.add_gradient(
        "positions",
        mtd.TensorBlock(
            da.asarray(gradient.values)[keep],
            mtd.Labels(gradient.samples.names, gradient.samples.values[keep]),
            gradient.components,
            gradient.properties,
        ),
    )
    check_against_metatensor(
        lambda: mtd.join_blocks([sparse, block], "properties", add_dimension="t"),
        lambda: metatensor.join_blocks(
            [to_mts(mtd.TensorMap(mtd.Labels.single(), [sparse])).block(0), theirs.block(6)],
            "properties",
            add_dimension="t",
        ),
        [],
    )


@given(tensor=strategies.tensor_maps(max_samples=6, grouped=False))
def test_random_tensors(tensor):
    theirs = to_mts(tensor)
    first = mtd.append_dimension(tensor, "samples", "copy", 0)
    second = mtd.append_dimension(tensor, "samples", "copy", 1)
    check_against_metatensor(
        lambda: mtd.join([first, second], "samples"),
        lambda: metatensor.join(
            [metatensor.append_dimension(theirs, "samples", "copy", i) for i in (0, 1)], "samples"
        ),
        [first, second],
    )


def test_single_tensor_is_returned():
    ours, _ = tutorial("radial-spectrum")
    assert mtd.join([ours], "samples") is ours


def test_out_of_core_structure():
    """Joining keeps chunks, merges small ones up to the configured size, and keeps
    gradients co-partitioned."""
    tensor = big_block(5)
    parts = [mtd.append_dimension(tensor, "samples", "part", i) for i in range(4)]
    result = mtd.join(parts, "samples")
    assert_co_partitioned(result)
    assert max_chunk(result.block(0).values) <= 5 * 10 * 4
    import dask

    with dask.config.set({"metatensor_dask.chunk-size": "1B"}):
        result = mtd.join(parts, "samples")
    assert result.block(0).values.chunks[0] == tensor.block(0).values.chunks[0] * 4
    assert_co_partitioned(result)


def test_errors_like_metatensor():
    ours, theirs = tutorial("radial-spectrum")
    renamed = mtd.rename_dimension(ours, "samples", "atom", "center")
    renamed_theirs = metatensor.rename_dimension(theirs, "samples", "atom", "center")
    fewer = mtd.drop_blocks(ours, mtd.Labels(["center_type"], np.array([[8]])))
    fewer_theirs = metatensor.drop_blocks(
        theirs, metatensor.Labels(["center_type"], np.array([[8]]))
    )
    cases = [
        (lambda: mtd.join(3, "samples"), lambda: metatensor.join(3, "samples")),
        (lambda: mtd.join([], "samples"), lambda: metatensor.join([], "samples")),
        (lambda: mtd.join([ours, 3], "samples"), lambda: metatensor.join([theirs, 3], "samples")),
        (
            lambda: mtd.join([ours, ours], "components"),
            lambda: metatensor.join([theirs, theirs], "components"),
        ),
        (
            lambda: mtd.join([ours, ours], "samples", "xx"),
            lambda: metatensor.join([theirs, theirs], "samples", "xx"),
        ),
        (
            lambda: mtd.join([ours, renamed], "samples"),
            lambda: metatensor.join([theirs, renamed_theirs], "samples"),
        ),
        (
            lambda: mtd.join([ours, renamed], "properties"),
            lambda: metatensor.join([theirs, renamed_theirs], "properties"),
        ),
        (
            lambda: mtd.join(
                [ours, mtd.rename_dimension(ours, "properties", "n", "k")],
                "properties",
                add_dimension="x",
            ),
            lambda: metatensor.join(
                [theirs, metatensor.rename_dimension(theirs, "properties", "n", "k")],
                "properties",
                add_dimension="x",
            ),
        ),
        (lambda: mtd.join_blocks(3, "samples"), lambda: metatensor.join_blocks(3, "samples")),
        (lambda: mtd.join_blocks([], "samples"), lambda: metatensor.join_blocks([], "samples")),
        (
            lambda: mtd.join_blocks([ours.block(0)], "xx"),
            lambda: metatensor.join_blocks([theirs.block(0)], "xx"),
        ),
        (
            lambda: mtd.join_blocks([ours.block(0), renamed.block(0)], "samples"),
            lambda: metatensor.join_blocks([theirs.block(0), renamed_theirs.block(0)], "samples"),
        ),
    ]
    for mine, other in cases:
        assert_same_error(mine, other)
    # metatensor's error, then the remedy
    completed = [
        (
            lambda: mtd.join([ours, fewer], "samples"),
            lambda: metatensor.join([theirs, fewer_theirs], "samples"),
        ),
        (
            lambda: mtd.join([ours, ours], "samples"),
            lambda: metatensor.join([theirs, theirs], "samples"),
        ),
        (
            lambda: mtd.join([ours, ours], "properties"),
            lambda: metatensor.join([theirs, theirs], "properties"),
        ),
    ]
    for mine, other in completed:
        with pytest.raises(Exception) as expected:
            other()
        with pytest.raises(Exception) as actual:
            mine()
        assert type(actual.value).__name__ == type(expected.value).__name__
        assert str(actual.value).startswith(f"{expected.value}: "), actual.value


def _shared_labels_map(n_blocks: int, system: int, seed: int) -> metatensor.TensorMap:
    """Tiny blocks cycling through three kinds of samples (3, 0 and 2 samples), each
    kind one Labels object shared by its blocks, as metatensor shares them."""
    rng = np.random.default_rng(seed)
    kinds = []
    for n in (3, 0, 2):
        entries = np.stack([np.full(n, system), np.arange(n)], axis=1).astype(np.int32)
        rows = np.stack([np.repeat(np.arange(n), 2), np.tile(np.arange(2), n)], axis=1)
        kinds.append(
            (
                metatensor.Labels(["system", "atom"], entries),
                metatensor.Labels(["sample", "neighbor"], rows.astype(np.int32)),
            )
        )
    components = [metatensor.Labels.range("c", 2)]
    properties = metatensor.Labels.range("p", 3)
    blocks = []
    for i in range(n_blocks):
        samples, gradient_samples = kinds[i % 3]
        block = metatensor.TensorBlock(
            rng.random((len(samples), 2, 3)), samples, components, properties
        )
        block.add_gradient(
            "positions",
            metatensor.TensorBlock(
                rng.random((len(gradient_samples), 3, 2, 3)),
                gradient_samples,
                [metatensor.Labels.range("xyz", 3), *components],
                properties,
            ),
        )
        blocks.append(block)
    return metatensor.TensorMap(metatensor.Labels.range("k", n_blocks), blocks)


@pytest.mark.parametrize("add_dimension", [None, "tensor"])
def test_many_blocks_sharing_labels(add_dimension):
    # the output blocks of inputs holding the same Labels share their joined Labels
    # (made once per kind), and every block equals metatensor's, values and gradients
    first, second = _shared_labels_map(30, 0, 1), _shared_labels_map(30, 1, 2)
    ours = [mtd.from_metatensor(first), mtd.from_metatensor(second)]
    with raise_if_dask_computes():
        result = mtd.join(ours, "samples", add_dimension=add_dimension)
    expected = metatensor.join([first, second], "samples", add_dimension=add_dimension)
    assert_equal_to_metatensor(result, expected)
    blocks = result.blocks()
    for i, block in enumerate(blocks):
        same_kind = blocks[i % 3]
        assert block.samples is same_kind.samples
        gradient = block.gradient("positions")
        assert gradient.samples is same_kind.gradient("positions").samples
        np.testing.assert_array_equal(
            gradient.row_pointer,
            np.searchsorted(gradient.samples.column("sample"), np.arange(len(block.samples) + 1)),
        )
    assert blocks[0].samples is not blocks[1].samples
    assert blocks[0].samples is not blocks[2].samples
