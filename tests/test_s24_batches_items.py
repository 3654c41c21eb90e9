"""write_batches: what ``items`` may be. A sequence (its length and order define the
batches, and a resume continues by position in it); iterators are refused, as
distributed's ``Client.map`` refuses them, and so are sets (no order)."""

from __future__ import annotations

import json

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def one_row_per_item(items: list) -> metatensor.TensorMap:
    """One sample per item, ``system`` numbered from 0 in each batch, the item's
    position in the batch as its value."""
    n = len(items)
    block = metatensor.TensorBlock(
        values=np.arange(n, dtype=np.float64).reshape(n, 1),
        samples=metatensor.Labels(["system"], np.arange(n, dtype=np.int32).reshape(n, 1)),
        components=[],
        properties=metatensor.Labels.range("p", 1),
    )
    return metatensor.TensorMap(metatensor.Labels.range("k", 1), [block])


def expected(n_items: int, batch_size: int) -> metatensor.TensorMap:
    """The join of the batches of ``one_row_per_item``, systems shifted by the index of
    each batch's first item."""
    parts = []
    for start in range(0, n_items, batch_size):
        n = min(batch_size, n_items - start)
        block = metatensor.TensorBlock(
            values=np.arange(n, dtype=np.float64).reshape(n, 1),
            samples=metatensor.Labels(
                ["system"], np.arange(start, start + n, dtype=np.int32).reshape(n, 1)
            ),
            components=[],
            properties=metatensor.Labels.range("p", 1),
        )
        parts.append(metatensor.TensorMap(metatensor.Labels.range("k", 1), [block]))
    return metatensor.join(parts, axis="samples", different_keys="union")


UNORDERED_OR_ONE_SHOT = {
    "generator": lambda: (f"s{i}" for i in range(5)),
    "iterator of a list": lambda: iter(["a", "b", "c"]),
    "map": lambda: map(str, range(4)),
    "zip": lambda: zip(range(3), "abc", strict=True),
    "set": lambda: {"a", "b", "c"},
    "frozenset": lambda: frozenset({1, 2, 3}),
}


@pytest.mark.parametrize("kind", sorted(UNORDERED_OR_ONE_SHOT))
def test_items_without_a_stable_order_are_refused_before_anything(tmp_path, kind):
    """A set's order may change between processes (strings hash differently in each),
    and an iterator is consumed: a resume would continue with other items by position,
    silently. Refused, with the remedy, before the store exists."""
    path = tmp_path / "t.zarr"
    items = UNORDERED_OR_ONE_SHOT[kind]()
    with pytest.raises(mtd.MetatensorDaskError, match=r"`items` must be a sequence.*list\("):
        mtd.write_batches(one_row_per_item, items, path, batch_size=2, quiet=True)
    assert not path.exists()


def test_items_that_are_not_a_collection_are_refused_before_anything(tmp_path):
    path = tmp_path / "t.zarr"
    with pytest.raises(mtd.MetatensorDaskError, match=r"`items` must be a sequence.*type int"):
        mtd.write_batches(one_row_per_item, 5, path, quiet=True)  # type: ignore[arg-type]
    assert not path.exists()


SEQUENCES = {
    "list": lambda: ["x", "y", "z", "w", "v"],
    "tuple": lambda: (("a", 1), ("b", 2), ("c", 3), ("d", 4), ("e", 5)),
    "range": lambda: range(10, 15),
    "numpy array": lambda: np.arange(5) * 7,
    "dict (its keys)": lambda: {"h2o": 1, "ch4": 2, "nh3": 3, "co2": 4, "hcn": 5},
}


@pytest.mark.parametrize("kind", sorted(SEQUENCES))
@pytest.mark.parametrize("batch_size", [1, 2, 7])
def test_sequences_of_any_items_equal_the_join(tmp_path, kind, batch_size):
    path = tmp_path / "t.zarr"
    with dask.config.set(num_workers=2):
        mtd.write_batches(
            one_row_per_item, SEQUENCES[kind](), path, batch_size=batch_size, quiet=True
        )
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), expected(5, batch_size))


def test_a_single_item(tmp_path):
    path = tmp_path / "t.zarr"
    mtd.write_batches(one_row_per_item, ["only"], path, batch_size=3, quiet=True)
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), expected(1, 3))


def test_numpy_ints_as_batch_size_and_window(tmp_path):
    """As ``chunks`` and ``renumber`` offsets take them (``n // workers`` of numpy
    sizes is one); the run record holds them as JSON ints, which a resume compares."""
    path = tmp_path / "t.zarr"
    size, window = np.arange(5)[2], np.int32(1)
    with dask.config.set(num_workers=2):
        mtd.write_batches(
            one_row_per_item, range(5), path, batch_size=size, window=window, quiet=True
        )
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), expected(5, 2))
    record = json.loads((path / "zarr.json").read_text())["attributes"]["metatensor_dask"]
    assert record["batches"]["batch_size"] == 2
    mtd.write_batches(one_row_per_item, range(5), path, batch_size=2, resume=True, quiet=True)


@pytest.mark.parametrize("items", ["frames.xyz", b"frames.xyz"], ids=["str", "bytes"])
def test_a_str_as_items_is_refused_before_anything(tmp_path, items):
    """One file name given alone would make an item of each of its characters."""
    path = tmp_path / "t.zarr"
    with pytest.raises(mtd.MetatensorDaskError, match=r"`items` is a (str|bytes).*\[items\]"):
        mtd.write_batches(one_row_per_item, items, path, quiet=True)
    assert not path.exists()
