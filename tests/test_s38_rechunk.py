"""Arrays of no entries (empty along every axis) in chunks of their own.

A dask array of shape (0, 0) may come in several (empty) chunks along any axis: dask's
own ``concatenate`` of two such arrays along their columns gives chunks
``((0,), (0, 0))``. dask leaves an array empty along every axis in its own chunks when
asked for others, so an operation that asked for one chunk along the columns and paired
the result with arrays chunked as asked built a graph that failed when computed.
"""

from __future__ import annotations

import dask.array as da
import metatensor
import metatensor.operations
import numpy as np

import metatensor_dask as mtd


def _labels(names: list[str], rows: list[list[int]]) -> metatensor.Labels:
    return metatensor.Labels(names, np.array(rows, dtype=np.int32).reshape(-1, len(names)))


def _lazy_labels(names: list[str], rows: list[list[int]]) -> mtd.Labels:
    return mtd.from_metatensor(_labels(names, rows))


def _block(values) -> mtd.TensorBlock:
    samples = [[i] for i in range(values.shape[0])]
    properties = [[j] for j in range(values.shape[1])]
    return mtd.TensorBlock(
        values, _lazy_labels(["s"], samples), [], _lazy_labels(["p"], properties)
    )


def _columns_of_nothing() -> da.Array:
    """A (0, 0) array in two empty chunks along its columns, as dask concatenates two."""
    empty = da.zeros((0, 0), chunks=((0,), (0,)))
    array = da.concatenate([empty, empty], axis=1)
    assert array.chunks == ((0,), (0, 0))
    return array


def _tensor(values) -> mtd.TensorMap:
    """An ordinary block beside one of ``values``."""
    ordinary = da.from_array(np.arange(6.0).reshape(2, 3), chunks=((1, 1), (3,)))
    return mtd.TensorMap(_lazy_labels(["k"], [[0], [1]]), [_block(ordinary), _block(values)])


def _reference() -> metatensor.TensorMap:
    blocks = [
        metatensor.TensorBlock(
            np.arange(6.0).reshape(2, 3),
            _labels(["s"], [[0], [1]]),
            [],
            _labels(["p"], [[0], [1], [2]]),
        ),
        metatensor.TensorBlock(np.zeros((0, 0)), _labels(["s"], []), [], _labels(["p"], [])),
    ]
    return metatensor.TensorMap(_labels(["k"], [[0], [1]]), blocks)


def test_keys_to_samples_of_columns_of_nothing():
    moved = mtd.keys_to_samples(_tensor(_columns_of_nothing()), "k")

    expected = _reference().keys_to_samples("k")
    metatensor.equal_raise(mtd.to_metatensor(moved), expected)


def test_join_along_samples_of_columns_of_nothing():
    first = _tensor(_columns_of_nothing())
    second = mtd.from_metatensor(_reference())

    joined = mtd.join([first, second], "samples", add_dimension="tensor")

    reference = _reference()
    expected = metatensor.operations.join([reference, reference], "samples", add_dimension="tensor")
    metatensor.equal_raise(mtd.to_metatensor(joined), expected)


def test_save_of_columns_of_nothing(tmp_path):
    mtd.save(tmp_path / "a.mts", _tensor(_columns_of_nothing()))

    metatensor.equal_raise(metatensor.load(tmp_path / "a.mts"), _reference())
