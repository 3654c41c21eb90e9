"""Calls that code moved from metatensor makes less often, on a map opened from a Zarr
store, side by side with the same map built by metatensor-core.

The map read from the store holds lazy Labels and lazy values; each call must give
metatensor's value (Labels, blocks and maps compared values and gradients included) or
raise an error of metatensor's type naming the problem. Deliberate differences are
listed in docs/differences.md and pinned by their own expectations here.
"""

import metatensor
import numpy as np
import pytest
from metatensor_compare import run_both

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes


def labels_of(module, names, rows):
    values = np.array(rows, dtype=np.int32).reshape(len(rows), len(names))
    return module.Labels(names, values)


def block_of(module, seed, first_property):
    """A block with a component and two gradients, added in name order (a store lists
    gradients by name)."""
    rng = np.random.default_rng(seed)
    component = labels_of(module, ["c"], [[0], [1]])
    properties = labels_of(module, ["p"], [[first_property], [5]])
    block = module.TensorBlock(
        rng.random((3, 2, 2)),
        labels_of(module, ["s", "t"], [[0, 0], [1, seed], [2, 1]]),
        [component],
        properties,
    )
    for parameter, rows in (("cell", [[0, 0], [2, 0]]), ("positions", [[0, 1], [1, 0]])):
        gradient = module.TensorBlock(
            rng.random((2, 3, 2, 2)),
            labels_of(module, ["sample", "atom"], rows),
            [labels_of(module, ["xyz"], [[0], [1], [2]]), component],
            properties,
        )
        block.add_gradient(parameter, gradient)
    return block


def tensor_of(module):
    keys = labels_of(module, ["k", "l"], [[0, 0], [1, 0], [0, 1]])
    return module.TensorMap(keys, [block_of(module, i, first_property=i) for i in range(3)])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("parity") / "tensor.zarr"
    mtd.to_zarr(tensor_of(mtd), path)
    return path


def run_on_store(build, store):
    """``build(module, tensor)`` with metatensor's map and with the stored one."""

    def on(module):
        tensor = mtd.open_zarr(store) if module is mtd else tensor_of(metatensor)
        return build(module, tensor)

    return run_both(on)


def assert_same_value(ours, theirs):
    if isinstance(theirs, Exception):
        raise theirs
    if isinstance(ours, Exception):
        raise ours
    if isinstance(theirs, (list, tuple)):
        assert type(ours) is type(theirs) and len(ours) == len(theirs), (ours, theirs)
        for our_item, their_item in zip(ours, theirs, strict=True):
            assert_same_value(our_item, their_item)
    elif isinstance(theirs, metatensor.LabelsEntry):
        assert isinstance(ours, mtd.LabelsEntry)
        assert (ours.names, ours.values.tolist()) == (theirs.names, theirs.values.tolist())
    elif isinstance(theirs, (metatensor.Labels, metatensor.TensorBlock, metatensor.TensorMap)):
        assert_equal_to_metatensor(ours, theirs)
    elif isinstance(theirs, np.ndarray):
        assert ours.dtype == theirs.dtype
        np.testing.assert_array_equal(ours, theirs)
    else:
        assert type(ours) is type(theirs) and ours == theirs, (ours, theirs)


# -- 0-D integer arrays as block positions ---------------------------------------------


POSITIONS = {
    "block_by_id of a 0-D int64 array": lambda m, t: t.block_by_id(np.array(1)),
    "block_by_id of a 0-D int32 array": lambda m, t: t.block_by_id(np.array(2, np.int32)),
    "blocks_by_id of 0-D arrays": lambda m, t: t.blocks_by_id([np.array(2), np.array(0)]),
}


@pytest.mark.parametrize("build", POSITIONS.values(), ids=POSITIONS.keys())
def test_zero_dimensional_integer_arrays_are_block_positions(build, store):
    # metatensor passes them to its C library as positions; they were refused here
    theirs, ours = run_on_store(build, store)
    assert_same_value(ours, theirs)


@pytest.mark.parametrize("index", [np.array(1.0), np.array(True), np.array([1]), True, 1.0])
def test_other_block_positions_are_refused_by_type(index, store):
    with pytest.raises(TypeError, match="block index must be an integer"):
        mtd.open_zarr(store).block_by_id(index)


def test_blocks_of_a_zero_dimensional_array_names_the_problem(store):
    # metatensor: "invalid type for block selection"; here it failed on numpy's
    # "iteration over a 0-d array", which names neither the argument nor the remedy
    theirs, ours = run_on_store(lambda m, t: t.blocks(np.array(1)), store)
    assert isinstance(theirs, TypeError), theirs
    assert isinstance(ours, TypeError), ours
    assert str(ours).startswith("invalid type for block selection: an array of 0 dimensions")
    assert "1-D array or a list" in str(ours)


# -- `in` on a TensorMap looks among its blocks ----------------------------------------


@pytest.mark.parametrize(
    "item",
    [
        lambda m, t: t.keys[0],
        lambda m, t: {"k": 0, "l": 0},
        lambda m, t: 0,
    ],
    ids=["a key", "a dict", "an integer"],
)
def test_in_with_a_key_names_the_keys_as_remedy(item, store):
    # metatensor compares each block with the item: False for a key of the map (a
    # wrong answer), an AttributeError for the others; here the TypeError of `==`
    # between a block and something else named `block_2`, an argument `in` does not have
    tensor = mtd.open_zarr(store)
    with raise_if_dask_computes():
        with pytest.raises(TypeError, match=r"`in` looks for a TensorBlock among the blocks"):
            item(mtd, tensor) in tensor  # noqa: B015
    with pytest.raises(TypeError, match=r"use `key in tensor.keys`"):
        item(mtd, tensor) in tensor  # noqa: B015
    assert tensor.keys[0] in tensor.keys


BLOCK_MEMBERSHIP = {
    "a block of the map": lambda m, t: t.block(1) in t,
    "a copy of a block of the map": lambda m, t: t.block(2).copy() in t,
    "a block of other values": lambda m, t: block_of(m, 7, first_property=0) in t,
}


@pytest.mark.parametrize("build", BLOCK_MEMBERSHIP.values(), ids=BLOCK_MEMBERSHIP.keys())
def test_in_with_a_block_is_metatensors(build, store):
    theirs, ours = run_on_store(build, store)
    assert_same_value(ours, theirs)


def test_in_with_a_block_of_the_map_does_not_compute(store):
    tensor = mtd.open_zarr(store)
    with raise_if_dask_computes():
        assert tensor.block(2) in tensor


# -- calls the other parity tests do not make, on lazy Labels and values ---------------


SAME_RESULT = {
    "block by dict of a numpy integer": lambda m, t: t.block({"k": np.int32(1)}),
    "block by an entry of other Labels, other order": lambda m, t: t.block(
        labels_of(m, ["l", "k"], [[1, 0]])[0]
    ),
    "block by Labels of one entry and a subset of names": lambda m, t: t.block(
        labels_of(m, ["l"], [[1]])
    ),
    "blocks by an entry": lambda m, t: t.blocks(t.keys[1]),
    "blocks by keywords": lambda m, t: t.blocks(l=0),
    "items": lambda m, t: list(t.items()),
    "iteration": lambda m, t: list(t),
    "copy, not deep": lambda m, t: t.copy(deep=False),
    "to, dtype and device by position": lambda m, t: t.to(np.float32, "cpu"),
    "keys_to_samples of names in another order": lambda m, t: t.keys_to_samples(
        ["l", "k"], fill_value=-1.5, sort_samples=False
    ),
    "components_to_properties of a tuple": lambda m, t: t.components_to_properties(("c",)),
    "gradient properties": lambda m, t: t.block(2).gradient("cell").properties,
    "gradients in order": lambda m, t: [name for name, _ in t.block(0).gradients()],
    "entry of a sample, by numpy index": lambda m, t: t.block(1).samples[np.int16(-1)],
    "samples of a tuple entry": lambda m, t: (1, 1) in t.block(1).samples,
    "samples position of another map's entry": lambda m, t: t.block(1).samples.position(
        t.block(0).samples[2]
    ),
    "samples union and mapping": lambda m, t: t.block(0).samples.union_and_mapping(
        t.block(1).samples
    ),
    "samples difference and mapping": lambda m, t: t.block(0).samples.difference_and_mapping(
        t.block(2).samples
    ),
    "samples intersection with itself": lambda m, t: t.block(0).samples.intersection(
        t.block(0).samples
    ),
    "properties permute of one dimension": lambda m, t: t.block(0).properties.permute([0]),
    "samples insert at a negative position": lambda m, t: t.block(0).samples.insert(
        -1, "u", np.array([7, 8, 9])
    ),
    "samples reversed": lambda m, t: list(reversed(t.block(0).samples)),
    "samples as an array": lambda m, t: np.asarray(t.block(0).samples),
    "map print, a numpy limit": lambda m, t: t.print(np.int64(2)),
}


@pytest.mark.parametrize("build", SAME_RESULT.values(), ids=SAME_RESULT.keys())
def test_unusual_calls_give_metatensors_result(build, store):
    theirs, ours = run_on_store(build, store)
    assert_same_value(ours, theirs)


SAME_ERROR = {
    "block of a string in a dict": lambda m, t: t.block({"k": "1"}),
    "keys_to_properties of a key entry": lambda m, t: t.keys_to_properties(t.keys[0]),
    "keys_to_properties of Labels with blocks of other properties": (
        lambda m, t: t.keys_to_properties(labels_of(m, ["k"], [[0], [1]]))
    ),
    "components_to_properties of a gradient component": (
        lambda m, t: t.components_to_properties("xyz")
    ),
    "gradient of a gradient's missing name": lambda m, t: t.block(0).gradient("cell").gradient("x"),
    "labels print of None": lambda m, t: t.keys.print(None),
    "labels print of a float": lambda m, t: t.keys.print(2.5),
    "map print of a float": lambda m, t: t.print(1.5),
}


@pytest.mark.parametrize("build", SAME_ERROR.values(), ids=SAME_ERROR.keys())
def test_unusual_calls_raise_metatensors_error_type(build, store):
    theirs, ours = run_on_store(build, store)
    assert isinstance(theirs, Exception) and isinstance(ours, Exception), (theirs, ours)
    # metatensor's own failures (an AssertionError, a numpy message) become TypeErrors
    # naming the argument where they were unclear; the others keep metatensor's type
    if isinstance(theirs, (AssertionError, TypeError)):
        assert isinstance(ours, TypeError), ours
    else:
        assert type(ours).__name__ == type(theirs).__name__, (ours, theirs)


# -- objects of both libraries side by side ---------------------------------------------


def test_comparing_an_entry_with_metatensors_names_the_remedy(store):
    # Labels == metatensor's Labels named the remedy, LabelsEntry == metatensor's did not
    ours = mtd.open_zarr(store).keys[0]
    theirs = tensor_of(metatensor).keys[0]
    with pytest.raises(TypeError, match="can only compare between LabelsEntry") as error:
        ours == theirs  # noqa: B015
    assert "convert it with `metatensor_dask.from_metatensor`" in str(error.value)
    assert mtd.from_metatensor(tensor_of(metatensor)).keys[0] == ours


# -- names are a new list at each access -------------------------------------------------


@pytest.mark.parametrize(
    "names_of",
    [lambda t: t.keys, lambda t: t.block(0).samples, lambda t: t.keys[1]],
    ids=["keys", "samples", "an entry"],
)
def test_changing_the_list_of_names_leaves_the_labels_alone(names_of, store):
    # metatensor gives its own list: appending to it changes the names it reports
    # (not its entries); docs/differences.md
    theirs = names_of(tensor_of(metatensor))
    theirs.names.append("z")
    assert theirs.names[-1] == "z"
    ours = names_of(mtd.open_zarr(store))
    before = ours.names
    ours.names.append("z")
    ours.names.clear()
    assert ours.names == before == theirs.names[:-1]


# -- Labels of lists (metatensor takes arrays only) -------------------------------------


@pytest.mark.parametrize("rows", [[[1], [2, 3]], [[1, 2], [3]]], ids=["longer", "shorter"])
def test_rows_of_other_lengths_name_the_problem(rows):
    # metatensor refuses every list; the lists taken here failed with numpy's "setting
    # an array element with a sequence", which names neither Labels nor the remedy
    with pytest.raises(ValueError, match="Labels values must be a rectangular array of integers"):
        mtd.Labels(["a", "b"], rows)
    with pytest.raises(ValueError, match="`values` must be a numpy ndarray"):
        metatensor.Labels(["a", "b"], rows)


def test_lists_give_the_labels_of_their_array(store):
    rows = [[0, 0], [1, 1], [2, 1]]
    ours = mtd.Labels(["s", "t"], rows)
    assert_equal_to_metatensor(ours, metatensor.Labels(["s", "t"], np.array(rows)))
    assert ours == mtd.open_zarr(store).block(1).samples


# -- gradients of a map read back --------------------------------------------------------


def test_gradients_read_back_are_in_the_order_of_their_names(tmp_path):
    # added "positions" then "cell": metatensor's load gives them in an arbitrary
    # order, another from one load to the next; here in the order of their names
    def tensor(module):
        block = block_of(module, 0, first_property=0)
        reordered = module.TensorBlock(
            block.values, block.samples, block.components, block.properties
        )
        for parameter in ("positions", "cell"):
            gradient = block.gradient(parameter)
            reordered.add_gradient(
                parameter,
                module.TensorBlock(
                    gradient.values, gradient.samples, gradient.components, gradient.properties
                ),
            )
        return module.TensorMap(labels_of(module, ["k"], [[0]]), [reordered])

    ours = tensor(mtd)
    assert ours.block(0).gradients_list() == ["positions", "cell"]
    metatensor.save(tmp_path / "theirs.mts", tensor(metatensor))
    mtd.to_zarr(ours, tmp_path / "ours.zarr")
    theirs = metatensor.load(tmp_path / "theirs.mts")
    assert sorted(theirs.block(0).gradients_list()) == ["cell", "positions"]
    for read in (mtd.load(tmp_path / "theirs.mts"), mtd.open_zarr(tmp_path / "ours.zarr")):
        assert read.block(0).gradients_list() == ["cell", "positions"]
        assert [name for name, _ in read.block(0).gradients()] == ["cell", "positions"]
        assert_equal_to_metatensor(read, theirs)


# -- names given as numpy strings --------------------------------------------------------


MOVED_BY_NUMPY_NAMES = {
    "keys_to_samples": lambda m, t: t.keys_to_samples(np.array(["k"])),
    "keys_to_properties": lambda m, t: t.keys_to_properties(np.array(["l", "k"])),
    "components_to_properties": lambda m, t: t.components_to_properties(np.array(["c"])),
    "keys_to_properties of names left by setdiff1d": lambda m, t: t.keys_to_properties(
        np.setdiff1d(t.keys.names, ["l"])
    ),
}


@pytest.mark.parametrize("build", MOVED_BY_NUMPY_NAMES.values(), ids=MOVED_BY_NUMPY_NAMES.keys())
def test_arrays_of_names_move_dimensions_as_in_metatensor(build, store):
    # metatensor takes any sequence, numpy arrays of strings included; refused here
    theirs, ours = run_on_store(build, store)
    assert_same_value(ours, theirs)


@pytest.mark.parametrize(
    "move",
    [
        lambda t: t.keys_to_samples({"k", "l"}),
        lambda t: t.keys_to_properties(frozenset(["k"])),
        lambda t: t.components_to_properties({"c"}),
    ],
    ids=["keys_to_samples", "keys_to_properties", "components_to_properties"],
)
def test_names_in_a_set_are_refused_with_the_remedy(move, store):
    # metatensor moves them in the order of the set, which changes from one run of
    # Python to the next; docs/differences.md
    with pytest.raises(TypeError, match="a set has no order: give the names in a list"):
        move(mtd.open_zarr(store))


NUMPY_STRING_NAMES = {
    "rename_dimension": lambda m, t: m.rename_dimension(t, "keys", "k", np.str_("z")).keys,
    "insert_dimension": lambda m, t: m.insert_dimension(t, "keys", 0, np.str_("z"), 0).keys,
    "join(add_dimension=...)": lambda m, t: (
        m.join([t, t], "samples", add_dimension=np.str_("z")).block(0).samples
    ),
    "keys_to_properties": lambda m, t: t.keys_to_properties(np.str_("k")).block(0).properties,
}


@pytest.mark.parametrize("like", ["zeros_like", "empty_like", "random_uniform_like"])
def test_gradients_to_create_named_by_a_numpy_array_are_str(like, store):
    # metatensor's creation functions give str gradient names; np.str_ was kept here
    theirs, ours = run_on_store(
        lambda m, t: getattr(m, like)(t, gradients=np.array(["cell"])).block(0), store
    )
    assert ours.gradients_list() == theirs.gradients_list() == ["cell"]
    assert type(ours.gradients_list()[0]) is type(theirs.gradients_list()[0]) is str


@pytest.mark.parametrize("build", NUMPY_STRING_NAMES.values(), ids=NUMPY_STRING_NAMES.keys())
def test_numpy_strings_become_names_of_type_str(build, store):
    # metatensor's operations give str names; here the numpy string was kept
    theirs, ours = run_on_store(build, store)
    assert_same_value(ours, theirs)
    assert [type(name) for name in ours.names] == [str] * len(ours.names)
    assert [type(name) for name in theirs.names] == [str] * len(theirs.names)


def test_numpy_strings_become_gradient_names_and_info_of_type_str(store):
    for module in (metatensor, mtd):
        block = block_of(module, 0, first_property=0)
        gradient = block.gradient("cell")
        copied = module.TensorBlock(
            gradient.values, gradient.samples, gradient.components, gradient.properties
        )
        block.add_gradient(np.str_("strain"), copied)
        assert [type(name) for name in block.gradients_list()] == [str] * 3
    tensor = mtd.open_zarr(store)
    tensor.set_info(np.str_("creator"), np.str_("test"))
    assert [(type(key), type(value)) for key, value in tensor.info().items()] == [(str, str)]


# -- entries to look for ------------------------------------------------------------------


ENTRIES = {
    "Python booleans": lambda m, t: t.keys.position([True, False]),
    "Python booleans in a tuple": lambda m, t: (True, False) in t.keys,
    "numpy integers": lambda m, t: (np.int8(0), np.uint16(1)) in t.keys,
}


@pytest.mark.parametrize("build", ENTRIES.values(), ids=ENTRIES.keys())
def test_entries_of_python_booleans_are_integers_as_in_metatensor(build, store):
    theirs, ours = run_on_store(build, store)
    assert_same_value(ours, theirs)


@pytest.mark.parametrize(
    "entry",
    [np.array([True, False]), [np.bool_(True), 0]],
    ids=["a boolean array", "numpy booleans in a list"],
)
def test_entries_of_numpy_booleans_are_refused_as_in_metatensor(entry, store):
    # metatensor: "'numpy.bool' object cannot be interpreted as an integer"; here they
    # were taken as 1 and 0, and the entry (1, 0) found
    theirs, ours = run_on_store(lambda m, t: t.keys.position(entry), store)
    assert isinstance(theirs, TypeError), theirs
    assert isinstance(ours, TypeError), ours
    assert "a 1-D sequence of integers" in str(ours) and "of booleans" in str(ours)


@pytest.mark.parametrize("entry", [{"k": 0, "l": 0}, None, "k"], ids=["a dict", "None", "a string"])
def test_the_remedy_of_a_single_value_is_only_given_for_an_integer(entry, store):
    # "use [{'k': 0, 'l': 0}]" was suggested for a dict, "use [k]" for a string
    keys = mtd.open_zarr(store).keys
    with pytest.raises(TypeError, match="a 1-D sequence of integers") as error:
        keys.position(entry)
    assert "use [" not in str(error.value)
    with pytest.raises(TypeError, match=r"of 0 dimensions; use \[1\]$"):
        mtd.Labels(["k"], [[1]]).position(1)


# -- values of a block selection ----------------------------------------------------------


SELECTION_VALUES = {
    "a numpy boolean in a dict": lambda m, t: t.block({"k": np.bool_(True), "l": 0}),
    "a numpy boolean as keyword": lambda m, t: t.blocks(k=np.bool_(False)),
    "a Python boolean": lambda m, t: t.block({"k": True, "l": False}),
}


@pytest.mark.parametrize("build", SELECTION_VALUES.values(), ids=SELECTION_VALUES.keys())
def test_boolean_selection_values_are_zero_and_one_as_in_metatensor(build, store):
    # numpy booleans were refused ("expected integer values in selection")
    theirs, ours = run_on_store(build, store)
    assert_same_value(ours, theirs)


def test_a_numpy_selection_value_out_of_the_int32_range_raises(store):
    # metatensor wraps np.int64(2**40) to 0 and gives the block of k=0; docs/differences.md
    theirs, ours = run_on_store(lambda m, t: t.block({"k": np.int64(2**40), "l": 0}), store)
    assert isinstance(theirs, metatensor.TensorBlock)
    assert isinstance(ours, OverflowError), ours
    python_int, _ = run_on_store(lambda m, t: t.block({"k": 2**40, "l": 0}), store)
    assert type(python_int) is type(ours)
