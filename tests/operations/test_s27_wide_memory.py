"""Operations on a stored map of wide blocks (one value row larger than the
``chunk-size`` setting, so one row per chunk) hold a few chunks at a time, never the
whole map: the most memory allocated at any time (``tracemalloc``, which counts
numpy's arrays, under the synchronous scheduler) stays under a quarter of the map's
bytes, while a task materialising a whole block (or the map) would exceed it."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest

import metatensor_dask as mtd

SAMPLES = 64
PROPERTIES = 12000
"""A value row of three components is 281 KiB; a gradient row of 3 x 3 components
844 KiB, 0 to 2 of them per sample."""

TARGET = "64KiB"


def _labels(names: list[str], values: np.ndarray) -> mtd.Labels:
    return mtd.Labels(names, np.asarray(values, dtype=np.int32).reshape(-1, len(names)))


def _block(seed: int) -> mtd.TensorBlock:
    index = np.arange(SAMPLES)
    samples = _labels(["system", "atom"], np.stack([index, index % 3], 1))
    components = [_labels(["c"], np.arange(3))]
    columns = np.arange(PROPERTIES)
    properties = _labels(["n", "l"], np.stack([columns // 7, columns % 7], 1))
    rng = da.random.default_rng(seed)
    values = rng.standard_normal((SAMPLES, 3, PROPERTIES), chunks=(1, 3, PROPERTIES))
    block = mtd.TensorBlock(values, samples, components, properties)
    rows = np.array([(s, 0, a) for s in range(SAMPLES) for a in range(s % 3)])
    gradient = rng.standard_normal((len(rows), 3, 3, PROPERTIES), chunks=(2, 3, 3, PROPERTIES))
    xyz = _labels(["xyz"], np.arange(3))
    block.add_gradient(
        "positions",
        mtd.TensorBlock(
            gradient, _labels(["sample", "system", "atom"], rows), [xyz, *components], properties
        ),
    )
    return block


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A stored map of two wide blocks, and its bytes."""
    tensor = mtd.TensorMap(_labels(["k"], [0, 1]), [_block(0), _block(1)])
    path = tmp_path_factory.mktemp("wide-memory") / "wide.zarr"
    with dask.config.set(scheduler="sync"):
        tensor.to_zarr(path, chunks=TARGET)
    nbytes = sum(
        array.nbytes
        for block in tensor.blocks()
        for array in (block.values, block.gradient("positions").values)
    )
    return path, nbytes


def _computed(result) -> None:
    if isinstance(result, (bool, np.bool_)):
        return
    arrays = []
    for block in result.blocks():
        arrays.append(block.values)
        arrays.extend(gradient.values for _, gradient in block.gradients())
    dask.compute(*[array.sum() for array in arrays])


OPERATIONS = {
    "read": lambda t: t,
    "sum_over_properties": lambda t: mtd.sum_over_properties(t, ["l"]),
    "std_over_properties": lambda t: mtd.std_over_properties(t, ["n"]),
    "slice": lambda t: mtd.slice(t, "properties", _labels(["l"], [1, 3])),
    "sort": lambda t: mtd.sort(t, axes="properties", descending=True),
    "components_to_properties": lambda t: t.components_to_properties("c"),
    "multiply": lambda t: mtd.multiply(t, t),
    "allclose": lambda t: mtd.allclose(t, t),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_wide_rows_are_processed_a_few_chunks_at_a_time(store, operation):
    path, nbytes = store
    with dask.config.set({"metatensor_dask.chunk-size": TARGET, "scheduler": "sync"}):
        tensor = mtd.open_zarr(path)
        assert all(block.values.chunks[0] == (1,) * SAMPLES for block in tensor.blocks())
        tracemalloc.start()
        try:
            _computed(OPERATIONS[operation](tensor))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < nbytes / 4, (peak, nbytes)


def _peak(array: da.Array) -> int:
    with dask.config.set(scheduler="sync"):
        tracemalloc.start()
        try:
            array.sum().compute()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()


def test_a_slice_of_neighbouring_properties_is_a_view_of_each_chunk():
    """A range of properties is read as a view of each chunk: summing it allocates
    about what summing the whole chunk does, where a copy of the selection would add
    most of a chunk."""
    n_properties = 400_000
    values = da.random.default_rng(0).standard_normal((2, n_properties), chunks=(1, n_properties))
    columns = np.arange(n_properties)
    block = mtd.TensorBlock(
        values,
        _labels(["system"], [0, 1]),
        [],
        _labels(["n", "l"], np.stack([columns // 8, columns % 8], 1)),
    )
    selection = _labels(["n"], np.arange(5_000, n_properties // 8))
    sliced = mtd.slice_block(block, "properties", selection)
    _peak(block.values)  # the first compute imports modules
    chunk_bytes = n_properties * 8
    assert _peak(sliced.values) < _peak(block.values) + chunk_bytes / 4


def test_writing_wide_rows_holds_a_few_chunks(store, tmp_path):
    path, nbytes = store
    with dask.config.set({"metatensor_dask.chunk-size": TARGET, "scheduler": "sync"}):
        tensor = mtd.open_zarr(path)
        tracemalloc.start()
        try:
            mtd.to_zarr(mtd.multiply(tensor, 2.0), tmp_path / "copy.zarr", chunks="1MiB")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < nbytes / 4, (peak, nbytes)
