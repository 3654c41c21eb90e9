"""A metatensor user's calls on Labels, entries, blocks and maps, side by side with
metatensor-core: Jupyter's HTML of an entry, an empty block selection, and the
documented differences on Labels that repeat an entry and on pickled gradients; and
xarray opening a store whose gradient has a component named as a renamed one."""

import pickle
from pathlib import Path

import metatensor
import numpy as np
import pytest
import xarray as xr
from metatensor_compare import run_both

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

DIFFERENCES = Path(__file__).resolve().parents[1] / "docs" / "differences.md"


def labels(module, names, rows):
    return module.Labels(names, np.array(rows, dtype=np.int32).reshape(len(rows), len(names)))


def block_with_gradients(module, parameters=("positions",)):
    """A block of 3 samples, 2 properties and one gradient row per parameter."""
    properties = labels(module, ["p"], [[0], [1]])
    block = module.TensorBlock(
        np.arange(6.0).reshape(3, 2), labels(module, ["s"], [[0], [1], [2]]), [], properties
    )
    for row, parameter in enumerate(parameters):
        gradient = module.TensorBlock(
            np.full((1, 3, 2), float(row)),
            labels(module, ["sample"], [[row]]),
            [labels(module, ["xyz"], [[0], [1], [2]])],
            properties,
        )
        block.add_gradient(parameter, gradient)
    return block


def tensor_of(module, n_blocks):
    keys = labels(module, ["k"], [[i] for i in range(n_blocks)])
    return module.TensorMap(keys, [block_with_gradients(module) for _ in range(n_blocks)])


def test_a_labels_entry_has_an_html_table_for_jupyter():
    entry = labels(mtd, ["system", "atom"], [[0, 1], [4, -5]]).entry(1)
    assert hasattr(metatensor.LabelsEntry, "_repr_html_")
    html = entry._repr_html_()
    assert "LabelsEntry" in html
    assert "<th>system</th><th>atom</th>" in html
    assert "<tr><td>4</td><td>-5</td></tr>" in html


def test_an_empty_dict_selects_the_only_block_as_metatensor():
    theirs, ours = run_both(lambda m: tensor_of(m, 1).block({}))
    assert isinstance(theirs, metatensor.TensorBlock)
    assert isinstance(ours, mtd.TensorBlock)
    theirs, ours = run_both(lambda m: tensor_of(m, 0).block({}))
    assert str(ours) == str(theirs) == "there are no blocks in this TensorMap"


def test_an_empty_dict_on_several_blocks_says_what_to_give():
    # metatensor: numpy's "index 0 is out of bounds for axis 0 with size 0"
    theirs, ours = run_both(lambda m: tensor_of(m, 3).block({}))
    assert isinstance(theirs, IndexError), theirs
    assert isinstance(ours, ValueError), ours
    assert str(ours).startswith(
        "`block()` without a selection (or with an empty one) needs a TensorMap with a "
        "single block, this one has 3"
    )
    assert len(tensor_of(mtd, 3).blocks({})) == 3


REPEATED = [[0, 1], [1, 2], [0, 1], [3, 3]]


def repeated(module):
    return module.Labels(["a", "b"], np.array(REPEATED, np.int32), assume_unique=True)


LOOK_UPS = {
    "position": (lambda m: repeated(m).position([0, 1]), 2, 0),
    "select with every dimension": (
        lambda m: repeated(m).select(labels(m, ["a", "b"], [[0, 1]])).tolist(),
        [2],
        [0],
    ),
    "union_and_mapping": (
        lambda m: repeated(m).union_and_mapping(labels(m, ["a", "b"], [[0, 1]]))[2].tolist(),
        [2],
        [0],
    ),
    "intersection_and_mapping": (
        lambda m: (
            labels(m, ["a", "b"], [[0, 1], [5, 5]])
            .intersection_and_mapping(repeated(m))[2]
            .tolist()
        ),
        [-1, -1, 0, -1],
        [0, -1, -1, -1],
    ),
}


@pytest.mark.parametrize("name", LOOK_UPS)
def test_labels_repeating_an_entry_find_the_first_one_as_documented(name):
    build, metatensor_result, our_result = LOOK_UPS[name]
    assert run_both(build) == [metatensor_result, our_result]
    text = " ".join(DIFFERENCES.read_text().split())
    assert "look-ups find the first of the repeated entries" in text
    assert "metatensor-core finds the last one" in text


def test_pickled_blocks_keep_the_order_of_their_gradients_as_documented():
    # metatensor's loader gives them in an arbitrary order, another from one load to the next
    for module in (metatensor, mtd):
        block = block_with_gradients(module, ("positions", "cell", "alpha"))
        orders = {tuple(pickle.loads(pickle.dumps(block)).gradients_list()) for _ in range(8)}
        if module is mtd:
            assert orders == {("positions", "cell", "alpha")}
        else:
            assert {tuple(sorted(order)) for order in orders} == {("alpha", "cell", "positions")}
    tensor = mtd.TensorMap(mtd.Labels.range("k", 1), [block_with_gradients(mtd, ("z", "a"))])
    assert pickle.loads(pickle.dumps(tensor)).block(0).gradients_list() == ["z", "a"]
    text = " ".join(DIFFERENCES.read_text().split())
    assert (
        "a pickled block or map comes back with its gradients in the order they were added" in text
    )


WRONG_BLOCKS = {
    "a list as values": (
        lambda m: m.TensorBlock([[1.0]], m.Labels.range("s", 1), [], m.Labels.range("p", 1)),
        AttributeError,
        TypeError,
        "wrap other data with numpy.asarray or dask.array.from_array",
    ),
    "a number as values": (
        lambda m: m.TensorBlock(np.float64(1), m.Labels.range("s", 1), [], m.Labels.range("p", 1)),
        ValueError,
        TypeError,
        "wrap other data with numpy.asarray or dask.array.from_array",
    ),
    "a gradient as a block of a map": (
        lambda m: m.TensorMap(
            m.Labels.range("k", 1), [block_with_gradients(m).gradient("positions")]
        ),
        RuntimeError,
        ValueError,
        "use `gradient.copy()` to make it a block of its own",
    ),
}


@pytest.mark.parametrize("name", WRONG_BLOCKS)
def test_wrong_blocks_name_the_remedy_as_documented(name):
    build, their_type, our_type, remedy = WRONG_BLOCKS[name]
    theirs, ours = run_both(build)
    assert type(theirs) is their_type, theirs
    assert type(ours) is our_type, ours
    assert remedy in str(ours)
    text = " ".join(DIFFERENCES.read_text().split())
    assert "a gradient given as a block of a `TensorMap` raises a `ValueError`" in text
    assert "`TensorBlock(values, ...)` takes a dask or a numpy array" in text


def _renamed_components(block_names, gradient_names):
    """A metatensor map whose block has the components ``block_names`` (sizes 2, 3...)
    and whose gradient has its own ``gradient_names`` (sizes 4, 5...) before them."""
    rng = np.random.default_rng(7)
    components = [metatensor.Labels.range(n, 2 + j) for j, n in enumerate(block_names)]
    own = [metatensor.Labels.range(n, 4 + j) for j, n in enumerate(gradient_names)]
    shape = tuple(len(c) for c in components)
    properties = metatensor.Labels.range("n", 2)
    block = metatensor.TensorBlock(
        rng.random((3, *shape, 2)), metatensor.Labels.range("system", 3), components, properties
    )
    gradient = metatensor.TensorBlock(
        rng.random((2, *(len(c) for c in own), *shape, 2)),
        metatensor.Labels(["sample"], np.array([[0], [2]], np.int32)),
        own + components,
        properties,
    )
    block.add_gradient("positions", gradient)
    return metatensor.TensorMap(metatensor.Labels.range("k", 1), [block])


@pytest.mark.parametrize(
    ("block_names", "gradient_names"),
    [
        (["samples"], ["samples_component"]),
        (
            ["properties", "properties_component", "samples_component", "samples"],
            ["properties_component_component"],
        ),
    ],
)
def test_xarray_opens_a_gradient_component_named_as_a_renamed_one(
    tmp_path, block_names, gradient_names
):
    # the gradient's own component took the name its parent's renamed one had in the
    # parent group: xarray refused the tree ("not aligned with its parents")
    theirs = _renamed_components(block_names, gradient_names)
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(theirs).to_zarr(path)
    tree = xr.open_datatree(path, engine="zarr")
    values = tree["blocks/0/values"]
    gradient = tree["blocks/0/gradients/positions/values"]
    np.testing.assert_array_equal(values.values, theirs.block(0).values)
    np.testing.assert_array_equal(gradient.values, theirs.block(0).gradient("positions").values)
    assert len(set(gradient.dims)) == gradient.ndim
    assert gradient.dims[-1 - len(block_names) : -1] == values.dims[1:-1]
    assert_equal_to_metatensor(mtd.open_zarr(path), theirs)


def _repeated_samples(module):
    """Two blocks, the first of samples repeating ``s=0`` (rows 0. and 1.)."""
    repeated = module.Labels(["s"], np.array([[0], [0]], np.int32), assume_unique=True)
    first = module.TensorBlock(np.arange(2.0)[:, None], repeated, [], module.Labels.range("p", 1))
    second = module.TensorBlock(
        np.full((1, 1), 5.0), module.Labels.range("s", 1), [], module.Labels.range("p", 1)
    )
    return module.TensorMap(module.Labels.range("k", 2), [first, second])


def test_keys_to_samples_keeps_every_repeated_row_as_documented():
    theirs, ours = run_both(lambda m: _repeated_samples(m).keys_to_samples("k").block(0))
    # metatensor keeps one row of the repeated entry (0, 0), dropping the other's value
    assert theirs.samples.values.tolist() == [[0, 0], [0, 1]]
    assert np.asarray(theirs.values).ravel().tolist() == [1.0, 5.0]
    assert ours.samples.values.tolist() == [[0, 0], [0, 0], [0, 1]]
    assert ours.values.compute().ravel().tolist() == [0.0, 1.0, 5.0]
    text = " ".join(DIFFERENCES.read_text().split())
    assert "kept by `keys_to_samples` and `keys_to_properties`, each row with its values" in text
