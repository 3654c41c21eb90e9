"""TensorMap against metatensor-core: construction rules, block selection, metadata, info."""

import copy

import metatensor
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from metatensor_compare import assert_same_error_of, assert_same_labels, run_both

import metatensor_dask as mtd


def labels(module, names, values):
    return module.Labels(names, np.array(values, dtype=np.int32).reshape(-1, len(names)))


def make_block(
    module, fill=0.0, values=None, samples=None, components=None, properties=None, gradient=True
):
    """Values (3, 2, 4) filled with ``fill``; a ``positions`` gradient unless told not to."""
    block = module.TensorBlock(
        np.full((3, 2, 4), float(fill)) if values is None else values,
        labels(module, ["s"], [[0], [1], [2]]) if samples is None else samples,
        [labels(module, ["c"], [[0], [1]])] if components is None else components,
        labels(module, ["p"], [[0], [1], [2], [3]]) if properties is None else properties,
    )
    if gradient:
        block.add_gradient(
            "positions",
            module.TensorBlock(
                np.full((2, 3, 2, 4), float(fill)),
                labels(module, ["sample", "atom"], [[0, 0], [2, 1]]),
                [labels(module, ["xyz"], [[0], [1], [2]]), *block.components],
                block.properties,
            ),
        )
    return block


def make_keys(module, count):
    return labels(module, ["a", "b"], [[i, i % 2] for i in range(count)])


def make_tensor(module, count=3):
    """``count`` blocks with keys (i, i % 2), block i filled with i."""
    return module.TensorMap(
        make_keys(module, count), [make_block(module, fill=i) for i in range(count)]
    )


def fill_of(block):
    return float(np.asarray(block.values).reshape(-1)[0])


# -- construction ------------------------------------------------------------------------------


CONSTRUCTION_ERRORS = {
    "block count": lambda m: m.TensorMap(make_keys(m, 2), [make_block(m)]),
    "sample names": lambda m: m.TensorMap(
        make_keys(m, 2), [make_block(m), make_block(m, samples=labels(m, ["t"], [[0], [1], [2]]))]
    ),
    "component count": lambda m: m.TensorMap(
        make_keys(m, 2),
        [make_block(m), make_block(m, values=np.zeros((3, 4)), components=[], gradient=False)],
    ),
    "component names": lambda m: m.TensorMap(
        make_keys(m, 2), [make_block(m), make_block(m, components=[labels(m, ["d"], [[0], [1]])])]
    ),
    "property names": lambda m: m.TensorMap(
        make_keys(m, 2),
        [make_block(m), make_block(m, properties=labels(m, ["q"], [[0], [1], [2], [3]]))],
    ),
    "dtype": lambda m: m.TensorMap(
        make_keys(m, 2),
        [make_block(m), make_block(m, values=np.zeros((3, 2, 4), np.float32), gradient=False)],
    ),
    "missing gradient": lambda m: m.TensorMap(
        make_keys(m, 2), [make_block(m), make_block(m, gradient=False)]
    ),
    "keys type": lambda m: m.TensorMap(3, [make_block(m)]),
    "blocks type": lambda m: m.TensorMap(make_keys(m, 1), [3]),
}


@pytest.mark.parametrize("build", CONSTRUCTION_ERRORS.values(), ids=CONSTRUCTION_ERRORS.keys())
def test_construction_errors_same_as_metatensor(build):
    assert_same_error_of(build)


def other_gradient(module, parameter="positions", sample_names=("sample", "atom"), extra="xyz"):
    block = make_block(module, gradient=False)
    block.add_gradient(
        parameter,
        module.TensorBlock(
            np.zeros((2, 3, 2, 4)),
            labels(module, list(sample_names), [[0, 0], [2, 1]]),
            [labels(module, [extra], [[0], [1], [2]]), *block.components],
            block.properties,
        ),
    )
    return block


@pytest.mark.parametrize(
    "second",
    [
        lambda m: other_gradient(m, parameter="cell"),
        lambda m: other_gradient(m, sample_names=("sample", "system")),
        lambda m: other_gradient(m, extra="abc"),
    ],
    ids=["parameter", "gradient samples", "gradient components"],
)
def test_gradient_mismatch_across_blocks_same_as_metatensor(second):
    assert_same_error_of(lambda m: m.TensorMap(make_keys(m, 2), [make_block(m), second(m)]))


def test_allowed_differences_between_blocks_same_as_metatensor():
    def build(m):
        return m.TensorMap(
            make_keys(m, 3),
            [
                make_block(m),
                make_block(m, properties=labels(m, ["p"], [[5], [1], [2], [3]])),
                make_block(m, components=[labels(m, ["c"], [[7], [1]])]),
            ],
        )

    theirs, ours = run_both(build)
    assert not isinstance(theirs, Exception), theirs
    assert len(ours) == len(theirs) == 3


def test_gradient_blocks_are_refused_with_a_remedy():
    gradient = make_block(mtd).gradient("positions")
    with pytest.raises(ValueError, match=r"gradient block can not be used.*gradient\.copy\(\)"):
        mtd.TensorMap(make_keys(mtd, 1), [gradient])
    tensor = mtd.TensorMap(make_keys(mtd, 1), [gradient.copy()])
    assert tensor.block(0).shape == (2, 3, 2, 4)


def test_blocks_are_not_consumed():
    """metatensor releases blocks given to TensorMap; here they stay usable."""
    block = make_block(mtd)
    first = mtd.TensorMap(make_keys(mtd, 1), [block])
    second = mtd.TensorMap(make_keys(mtd, 1), [block])
    assert block.shape == (3, 2, 4)
    assert not block.is_view
    block.add_gradient("cell", block.gradient("positions").copy())
    assert first.block(0).gradients_list() == ["positions"]
    assert second.block(0).gradients_list() == ["positions"]
    # and blocks of one map can build another one
    third = mtd.TensorMap(make_keys(mtd, 1), [first.block(0)])
    assert third.block(0).is_view


def test_metatensor_consumes_blocks():
    block = make_block(metatensor)
    metatensor.TensorMap(make_keys(metatensor, 1), [block])
    with pytest.raises(ValueError, match="has been released"):
        _ = block.shape


def test_blocks_of_a_map_are_views():
    theirs, ours = run_both(make_tensor)
    for mine, other in zip(ours.blocks(), theirs.blocks(), strict=True):
        assert mine.is_view is other.is_view is True
        assert mine.gradient("positions").is_view is True
    with pytest.raises(ValueError, match=r"view inside a TensorMap.*block\.copy"):
        ours.block(0).add_gradient("cell", ours.block(0).gradient("positions").copy())
    own = ours.block(0).copy()
    own.add_gradient("cell", ours.block(0).gradient("positions").copy())
    assert ours.block(0).gradients_list() == ["positions"]


# -- metadata ----------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1, 3])
def test_metadata_same_as_metatensor(count):
    theirs, ours = run_both(lambda m: make_tensor(m, count))
    assert len(ours) == len(theirs) == count
    assert_same_labels(ours.keys, theirs.keys)
    assert ours.sample_names == theirs.sample_names
    assert ours.component_names == theirs.component_names
    assert ours.property_names == theirs.property_names
    assert ours.dtype == theirs.dtype
    assert ours.device == theirs.device
    assert ours.is_view is theirs.is_view is False


def test_unhashable():
    for module in (metatensor, mtd):
        with pytest.raises(TypeError, match="unhashable"):
            hash(make_tensor(module))


# -- block selection ---------------------------------------------------------------------------


SELECTIONS = {
    "position": lambda t, m: t.block(1),
    "getitem": lambda t, m: t[2],
    "dict": lambda t, m: t.block({"a": 1}),
    "dict numpy integer": lambda t, m: t.block({"a": np.int64(2)}),
    "dict bool": lambda t, m: t.block({"a": True}),
    "kwargs": lambda t, m: t.block(a=1, b=1),
    "kwargs numpy integer": lambda t, m: t.block(a=np.int32(0)),
    "labels": lambda t, m: t.block(m.Labels(["a"], np.array([[2]]))),
    "labels entry": lambda t, m: t.block(t.keys[1]),
    "labels entry subset": lambda t, m: t.block(m.Labels(["a"], np.array([[2]]))[0]),
    "getitem dict": lambda t, m: t[{"b": 1}],
    "block_by_id": lambda t, m: t.block_by_id(2),
}


@pytest.mark.parametrize("select", SELECTIONS.values(), ids=SELECTIONS.keys())
def test_block_selection_same_as_metatensor(select):
    theirs, ours = run_both(lambda m: select(make_tensor(m), m))
    assert not isinstance(theirs, Exception), theirs
    assert fill_of(ours.compute()) == fill_of(theirs)


BLOCKS_SELECTIONS = {
    "all": lambda t, m: t.blocks(),
    "position": lambda t, m: t.blocks(1),
    "dict": lambda t, m: t.blocks({"b": 0}),
    "kwargs": lambda t, m: t.blocks(b=0),
    "kwargs both": lambda t, m: t.blocks(a=1, b=1),
    "labels several entries": lambda t, m: t.blocks(m.Labels(["a"], np.array([[2], [0], [9]]))),
    "labels entry": lambda t, m: t.blocks(t.keys[2]),
    "blocks_by_id": lambda t, m: t.blocks_by_id([2, 0]),
    "iteration": lambda t, m: list(t),
    "items": lambda t, m: [block for _, block in t.items()],
}


@pytest.mark.parametrize("select", BLOCKS_SELECTIONS.values(), ids=BLOCKS_SELECTIONS.keys())
def test_blocks_selection_same_as_metatensor(select):
    theirs, ours = run_both(lambda m: select(make_tensor(m), m))
    assert not isinstance(theirs, Exception), theirs
    assert isinstance(ours, list)
    assert [fill_of(b.compute()) for b in ours] == [fill_of(b) for b in theirs]


def test_items_same_as_metatensor():
    theirs, ours = run_both(lambda m: list(make_tensor(m).items()))
    for (mine, block), (other, _) in zip(ours, theirs, strict=True):
        assert isinstance(mine, mtd.LabelsEntry)
        assert mine.names == other.names
        assert mine.values.tolist() == other.values.tolist()
        assert fill_of(block.compute()) == mine["a"]


SELECTION_ERRORS = {
    "no match": lambda t, m: t.block(a=5),
    "no match with two names": lambda t, m: t.block({"a": 5, "b": 1}),
    "several matches": lambda t, m: t.block(b=0),
    "float": lambda t, m: t.block(a=0.0),
    "float in dict": lambda t, m: t.block({"a": 1.5}),
    "unknown name": lambda t, m: t.block(z=0),
    "unknown name in blocks": lambda t, m: t.blocks(z=0),
    "string": lambda t, m: t.block("a"),
    "float position": lambda t, m: t.block(1.0),
    "position out of range": lambda t, m: t.block_by_id(5),
    "position out of range in list": lambda t, m: t.blocks_by_id([0, 3]),
    "blocks no match": lambda t, m: t.blocks(a=5),
    "blocks float": lambda t, m: t.blocks(a=1.0),
}


@pytest.mark.parametrize("select", SELECTION_ERRORS.values(), ids=SELECTION_ERRORS.keys())
def test_selection_errors_same_as_metatensor(select):
    assert_same_error_of(lambda m: select(make_tensor(m), m))


def empty_tensor(module):
    return module.TensorMap(module.Labels.empty(["a"]), [])


def test_empty_map_same_as_metatensor():
    assert_same_error_of(lambda m: empty_tensor(m).block(a=0))
    assert_same_error_of(lambda m: empty_tensor(m).block())
    theirs, ours = run_both(lambda m: (empty_tensor(m).blocks(), empty_tensor(m).blocks(a=1)))
    assert ours == theirs == ([], [])


def test_block_without_selection_on_a_single_block_map_same_as_metatensor():
    theirs, ours = run_both(lambda m: make_tensor(m, 1).block())
    assert not isinstance(theirs, Exception), theirs
    assert ours.shape == theirs.shape
    theirs, ours = run_both(lambda m: make_tensor(m, 1).block({}))
    assert ours.shape == theirs.shape


# -- documented differences in block selection -------------------------------------------------


def test_negative_positions_count_from_the_end():
    tensor = make_tensor(mtd).compute()
    assert fill_of(tensor.block(-1)) == 2
    assert fill_of(tensor[-3]) == 0
    assert fill_of(tensor.block_by_id(-2)) == 1
    assert [fill_of(b) for b in tensor.blocks_by_id([-1, 0])] == [2, 0]
    with pytest.raises(IndexError, match="we have 3 blocks but the index is -4"):
        tensor.block(-4)
    # metatensor reads -1 as 2**64 - 1
    with pytest.raises(metatensor.MetatensorError, match="18446744073709551615"):
        make_tensor(metatensor).block(-1)


def test_numpy_integer_positions_are_accepted():
    tensor = make_tensor(mtd).compute()
    assert fill_of(tensor.block(np.int64(1))) == 1
    assert fill_of(tensor[np.uint8(2)]) == 2
    assert [fill_of(b) for b in tensor.blocks(np.int32(0))] == [0]
    with pytest.raises(TypeError, match="invalid type for block selection"):
        make_tensor(metatensor).block(np.int64(1))


def test_blocks_accept_a_list_of_positions():
    tensor = make_tensor(mtd).compute()
    assert [fill_of(b) for b in tensor.blocks([2, 0])] == [2, 0]
    assert [fill_of(b) for b in tensor.blocks(np.array([1]))] == [1]
    with pytest.raises(TypeError, match="invalid type for block selection: <class 'list'>"):
        make_tensor(metatensor).blocks([2, 0])


def test_block_without_selection_on_several_blocks_explains():
    # metatensor: IndexError "index 0 is out of bounds for axis 0 with size 0"
    with pytest.raises(ValueError, match="needs a TensorMap with a single block, this one has 3"):
        make_tensor(mtd).block()


def test_selection_and_keywords_together_are_refused():
    # metatensor silently ignores the keywords
    with pytest.raises(ValueError, match="either as an argument or as keywords, not both"):
        make_tensor(mtd).block({"a": 0}, b=1)


def test_several_matches_list_every_selection_entry():
    selection = mtd.Labels(["b"], np.array([[0], [1]]))
    with pytest.raises(ValueError, match=r"more than one block matched \(b=0\), \(b=1\)"):
        make_tensor(mtd).block(selection)


def test_bool_positions_are_refused():
    with pytest.raises(TypeError, match="invalid type for block selection: <class 'bool'>"):
        make_tensor(mtd).block(True)
    with pytest.raises(TypeError, match="block index must be an integer"):
        make_tensor(mtd).block_by_id(True)
    with pytest.raises(TypeError, match="block index must be an integer"):
        make_tensor(mtd).block_by_id("0")


# -- info --------------------------------------------------------------------------------------


def test_info_same_as_metatensor():
    def build(m):
        tensor = make_tensor(m)
        tensor.set_info("creator", "me")
        tensor.set_info("units", "eV")
        tensor.set_info("creator", "you")
        return tensor

    theirs, ours = run_both(build)
    assert ours.info() == theirs.info() == {"creator": "you", "units": "eV"}
    assert ours.get_info("units") == theirs.get_info("units") == "eV"
    assert ours.get_info("missing") is theirs.get_info("missing") is None
    info = ours.info()
    info["units"] = "Ha"
    assert ours.get_info("units") == "eV"


def test_info_must_be_strings():
    tensor = make_tensor(mtd)
    with pytest.raises(TypeError, match="info keys and values must be strings"):
        tensor.set_info("a", 1)
    with pytest.raises(TypeError, match="info keys and values must be strings"):
        tensor.set_info(1, "a")


def test_info_survives_copies_compute_and_persist():
    tensor = make_tensor(mtd)
    tensor.set_info("units", "eV")
    for other in (
        tensor.copy(),
        tensor.copy(deep=False),
        copy.copy(tensor),
        copy.deepcopy(tensor),
        tensor.compute(),
        tensor.persist(),
        tensor.to(dtype=np.float32),
    ):
        assert other.info() == {"units": "eV"}
    copied = tensor.copy()
    copied.set_info("units", "Ha")
    assert tensor.get_info("units") == "eV"


# -- copies and conversions --------------------------------------------------------------------


def test_copies_of_computed_maps():
    tensor = make_tensor(mtd).compute()
    deep, shallow = tensor.copy(), tensor.copy(deep=False)
    for i in range(len(tensor)):
        assert not np.shares_memory(deep.block(i).values, tensor.block(i).values)
        assert np.shares_memory(shallow.block(i).values, tensor.block(i).values)
        np.testing.assert_array_equal(deep.block(i).values, tensor.block(i).values)
        assert deep.block(i).is_view
    assert deep.keys == tensor.keys


def test_to_casts_every_block():
    tensor = make_tensor(mtd)
    cast = tensor.to(dtype=np.float32)
    assert cast.dtype == np.float32
    assert all(b.gradient("positions").dtype == np.float32 for b in cast)
    assert tensor.dtype == np.float64


@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=6, unique=True),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 2)),
)
def test_drawn_selections_same_as_metatensor(keys, selection):
    def tensor(m):
        blocks = [make_block(m, fill=i, gradient=False) for i in range(len(keys))]
        return m.TensorMap(m.Labels(["a", "b"], np.array(keys)), blocks)

    theirs, ours = run_both(lambda m: tensor(m).blocks(selection or None))
    if isinstance(theirs, Exception):
        assert type(ours).__name__ == type(theirs).__name__
        assert str(ours) == str(theirs)
    else:
        assert [fill_of(b.compute()) for b in ours] == [fill_of(b) for b in theirs]

    theirs, ours = run_both(lambda m: tensor(m).block(selection))
    if isinstance(theirs, IndexError):
        # an empty selection matching several blocks: metatensor fails with numpy's
        # IndexError, ours explains (see test_block_without_selection_...)
        assert not selection and len(keys) > 1
        assert isinstance(ours, ValueError)
    elif isinstance(theirs, Exception):
        assert type(ours).__name__ == type(theirs).__name__
        assert str(ours) == str(theirs)
    else:
        assert fill_of(ours.compute()) == fill_of(theirs)
