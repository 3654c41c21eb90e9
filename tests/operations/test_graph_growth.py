"""Every public operation on maps of many tiny blocks: graphs grow with the chunks, not
with the blocks.

Maps of 50 and of 200 tiny blocks (values ``(3, 2, 4)``, one ``positions`` gradient
with components), written by metatensor and loaded, built in memory, or computed
(numpy arrays, which the operations of manipulation make lazy): the tasks of
each result's graph (what ``compute`` runs) are counted at both sizes. Operations whose
result is not lazy are checked for computing a graph that does not grow with the blocks,
or for not computing at all; the rest are listed with the reason they are not counted.
The operations made to group tiny blocks here are also compared with metatensor.
"""

import functools
from collections.abc import Callable
from typing import Any

import dask
import metatensor
import numpy as np
import pytest
from dask.callbacks import Callback
from dask.task_spec import Task

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes

SIZES = (50, 200)
SOURCES = ("file", "memory", "computed")
#: tasks that the map of 200 blocks may have beyond the map of 50
SLACK = 3


def _labels(module: Any, names: list[str], rows: Any) -> Any:
    return module.Labels(names, np.asarray(rows, dtype=np.int32).reshape(-1, len(names)))


def tiny(n_blocks: int) -> metatensor.TensorMap:
    """``n_blocks`` blocks of values ``(3, 2, 4)`` with a ``positions`` gradient of 5
    rows and components ``xyz`` and ``c``; every other block has its samples, its
    components and its properties out of order (so that ``sort`` moves entries)."""
    rng = np.random.default_rng(n_blocks)
    blocks = []
    for i in range(n_blocks):
        shuffled = i % 2 == 1
        samples = [2, 0, 1] if shuffled else [0, 1, 2]
        component = [1, 0] if shuffled else [0, 1]
        properties = [3, 1, 0, 2] if shuffled else [0, 1, 2, 3]
        block = metatensor.TensorBlock(
            rng.random((3, 2, 4)) + 0.5,
            _labels(metatensor, ["s"], samples),
            [_labels(metatensor, ["c"], component)],
            _labels(metatensor, ["p"], properties),
        )
        rows = [[0, 0], [0, 1], [1, 0], [2, 0], [2, 1]]
        block.add_gradient(
            "positions",
            metatensor.TensorBlock(
                rng.random((5, 3, 2, 4)) - 0.5,
                _labels(metatensor, ["sample", "atom"], rows),
                [_labels(metatensor, ["xyz"], [0, 1, 2]), _labels(metatensor, ["c"], component)],
                _labels(metatensor, ["p"], properties),
            ),
        )
        blocks.append(block)
    return metatensor.TensorMap(_labels(metatensor, ["k"], range(n_blocks)), blocks)


@pytest.fixture(scope="module")
def maps(tmp_path_factory) -> dict[int, metatensor.TensorMap]:
    return {n: tiny(n) for n in SIZES}


@pytest.fixture(scope="module")
def files(tmp_path_factory, maps) -> dict[int, str]:
    directory = tmp_path_factory.mktemp("tiny-maps")
    paths = {}
    for n, theirs in maps.items():
        paths[n] = str(directory / f"tiny-{n}.mts")
        metatensor.save(paths[n], theirs)
    return paths


def ours(source: str, n_blocks: int, maps: dict, files: dict) -> mtd.TensorMap:
    """The map of ``n_blocks`` loaded from metatensor's file, built in memory, or
    loaded then computed (numpy arrays)."""
    if source == "file":
        return mtd.load(files[n_blocks])
    if source == "computed":
        return mtd.load(files[n_blocks]).compute()
    return mtd.from_metatensor(maps[n_blocks])


@pytest.fixture(scope="module")
def shared(maps: dict, files: dict) -> Callable[[str, int], mtd.TensorMap]:
    """:func:`ours`, made once per source and size for the tests that only build
    operations on it (none changes its map: each is converted or computed once)."""
    made: dict[tuple[str, int], mtd.TensorMap] = {}

    def get(source: str, n_blocks: int) -> mtd.TensorMap:
        if (source, n_blocks) not in made:
            made[source, n_blocks] = ours(source, n_blocks, maps, files)
        return made[source, n_blocks]

    return get


def tasks(results: Any) -> int:
    """The tasks (data and aliases excluded) of the graph that computes ``results`` (a
    map, a block or a list of maps), counted once when the maps share them."""
    collections = results if isinstance(results, list) else [results]
    merged: dict[Any, Any] = {}
    for collection in collections:
        graph = collection.__dask_graph__()
        if graph is not None:  # (none: every array is computed)
            keys = collection.__dask_keys__()
            merged.update(collection.__dask_optimize__(graph, keys))
    return sum(type(node) is Task for node in merged.values())


# -- the operations and their arguments ------------------------------------------------


def features(t: mtd.TensorMap) -> mtd.TensorMap:
    """``t`` with its component moved to the properties: 2-D blocks of 8 properties."""
    return mtd.components_to_properties(t, "c")


def square(t: mtd.TensorMap) -> mtd.TensorMap:
    """2-D blocks of 3 samples and 3 properties, without gradients."""
    kept = _labels(mtd, ["p", "c"], [[0, 0], [1, 0], [2, 0]])
    return mtd.slice(mtd.remove_gradients(features(t)), "properties", kept)


def samples_selection() -> mtd.Labels:
    return _labels(mtd, ["s"], [2, 0])


def properties_selection() -> mtd.Labels:
    return _labels(mtd, ["p"], [3, 1])


def evens(t: Any, module: Any = mtd) -> Any:
    """The blocks of ``t`` with even keys (they have the same metadata)."""
    return module.filter_blocks(t, _labels(module, ["k"], range(0, len(t), 2)))


def with_dimension(t: mtd.TensorMap) -> mtd.TensorMap:
    return mtd.append_dimension(t, "samples", "q", 0)


#: how each public operation giving maps is called (id: operation, call); ``join_blocks``
#: joins the blocks of a map (those of the same metadata) into one block
MAP_OPERATIONS: dict[str, tuple[str, Callable[[mtd.TensorMap], Any]]] = {
    "abs": ("abs", mtd.abs),
    "add": ("add", lambda t: mtd.add(t, t)),
    "add-scalar": ("add", lambda t: mtd.add(t, 1.5)),
    "subtract": ("subtract", lambda t: mtd.subtract(t, t)),
    "multiply": ("multiply", lambda t: mtd.multiply(t, t)),
    "divide": ("divide", lambda t: mtd.divide(t, t)),
    "pow": ("pow", lambda t: mtd.pow(t, 3)),
    "dot": ("dot", lambda t: mtd.dot(features(t), mtd.remove_gradients(features(t)))),
    "lstsq": ("lstsq", lambda t: mtd.lstsq(features(t), mtd.pow(features(t), 2), rcond=1e-12)),
    "solve": ("solve", lambda t: mtd.solve(square(t), mtd.remove_gradients(features(t)))),
    "append_dimension": ("append_dimension", with_dimension),
    "insert_dimension": (
        "insert_dimension",
        lambda t: mtd.insert_dimension(t, "samples", 0, "q", 0),
    ),
    "permute_dimensions": (
        "permute_dimensions",
        lambda t: mtd.permute_dimensions(with_dimension(t), "samples", [1, 0]),
    ),
    "remove_dimension": (
        "remove_dimension",
        lambda t: mtd.remove_dimension(with_dimension(t), "samples", "q"),
    ),
    "rename_dimension": (
        "rename_dimension",
        lambda t: mtd.rename_dimension(t, "samples", "s", "r"),
    ),
    "components_to_properties": ("components_to_properties", features),
    "detach": ("detach", mtd.detach),
    "drop_blocks": ("drop_blocks", lambda t: mtd.drop_blocks(t, _labels(mtd, ["k"], [0, 3]))),
    "filter_blocks": ("filter_blocks", lambda t: mtd.filter_blocks(t, _labels(mtd, ["k"], [0]))),
    "drop_empty_blocks": (
        "drop_empty_blocks",
        lambda t: mtd.drop_empty_blocks(mtd.slice(t, "samples", _labels(mtd, ["s"], [0]))),
    ),
    "empty_like": ("empty_like", mtd.empty_like),
    "zeros_like": ("zeros_like", mtd.zeros_like),
    "ones_like": ("ones_like", mtd.ones_like),
    "random_uniform_like": ("random_uniform_like", mtd.random_uniform_like),
    "join-samples": ("join", lambda t: mtd.join([t, t], "samples", add_dimension="j")),
    "join-properties": ("join", lambda t: mtd.join([t, t], "properties", add_dimension="j")),
    "join_blocks-samples": (
        "join_blocks",
        lambda t: mtd.join_blocks(list(t.blocks())[::2], "samples", add_dimension="j"),
    ),
    "join_blocks-properties": (
        "join_blocks",
        lambda t: mtd.join_blocks(list(t.blocks())[::2], "properties", add_dimension="j"),
    ),
    "keys_to_samples": ("keys_to_samples", lambda t: mtd.keys_to_samples(evens(t), "k")),
    "keys_to_properties": ("keys_to_properties", lambda t: mtd.keys_to_properties(evens(t), "k")),
    "make_contiguous": ("make_contiguous", mtd.make_contiguous),
    "remove_gradients": ("remove_gradients", mtd.remove_gradients),
    "requires_grad": ("requires_grad", lambda t: mtd.requires_grad(t, False)),
    "slice-samples": ("slice", lambda t: mtd.slice(t, "samples", samples_selection())),
    "slice-properties": ("slice", lambda t: mtd.slice(t, "properties", properties_selection())),
    "sort": ("sort", mtd.sort),
    "sort-descending": ("sort", lambda t: mtd.sort(t, descending=True)),
    "sort-samples": ("sort", lambda t: mtd.sort(t, "samples")),
    "split": (
        "split",
        lambda t: mtd.split(t, "samples", [samples_selection(), _labels(mtd, ["s"], [1])]),
    ),
    **{
        f"{reduction}_over_{axis}": (
            f"{reduction}_over_{axis}",
            (lambda r, a: lambda t: getattr(mtd, f"{r}_over_{a}")(t, a[0]))(reduction, axis),
        )
        for reduction in ("sum", "mean", "var", "std")
        for axis in ("samples", "properties")
    },
}

#: operations that compute (a boolean, or an error): their compute must not grow
COMPUTING: dict[str, Callable[[mtd.TensorMap, mtd.TensorMap], Any]] = {
    "equal": mtd.equal,
    "equal_raise": mtd.equal_raise,
    "allclose": mtd.allclose,
    "allclose_raise": mtd.allclose_raise,
}

#: operations that read metadata only: they must not compute at all
METADATA_ONLY: dict[str, Callable[[mtd.TensorMap, mtd.TensorMap], Any]] = {
    "equal_metadata": mtd.equal_metadata,
    "equal_metadata_raise": mtd.equal_metadata_raise,
    "is_contiguous": lambda t, _: mtd.is_contiguous(t),
    "unique_metadata": lambda t, _: mtd.unique_metadata(t, "samples", "s"),
}

#: public names that are not counted, and why
NOT_COUNTED = {
    "one_hot": "takes Labels and gives a numpy array: no map, no graph",
    "block_from_array": "makes one block: nothing grows with the blocks of a map",
    "NotEqualError": "an exception class",
    "annotations": "the `from __future__ import annotations` feature, not an operation",
    "checks_enabled": "the checks switch: reads a flag",
    "unsafe_enable_checks": "the checks switch: sets a flag",
    "unsafe_disable_checks": "the checks switch: sets a flag",
}


def _block_form(name: str) -> bool:
    """``*_block`` and ``*_block_raise`` forms act on one block: nothing grows with the
    blocks of a map (their map forms are counted)."""
    return name.endswith("_block") or name.endswith("_block_raise")


def test_every_public_operation_is_counted_or_says_why_not():
    public = {name for name in dir(mtd.operations) if not name.startswith("_")}
    counted = {operation for operation, _ in MAP_OPERATIONS.values()}
    listed = counted | set(COMPUTING) | set(METADATA_ONLY) | set(NOT_COUNTED)
    assert sorted(public - listed - {n for n in public if _block_form(n)}) == []
    assert sorted(listed - public) == []


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("case", list(MAP_OPERATIONS))
def test_graph_does_not_grow_with_the_blocks(case, source, shared):
    build = MAP_OPERATIONS[case][1]
    counts = [tasks(build(shared(source, n))) for n in SIZES]
    assert counts[1] <= counts[0] + SLACK, counts


def tasks_run(call: Callable[[], Any]) -> int:
    """The tasks that ``call()`` runs (dask's synchronous scheduler)."""
    run: list[Any] = []
    with dask.config.set(scheduler="sync"), Callback(pretask=lambda key, *_: run.append(key)):
        call()
    return len(run)


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("name", list(COMPUTING))
def test_comparisons_compute_a_graph_that_does_not_grow(name, source, shared):
    counts = []
    for n in SIZES:
        t = shared(source, n)
        other = mtd.multiply(t, 1.0)
        counts.append(tasks_run(functools.partial(COMPUTING[name], t, other)))
    assert counts[1] <= counts[0] + SLACK, counts


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("name", list(METADATA_ONLY))
def test_metadata_operations_do_not_compute(name, source, shared):
    for n in SIZES:
        t = shared(source, n)
        with raise_if_dask_computes():
            METADATA_ONLY[name](t, t)


# -- the operations grouped here give metatensor's results -----------------------------

ORACLES = {
    "sort": (mtd.sort, metatensor.sort),
    "sort-descending": (
        lambda t: mtd.sort(t, descending=True),
        lambda t: metatensor.sort(t, descending=True),
    ),
    "sort-samples": (lambda t: mtd.sort(t, "samples"), lambda t: metatensor.sort(t, "samples")),
    "sort-properties-descending": (
        lambda t: mtd.sort(t, ["properties", "components"], descending=True),
        lambda t: metatensor.sort(t, ["properties", "components"], descending=True),
    ),
    "lstsq": (
        lambda t: mtd.lstsq(features(t), mtd.pow(features(t), 2), rcond=1e-12),
        lambda t: metatensor.lstsq(
            t.components_to_properties("c"),
            metatensor.pow(t.components_to_properties("c"), 2),
            rcond=1e-12,
        ),
    ),
    "solve": (
        lambda t: mtd.solve(square(t), mtd.remove_gradients(features(t))),
        lambda t: metatensor.solve(
            metatensor.slice(
                metatensor.remove_gradients(t.components_to_properties("c")),
                "properties",
                _labels(metatensor, ["p", "c"], [[0, 0], [1, 0], [2, 0]]),
            ),
            metatensor.remove_gradients(t.components_to_properties("c")),
        ),
    ),
}


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("case", list(ORACLES))
def test_grouped_results_equal_metatensors(case, source, maps, files):
    mine, theirs = ORACLES[case]
    rtol = 1e-10 if case in ("lstsq", "solve") else 0.0
    result = mine(ours(source, SIZES[0], maps, files))
    assert_equal_to_metatensor(result, theirs(maps[SIZES[0]]), rtol=rtol)


@pytest.mark.parametrize("case", list(ORACLES))
def test_one_block_alone_equals_its_group(case, maps, files):
    mine, theirs = ORACLES[case]
    result = mine(ours("file", SIZES[0], maps, files))
    expected = theirs(maps[SIZES[0]])
    rtol = 1e-10 if case in ("lstsq", "solve") else 0.0
    # the array of one block computed alone runs that block's call only
    np.testing.assert_allclose(
        result.block(7).values.compute(), expected.block(7).values, rtol=rtol, atol=0
    )


def test_random_uniform_like_draws_each_array_from_its_own_seed(maps, files):
    t = ours("file", SIZES[0], maps, files)
    np.random.seed(3)
    first = mtd.random_uniform_like(t)
    np.random.seed(3)
    again = mtd.random_uniform_like(t).compute()
    computed = first.compute()
    values = [block.values for block in computed.blocks()]
    assert all(np.array_equal(a.values, b) for a, b in zip(again.blocks(), values, strict=True))
    # blocks differ from one another, each in [0, 1), gradients included
    assert not np.array_equal(values[0], values[1])
    gradients = [block.gradient("positions").values for block in computed.blocks()]
    assert all(((0 <= v) & (v < 1)).all() for v in [*values, *gradients])
    assert gradients[0].shape == (5, 3, 2, 4)
    # one array computed alone is the same draw as in its group
    np.testing.assert_array_equal(first.block(9).values.compute(), values[9])


# -- outputs beyond the chunk size: tasks follow the output chunks ----------------------

MERGES = {
    "keys_to_samples": (
        lambda t: mtd.keys_to_samples(evens(t), "k"),
        lambda t: evens(t, metatensor).keys_to_samples("k"),
    ),
    "keys_to_properties": (
        lambda t: mtd.keys_to_properties(evens(t), "k"),
        lambda t: evens(t, metatensor).keys_to_properties("k"),
    ),
    "join_blocks": (
        lambda t: mtd.join_blocks(list(t.blocks())[::2], "samples", add_dimension="j"),
        lambda t: metatensor.join_blocks(list(t.blocks())[::2], "samples", add_dimension="j"),
    ),
}


@pytest.mark.parametrize("case", list(MERGES))
def test_merges_in_row_chunks_read_loaded_blocks_by_their_groups(case, maps, files):
    mine, theirs = MERGES[case]
    with dask.config.set({"metatensor_dask.chunk-size": "4KiB"}):
        result = mine(ours("file", SIZES[1], maps, files))
    # one task per output chunk (and one writing a few of them into one buffer), and
    # the loaded groups: none per input block
    assert tasks(result) <= result.npartitions + SLACK + 2
    expected = theirs(maps[SIZES[1]])
    if case == "join_blocks":
        expected = metatensor.TensorMap(_labels(metatensor, ["_"], [0]), [expected])
        result = mtd.TensorMap(_labels(mtd, ["_"], [0]), [result])
    assert_equal_to_metatensor(result, expected)


# -- join keeps the inputs' chunks: its memory does not follow the chunk-size setting --


def chunked_file(directory: Any) -> tuple[metatensor.TensorMap, str]:
    """A map of one block of 600 samples (a gradient of 2 rows per sample), saved."""
    rng = np.random.default_rng(5)
    n = 600
    block = metatensor.TensorBlock(
        rng.random((n, 20)),
        _labels(metatensor, ["s"], range(n)),
        [],
        _labels(metatensor, ["p"], range(20)),
    )
    rows = np.stack([np.repeat(np.arange(n), 2), np.tile([0, 1], n)], axis=1)
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.random((2 * n, 3, 20)),
            _labels(metatensor, ["sample", "atom"], rows),
            [_labels(metatensor, ["xyz"], [0, 1, 2])],
            _labels(metatensor, ["p"], range(20)),
        ),
    )
    theirs = metatensor.TensorMap(_labels(metatensor, ["k"], [0]), [block])
    path = str(directory / "chunked.mts")
    metatensor.save(path, theirs)
    return theirs, path


def test_join_merges_chunks_up_to_the_inputs_largest_only(tmp_path):
    theirs, path = chunked_file(tmp_path)
    loaded = mtd.load(path, chunks="16KiB")
    largest = max(loaded.block(0).values.chunks[0])
    gradient_largest = max(loaded.block(0).gradient("positions").values.chunks[0])
    assert len(loaded.block(0).values.chunks[0]) > 4
    with dask.config.set({"metatensor_dask.chunk-size": "64MiB"}):
        result = mtd.join([loaded, loaded], "samples", add_dimension="j")
    block = result.block(0)
    assert max(block.values.chunks[0]) <= largest
    assert max(block.gradient("positions").values.chunks[0]) <= gradient_largest
    # gradients stay co-partitioned with the values
    pointer = block.gradient("positions").row_pointer
    assert pointer is not None
    value_ends = np.cumsum(block.values.chunks[0])
    gradient_ends = np.cumsum(block.gradient("positions").values.chunks[0])
    np.testing.assert_array_equal(pointer[value_ends], gradient_ends)
    expected = metatensor.join([theirs, theirs], "samples", add_dimension="j")
    assert_equal_to_metatensor(result, expected)


# -- a lazy map with a computed one ------------------------------------------------------

MIXED = {
    "add": (mtd.add, metatensor.add),
    "subtract": (mtd.subtract, metatensor.subtract),
    "multiply": (mtd.multiply, metatensor.multiply),
    "divide": (mtd.divide, metatensor.divide),
    "dot": (
        lambda a, b: mtd.dot(features(a), mtd.remove_gradients(features(b))),
        lambda a, b: metatensor.dot(
            a.components_to_properties("c"),
            metatensor.remove_gradients(b.components_to_properties("c")),
        ),
    ),
}


@pytest.mark.parametrize("name", list(MIXED))
def test_a_lazy_map_with_a_computed_one_groups_tiny_blocks(name, maps, files):
    mine, theirs = MIXED[name]
    counts = []
    for n in SIZES:
        lazy = ours("file", n, maps, files)
        counts.append(tasks(mine(lazy, lazy.compute())))
    assert counts[1] <= counts[0] + SLACK, counts
    lazy = ours("file", SIZES[0], maps, files)
    result = mine(lazy.compute(), lazy)
    assert tasks(result) <= counts[0]
    expected = theirs(maps[SIZES[0]], maps[SIZES[0]])
    assert_equal_to_metatensor(result, expected, rtol=1e-13 if name == "dot" else 0.0)


# -- TensorMap.to ------------------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_casting_a_map_groups_tiny_blocks(source, maps, files):
    counts = [tasks(ours(source, n, maps, files).to(dtype=np.float32)) for n in SIZES]
    assert counts[1] <= counts[0] + SLACK, counts
    t = ours(source, SIZES[0], maps, files)
    t.set_info("origin", "tiny")
    result = t.to(np.float32)
    assert result.info() == {"origin": "tiny"}
    expected = maps[SIZES[0]].to(dtype=np.float32)
    expected.set_info("origin", "tiny")
    assert_equal_to_metatensor(result, expected)
    # arrays of the dtype already are kept as they are
    same = t.to(dtype=np.float64)
    assert same.block(3)._held_values() is t.block(3)._held_values()


# -- a persisted map ------------------------------------------------------------------


@pytest.mark.parametrize("case", ["multiply", "sum_over_samples", "sort", "keys_to_samples"])
def test_operations_on_a_persisted_loaded_map_read_its_groups(case, maps, files):
    build = MAP_OPERATIONS[case][1]
    counts = []
    for n in SIZES:
        persisted = ours("file", n, maps, files).persist()
        assert tasks(persisted) == 0
        counts.append(tasks(build(persisted)))
    assert counts[1] <= counts[0] + SLACK, counts
    persisted = ours("file", SIZES[0], maps, files).persist()
    expected = build(mtd.from_metatensor(maps[SIZES[0]])).compute()
    result = build(persisted)
    assert_equal_to_metatensor(result, mtd.to_metatensor(expected))
    # one array alone is its item of the persisted group
    np.testing.assert_array_equal(
        persisted.block(4).values.compute(), maps[SIZES[0]].block(4).values
    )


def test_sort_of_something_else_than_a_map_fails_as_metatensors():
    with pytest.raises(AttributeError) as theirs:
        metatensor.sort(3)
    with pytest.raises(AttributeError) as mine:
        mtd.sort(3)
    assert str(mine.value) == str(theirs.value)
