"""The metadata operations on maps of blocks split into several irregular row chunks
(see :mod:`chunked_maps`), against metatensor-operations on the same maps: values,
every gradient, all metadata, and the errors. Every result is built without computing,
its arrays have the chunks they declare, and grouped gradients stay co-partitioned
with their values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import metatensor
import numpy as np
import pytest
from chunked_maps import pair
from oracle2 import assert_co_partitioned
from test_edge_shapes import assert_sound_and_equal_to_metatensor

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes

MAPS = {
    "float64, 2 key dims": {},
    "float32, 1 key dim, no components": {
        "dtype": np.float32,
        "key_dims": 1,
        "seed": 3,
        "components": False,
    },
    "same properties": {"seed": 5, "same_properties": True},
}


@pytest.fixture(scope="module", params=[*MAPS, "Zarr store"])
def maps(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[mtd.TensorMap, Any]:
    """(ours, metatensor's); "Zarr store": the first map written in chunks of 6 rows,
    opened in chunks of 7 (sample labels and row pointers read from the store)."""
    if request.param in MAPS:
        return pair(**MAPS[request.param])
    ours, theirs = pair()
    path = tmp_path_factory.mktemp("chunked") / "map.zarr"
    ours.to_zarr(path, chunks=6)
    return mtd.open_zarr(path, chunks=7), theirs


def labels(module: Any, names: list[str], values: Any) -> Any:
    return module.Labels(names, np.array(values, dtype=np.int32).reshape(-1, len(names)))


def _run(module: Any, build: Callable[[Any, Any], Any], tensor: Any) -> Any:
    try:
        if module is mtd:
            with raise_if_dask_computes():
                return build(module, tensor)
        return build(module, tensor)
    except Exception as error:  # the comparison is the test
        return error


def _as_map(result: Any) -> mtd.TensorMap:
    if isinstance(result, mtd.TensorBlock):
        return mtd.TensorMap(mtd.Labels.single(), [result])
    return result


def assert_same(ours: Any, theirs: Any) -> None:
    """Same result (Labels, block, map, list, array or bool), or the same error."""
    if isinstance(theirs, Exception) or isinstance(ours, Exception):
        assert isinstance(ours, Exception), f"metatensor raised {theirs!r}, we did not"
        assert isinstance(theirs, Exception), f"we raised {ours!r}, metatensor did not"
        assert type(ours).__name__ == type(theirs).__name__, (ours, theirs)
        mine, other = str(ours), str(theirs)
        # join completes metatensor's errors on repeated entries and other keys with
        # their remedy (add_dimension, different_keys): metatensor's text, then it
        remedied = mine.startswith(f"{other}: ") and (
            "add_dimension" in mine or "different_keys" in mine
        )
        assert mine == other or remedied, (mine, other)
    elif isinstance(theirs, list):
        assert len(ours) == len(theirs)
        for mine, other in zip(ours, theirs, strict=True):
            assert_same(mine, other)
    elif isinstance(theirs, np.ndarray):
        assert ours.dtype == theirs.dtype
        np.testing.assert_array_equal(ours, theirs)
    elif isinstance(theirs, (bool, type(None))):
        assert ours == theirs
    else:
        if isinstance(ours, (mtd.TensorMap, mtd.TensorBlock)):
            assert_sound_and_equal_to_metatensor(ours, theirs)
            assert_co_partitioned(_as_map(ours))
        else:
            assert_equal_to_metatensor(ours, theirs)


def check(build: Callable[[Any, Any], Any], maps: tuple[mtd.TensorMap, Any]) -> None:
    ours, theirs = maps
    assert_same(_run(mtd, build, ours), _run(metatensor, build, theirs))


# -- selections ------------------------------------------------------------------------


def _select_keys_in_selection_order(m: Any, t: Any) -> Any:
    selection = labels(m, t.keys.names, t.keys.values[[4, 0, 3]])
    return m.filter_blocks(t, selection)


def test_filter_blocks_with_every_key_dimension_follows_the_selection(maps):
    # metatensor's Labels.select gives the selection's order when the selection has
    # every dimension, in the same order
    check(_select_keys_in_selection_order, maps)
    check(lambda m, t: m.filter_blocks(t, labels(m, t.keys.names[:1], [[8], [1]])), maps)


@pytest.mark.parametrize(
    ("names", "values"),
    [
        (["system", "atom"], [[1, 3], [0, 0], [5, 2], [99, 0]]),
        (["atom", "system"], [[1, 2], [0, 0]]),
        (["system"], [[3], [1], [0]]),
    ],
)
def test_slice_samples_by_labels_in_metatensor_order(maps, names, values):
    check(lambda m, t: m.slice(t, "samples", labels(m, names, values)), maps)
    check(lambda m, t: m.slice_block(t.block(1), "samples", labels(m, names, values)), maps)


@pytest.mark.parametrize("selection", [[1, 1], [2, 0, 2], np.array([0, 0])])
def test_slice_properties_with_repeated_positions_keeps_each_once(maps, selection):
    # metatensor slices properties with a mask: a repeated position is kept once, in
    # the block's order (repeated *sample* positions raise, see test_slice.py)
    check(lambda m, t: m.slice_block(t.block(0), "properties", selection), maps)
    check(lambda m, t: m.split_block(t.block(1), "properties", [selection, [0]]), maps)


# -- sort ------------------------------------------------------------------------------


def _components_sorted(components: list[Any], descending: bool) -> list[Any]:
    """``components`` sorted by metatensor (through a block that has them)."""
    if not components:
        return []
    shape = (1, *(len(c) for c in components), 1)
    single = metatensor.Labels.range("_", 1)
    block = metatensor.TensorBlock(np.zeros(shape), single, components, single)
    return list(metatensor.sort_block(block, "components", descending).components)


def _metatensor_sort_block(block: Any, axes: list[str], descending: bool) -> Any:
    """metatensor's ``sort_block``, also where it fails or is wrong.

    Its ``argsort_labels_values`` indexes an empty 1-D array, so axes of no entries are
    not given to it (sorting them changes nothing) and gradients of no rows are sorted
    without it; no axis at all gives a copy (it adds the gradients twice); and a block
    of no samples gets its components and properties sorted (it returns them as they
    are)."""
    sizes = {"samples": len(block.samples), "properties": len(block.properties)}
    axes = [a for a in axes if sizes.get(a, 1) > 0]
    empty = [p for p, g in block.gradients() if len(g.samples) == 0]
    kept = metatensor.remove_gradients_block(block, empty)
    if len(block.samples) == 0:
        shape = (1, *block.values.shape[1:])
        entry = np.zeros((1, len(block.samples.names)), np.int32)
        single = metatensor.Labels(block.samples.names, entry)
        probe = metatensor.TensorBlock(np.zeros(shape), single, kept.components, kept.properties)
        probe = metatensor.sort_block(probe, axes, descending) if axes else probe
        result = metatensor.TensorBlock(
            block.values.copy(), block.samples, probe.components, probe.properties
        )
    else:
        result = metatensor.sort_block(kept, axes, descending) if axes else kept.copy()
    for parameter in empty:
        gradient = block.gradient(parameter)
        extra = gradient.components[: len(gradient.components) - len(block.components)]
        if "components" in axes:
            extra = _components_sorted(extra, descending)
        components = [*extra, *result.components]
        shape = (0, *(len(c) for c in components), len(result.properties))
        result.add_gradient(
            parameter,
            metatensor.TensorBlock(
                np.zeros(shape, block.values.dtype), gradient.samples, components, result.properties
            ),
        )
    return result


def metatensor_sort(tensor: Any, axes: str | list[str], descending: bool) -> Any:
    """metatensor's ``sort`` (see :func:`_metatensor_sort_block` for where it fails)."""
    names = ["samples", "components", "properties"]
    requested = [axes] if isinstance(axes, str) else list(axes)
    block_axes = names if "all" in requested else [a for a in requested if a in names]
    keys = tensor.keys
    if "all" in requested or "keys" in requested:
        keys = metatensor.sort(metatensor.remove_gradients(tensor), "keys", descending).keys
    blocks = [_metatensor_sort_block(tensor.block(k), block_axes, descending) for k in keys]
    return metatensor.TensorMap(keys, blocks)


def _samples_reversed(m: Any, t: Any) -> Any:
    return m.permute_dimensions(t, "samples", [1, 0])


AXES = ["all", "keys", "samples", "components", "properties", ["properties", "samples"]]


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("axes", [*AXES, ["keys", "samples"]])
def test_sort(maps, axes, descending):
    ours, theirs = maps
    with raise_if_dask_computes():
        result = mtd.sort(_samples_reversed(mtd, ours), axes, descending)
    assert_same(result, metatensor_sort(_samples_reversed(metatensor, theirs), axes, descending))


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("axes", [a for a in AXES if a != "keys"])
def test_sort_block(maps, axes, descending):
    ours, theirs = maps
    for i in range(len(ours)):
        with raise_if_dask_computes():
            result = mtd.sort_block(_samples_reversed(mtd, ours).block(i), axes, descending)
        block = _samples_reversed(metatensor, theirs).block(i)
        block_axes = ["samples", "components", "properties"] if axes == "all" else axes
        block_axes = [block_axes] if isinstance(block_axes, str) else block_axes
        assert_same(result, _metatensor_sort_block(block, block_axes, descending))


def test_sort_oracle_is_metatensor_where_metatensor_works(maps):
    _, theirs = maps
    kept = metatensor.drop_empty_blocks(theirs)
    if any(len(g.samples) == 0 for b in kept.blocks() for _, g in b.gradients()):
        pytest.skip("metatensor fails on gradients without rows")
    for axes in ["all", ["samples", "properties"]]:
        for descending in (False, True):
            expected = metatensor.sort(kept, axes, descending)
            assert metatensor.equal(metatensor_sort(kept, axes, descending), expected)


# -- keys to samples / properties ------------------------------------------------------


def _no_properties(m: Any, t: Any) -> Any:
    """The blocks of ``t`` that have no properties (and gradients)."""
    empty = [i for i, b in enumerate(t.blocks()) if len(b.properties) == 0]
    return m.filter_blocks(t, labels(m, t.keys.names, t.keys.values[empty]))


def test_keys_to_properties_of_blocks_without_properties(maps):
    # dask's automatic chunks divide by zero for arrays with an axis of length 0
    check(lambda m, t: t.keys_to_properties([]), maps)
    check(lambda m, t: _no_properties(m, t).keys_to_properties(t.keys.names[-1:]), maps)
    check(lambda m, t: _no_properties(m, t).keys_to_samples(t.keys.names[-1:]), maps)


# -- every metadata operation ----------------------------------------------------------


def _first_keys(m: Any, t: Any, rows: list[int]) -> Any:
    return labels(m, t.keys.names[:1], t.keys.values[rows, :1])


def _halves(m: Any, t: Any) -> list[Any]:
    first = labels(m, ["system"], [[0], [1], [2]])
    second = labels(m, ["system"], [[s] for s in range(3, 12)])
    return [m.slice(t, "samples", first), m.slice(t, "samples", second)]


CASES: dict[str, Callable[[Any, Any], Any]] = {
    # slice / split
    "slice samples nothing": lambda m, t: m.slice(t, "samples", labels(m, ["system"], [[99]])),
    "slice samples everything": lambda m, t: m.slice(
        t, "samples", labels(m, ["system"], [[s] for s in range(12)])
    ),
    "slice samples by atom": lambda m, t: m.slice(t, "samples", labels(m, ["atom"], [[3], [0]])),
    "slice properties": lambda m, t: m.slice(t, "properties", labels(m, ["n"], [[4], [1]])),
    "slice properties two names": lambda m, t: m.slice(
        t, "properties", labels(m, ["l", "n"], [[0, 2], [1, 1], [7, 7]])
    ),
    "slice positions reversed": lambda m, t: m.slice_block(t.block(1), "samples", [5, 2, 0]),
    "slice positions everything": lambda m, t: m.slice_block(
        t.block(0), "samples", np.arange(23)[::-1]
    ),
    "slice positions none": lambda m, t: m.slice_block(t.block(4), "samples", []),
    "slice bad name": lambda m, t: m.slice(t, "samples", labels(m, ["bad"], [[0]])),
    "slice components": lambda m, t: m.slice(t, "components", labels(m, ["o3_mu"], [[0]])),
    "slice 2-D array": lambda m, t: m.slice_block(t.block(0), "samples", np.array([[0]])),
    "split samples": lambda m, t: m.split(
        t,
        "samples",
        [labels(m, ["system"], v) for v in ([[0], [1]], [[2]], [[5], [0]], [[99]])],
    ),
    "split samples overlapping": lambda m, t: m.split_block(
        t.block(1),
        "samples",
        [labels(m, ["system", "atom"], v) for v in ([[0, 0]], [[1, 1], [0, 0]])],
    ),
    "split properties": lambda m, t: m.split(
        t, "properties", [labels(m, ["n"], v) for v in ([[0]], [[1], [2]], [[0], [4]], [])]
    ),
    "split no selection": lambda m, t: m.split(t, "samples", []),
    "split positions": lambda m, t: m.split_block(t.block(0), "samples", [[0, 3], [], [5, 1]]),
    "split components": lambda m, t: m.split(t, "components", [labels(m, ["system"], [[0]])]),
    # join
    "join samples": lambda m, t: m.join(_halves(m, t)[::-1], "samples", remove_tensor_name=True),
    "join samples sorted": lambda m, t: m.join(
        _halves(m, t)[::-1], "samples", sort_samples=True, remove_tensor_name=True
    ),
    "join samples with tensor name": lambda m, t: m.join([t, t], "samples", sort_samples=True),
    "join samples duplicates": lambda m, t: m.join([t, t], "samples", remove_tensor_name=True),
    "join samples union": lambda m, t: m.join(
        [t, m.drop_blocks(t, _first_keys(m, t, [4]))], "samples", different_keys="union"
    ),
    "join samples error": lambda m, t: m.join(
        [t, m.drop_blocks(t, _first_keys(m, t, [4]))], "samples"
    ),
    "join properties intersection": lambda m, t: m.join(
        [m.drop_blocks(t, _first_keys(m, t, [0])), t], "properties", different_keys="intersection"
    ),
    "join properties union": lambda m, t: m.join(
        [m.drop_blocks(t, _first_keys(m, t, [0])), t],
        "properties",
        different_keys="union",
        remove_tensor_name=True,
    ),
    "join properties bad option": lambda m, t: m.join([t, t], "properties", different_keys="x"),
    "join properties different names": lambda m, t: m.join(
        [t, m.rename_dimension(t, "properties", "n", "k")], "properties"
    ),
    "join properties different samples": lambda m, t: m.join(_halves(m, t), "properties"),
    "join_blocks properties": lambda m, t: m.join_blocks([t.block(0), t.block(0)], "properties"),
    # unique_metadata
    "unique samples": lambda m, t: m.unique_metadata(t, "samples", ["atom", "system"]),
    "unique gradient samples": lambda m, t: m.unique_metadata(t, "samples", "atom", "positions"),
    "unique gradient sample": lambda m, t: m.unique_metadata(t, "samples", ("sample",), "cell"),
    "unique properties": lambda m, t: m.unique_metadata_block(
        t.block(4), "properties", "l", "strain"
    ),
    "unique empty block": lambda m, t: m.unique_metadata_block(
        t.block(2), "samples", "atom", "positions"
    ),
    "unique components": lambda m, t: m.unique_metadata(t, "components", "o3_mu"),
    "unique bad gradient": lambda m, t: m.unique_metadata(t, "samples", "atom", "bad"),
    # dimensions
    "append keys": lambda m, t: m.append_dimension(t, "keys", "new", np.arange(len(t.keys))),
    "append samples": lambda m, t: m.append_dimension(t, "samples", "new", 3),
    "append components": lambda m, t: m.append_dimension(t, "components", "new", 3),
    "insert samples": lambda m, t: m.insert_dimension(t, "samples", 0, "new", 3),
    "insert properties": lambda m, t: m.insert_dimension(t, "properties", 1, "new", 3),
    "insert existing": lambda m, t: m.insert_dimension(t, "samples", 0, "atom", 0),
    "remove samples": lambda m, t: m.remove_dimension(
        m.insert_dimension(t, "samples", 1, "new", 0), "samples", "new"
    ),
    "remove samples not unique": lambda m, t: m.remove_dimension(t, "samples", "system"),
    "remove keys": lambda m, t: m.remove_dimension(
        m.append_dimension(t, "keys", "new", 0), "keys", "new"
    ),
    "rename samples": lambda m, t: m.rename_dimension(t, "samples", "atom", "a"),
    "rename to gradient name": lambda m, t: m.rename_dimension(t, "samples", "system", "sample"),
    "rename components": lambda m, t: m.rename_dimension(t, "components", "o3_mu", "mu"),
    "rename properties": lambda m, t: m.rename_dimension(t, "properties", "n", "k"),
    "rename missing": lambda m, t: m.rename_dimension(t, "samples", "bad", "x"),
    "permute samples": lambda m, t: m.permute_dimensions(t, "samples", [1, 0]),
    "permute properties": lambda m, t: m.permute_dimensions(t, "properties", [1, 0]),
    "permute bad": lambda m, t: m.permute_dimensions(t, "samples", [0]),
    # keys to samples / properties
    "keys_to_samples": lambda m, t: t.keys_to_samples(t.keys.names[-1:]),
    "keys_to_samples unsorted": lambda m, t: t.keys_to_samples(
        t.keys.names[-1:], sort_samples=False, fill_value=2.0
    ),
    "keys_to_samples all keys": lambda m, t: t.keys_to_samples(t.keys.names[::-1]),
    "keys_to_properties": lambda m, t: t.keys_to_properties(t.keys.names[-1:]),
    "keys_to_properties unsorted": lambda m, t: t.keys_to_properties(
        t.keys.names[-1:], sort_samples=False, fill_value=-1.0
    ),
    "keys_to_properties labels": lambda m, t: t.keys_to_properties(
        labels(m, t.keys.names[-1:], [[8], [6], [1]])
    ),
    "keys_to_properties missing name": lambda m, t: t.keys_to_properties("bad"),
    "components_to_properties": lambda m, t: t.components_to_properties("o3_mu"),
    # blocks
    "drop_blocks": lambda m, t: m.drop_blocks(t, _first_keys(m, t, [2])),
    "drop_blocks copy": lambda m, t: m.drop_blocks(
        t, labels(m, t.keys.names, t.keys.values[[1, 5]]), copy=True
    ),
    "drop_blocks every block": lambda m, t: m.drop_blocks(t, t.keys),
    "drop_blocks bad name": lambda m, t: m.drop_blocks(t, labels(m, ["bad"], [[1]])),
    "drop_empty_blocks": lambda m, t: m.drop_empty_blocks(t),
    "filter_blocks none": lambda m, t: m.filter_blocks(t, labels(m, t.keys.names[:1], [[99]])),
    "filter_blocks copy": lambda m, t: m.filter_blocks(t, _first_keys(m, t, [5, 0]), copy=True),
    # comparisons, creation, layout
    "equal_metadata sliced": lambda m, t: m.equal_metadata(t, _halves(m, t)[0]),
    "equal_metadata_raise sliced": lambda m, t: m.equal_metadata_raise(
        t, _halves(m, t)[0], check=["properties", "components"]
    ),
    "equal_metadata_raise gradients": lambda m, t: m.equal_metadata_raise(
        t, m.remove_gradients(t, ["cell"])
    ),
    "equal_metadata gradients unchecked": lambda m, t: m.equal_metadata(
        t, m.remove_gradients(t, ["cell"]), check_gradients=False
    ),
    "equal_metadata_raise gradient samples": lambda m, t: m.equal_metadata_raise(
        t, m.rename_dimension(t, "samples", "atom", "a"), check=["properties"]
    ),
    "equal_metadata bad check": lambda m, t: m.equal_metadata(t, t, check=["keys"]),
    "equal_metadata_block_raise": lambda m, t: m.equal_metadata_block_raise(
        t.block(0), t.block(3), check=["samples"]
    ),
    "equal_metadata_block components": lambda m, t: m.equal_metadata_block(
        t.block(0), t.block(3), check=["components"]
    ),
    "make_contiguous": lambda m, t: m.make_contiguous(t),
    "make_contiguous_block": lambda m, t: m.make_contiguous_block(t.block(1)),
    "one_hot": lambda m, t: m.one_hot(
        t.block(0).samples, labels(m, ["atom"], [[0], [1], [2], [3]])
    ),
    "one_hot missing": lambda m, t: m.one_hot(t.block(0).samples, labels(m, ["atom"], [[0], [1]])),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_operation_against_metatensor(maps, name):
    check(CASES[name], maps)
