"""Partial computes of maps opened from Zarr stores, and the tokens of maps.

Computing a part of a map (rows of one block's values, one gradient, a block of the
result of a chain of operations) reads only the chunk files that part needs: as many as
a plain dask array over the same Zarr array reads for the same rows. Files are counted
with Python's ``open`` audit events. Equal maps built twice have the same dask token
(a distributed scheduler reuses the results of tasks it holds), different maps
different ones.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from typing import Any

import dask.array as da
import metatensor
import numpy as np
import pytest
import zarr
from chunked_maps import chunked, reference
from dask.base import tokenize
from opened_files import opened_files

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def _chunk_files(store: str, compute: Callable[[], Any]) -> tuple[Any, set[str]]:
    """``compute()``, and the chunk files of values and gradients it opened in ``store``."""
    with opened_files() as opened:
        result = compute()
    names = {os.path.relpath(str(path), store) for path in opened if str(path).startswith(store)}
    return result, {name for name in names if "/values/c" in name}


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> tuple[str, metatensor.TensorMap]:
    theirs = reference(same_properties=True)
    store = str(tmp_path_factory.mktemp("partial") / "map.zarr")
    mtd.to_zarr(chunked(theirs), store, chunks=4)
    return store, theirs


def _plain(store: str, path: str) -> da.Array:
    """A plain dask array over the array ``path`` of the store."""
    return da.from_zarr(zarr.open_array(store, path=path, mode="r"))


ROWS = [slice(0, 3), slice(5, 10), slice(9, 17), slice(-2, None)]


def _row_chunks(files: set[str]) -> set[int]:
    """The row index of each chunk file (``.../values/c.<row>.<...>``)."""
    return {int(name.rsplit("/c.", 1)[1].split(".")[0]) for name in files}


def _stored_under(array: da.Array, stored_rows: int, rows: slice) -> set[int]:
    """The stored row chunks (of ``stored_rows`` rows) under the chunks of ``array``
    that ``rows`` touch: a chunk of a dask array is read whole."""
    start, stop, _ = rows.indices(array.shape[0])
    bounds = np.cumsum((0, *array.chunks[0]))
    touched = [(a, b) for a, b in itertools.pairwise(bounds) if a < stop and b > start]
    return {i for a, b in touched for i in range(a // stored_rows, (b - 1) // stored_rows + 1)}


@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize("gradient", [None, "positions", "strain"])
def test_rows_of_one_array_read_only_the_chunks_under_them(stored, rows, gradient):
    store, theirs = stored
    block = mtd.open_zarr(store).block(3)
    path = "blocks/3/values" if gradient is None else f"blocks/3/gradients/{gradient}/values"
    ours = block.values if gradient is None else block.gradient(gradient).values
    plain = _plain(store, path)
    mine, files = _chunk_files(store, lambda: ours[rows].compute())
    array = theirs.block(3) if gradient is None else theirs.block(3).gradient(gradient)
    np.testing.assert_array_equal(mine, array.values[rows])
    _, read_by_dask = _chunk_files(store, lambda: plain[rows].compute())
    # the chunks of values are those of the store, and so are the reads; the chunks of a
    # gradient follow those of the values (the rows of their samples), and the store's
    # under them are read
    assert _row_chunks(read_by_dask) <= _row_chunks(files)
    assert _row_chunks(files) == _stored_under(ours, plain.chunks[0][0], rows)
    assert len(files) < plain.numblocks[0]


OPERATIONS = {
    "add-multiply": lambda m, t: m.multiply(m.add(t, t), 2.0),
    "sum_over_samples": lambda m, t: m.sum_over_samples(t, "atom"),
    "slice-properties": lambda m, t: m.slice(
        t, "properties", m.Labels(["n"], np.array([[0], [2]], dtype=np.int32))
    ),
    "components_to_properties": lambda m, t: t.components_to_properties("o3_mu"),
    "remove_gradients": lambda m, t: m.remove_gradients(t, ["cell"]),
}


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_one_block_of_a_result_reads_only_that_block(stored, name):
    store, theirs = stored
    result = OPERATIONS[name](mtd, mtd.open_zarr(store))
    expected = OPERATIONS[name](metatensor, theirs).block(3)
    block, files = _chunk_files(store, lambda: result.block(3).compute())
    assert_equal_to_metatensor(block, expected, rtol=1e-13)
    assert files and all(name.startswith("blocks/3/") for name in files), files
    rows, files = _chunk_files(store, lambda: result.block(3).values[:1].compute())
    np.testing.assert_allclose(rows, expected.values[:1], rtol=1e-13)
    assert files == {"blocks/3/values/c.0.0.0"}


def test_equal_maps_built_twice_have_one_token(stored):
    store, theirs = stored

    def build(source: Any) -> Any:
        return mtd.sum_over_samples(mtd.add(source, mtd.multiply(source, 0.5)), "atom")

    assert tokenize(build(chunked(theirs))) == tokenize(build(chunked(theirs)))
    assert tokenize(build(mtd.open_zarr(store))) == tokenize(build(mtd.open_zarr(store)))


def test_different_maps_have_different_tokens(stored):
    store, theirs = stored
    source = chunked(theirs)
    variants = [
        source,
        chunked(metatensor.multiply(theirs, 2.0)),
        mtd.multiply(source, 0.5),
        mtd.multiply(source, 0.25),
        mtd.add(source, source),
        mtd.sum_over_samples(source, "atom"),
        mtd.mean_over_samples(source, "atom"),
        mtd.rename_dimension(source, "samples", "atom", "other"),
        mtd.remove_gradients(source, ["cell"]),
        mtd.open_zarr(store),
    ]
    tokens = [tokenize(variant) for variant in variants]
    assert len(set(tokens)) == len(tokens)
