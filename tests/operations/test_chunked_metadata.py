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
from test_edge_shapes import assert_arrays_are_sound

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


@pytest.fixture(scope="module", params=list(MAPS))
def maps(request: pytest.FixtureRequest) -> tuple[mtd.TensorMap, Any, bool]:
    ours, theirs = pair(**MAPS[request.param])
    return ours, theirs, MAPS[request.param].get("key_dims", 2) == 2


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
        assert (type(ours).__name__, str(ours)) == (type(theirs).__name__, str(theirs))
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
        assert_equal_to_metatensor(ours, theirs)
        if isinstance(ours, (mtd.TensorMap, mtd.TensorBlock)):
            assert_arrays_are_sound(_as_map(ours))
            assert_co_partitioned(_as_map(ours))


def check(build: Callable[[Any, Any], Any], maps: tuple[mtd.TensorMap, Any, bool]) -> None:
    ours, theirs, _ = maps
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
