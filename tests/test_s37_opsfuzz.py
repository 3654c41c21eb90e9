"""Defects found by a differential check of the operations against metatensor-operations,
on maps opened from stores, files and memory in several chunkings.

``join`` along properties of a block without properties whose gradient has no rows
failed when computed ("could not convert string to float: 'array-...'") when the first
map's gradient came in several (empty) row chunks, as a store written in chunks gives
it, and another map's in one: dask can not rechunk an array of no rows and no columns
into several chunks, and concatenating the two built a graph that can not run. The
same made ``add``, ``multiply``, ``equal``... of two maps stored in different chunks
fail ("Missing dependency") on such a gradient, and ``slice`` and ``split`` of the
samples of a block whose values come in several chunks and whose gradient (of no
entries) in one raise an ``IndexError``.
"""

import dask.array as da
import metatensor
import metatensor.operations
import numpy as np
import pytest

import metatensor_dask as mtd


def _core_map(properties: int, gradient_rows: int) -> metatensor.TensorMap:
    """One block of 6 samples and ``properties`` properties, with a gradient of
    ``gradient_rows`` rows."""
    rng = np.random.default_rng(0)
    block = metatensor.TensorBlock(
        rng.standard_normal((6, properties)),
        metatensor.Labels(["s"], np.arange(6).reshape(-1, 1)),
        [],
        metatensor.Labels(["p"], np.arange(properties).reshape(-1, 1)),
    )
    gradient = metatensor.TensorBlock(
        rng.standard_normal((gradient_rows, properties)),
        metatensor.Labels(["sample"], np.arange(gradient_rows).reshape(-1, 1)),
        [],
        block.properties,
    )
    block.add_gradient("g", gradient)
    return metatensor.TensorMap(metatensor.Labels(["k"], np.array([[0]])), [block])


@pytest.mark.parametrize(("properties", "gradient_rows"), [(0, 0), (0, 2), (2, 0)])
def test_join_properties_of_empty_gradients_in_several_chunks(tmp_path, properties, gradient_rows):
    core = _core_map(properties, gradient_rows)
    mtd.to_zarr(mtd.from_metatensor(core), tmp_path / "store.zarr", chunks=3)
    stored = mtd.open_zarr(tmp_path / "store.zarr")
    in_memory = mtd.from_metatensor(core)
    assert len(stored.block(0).gradient("g").values.chunks[0]) == 2

    joined = mtd.join([stored, in_memory], "properties", add_dimension="t")

    expected = metatensor.operations.join([core, core], "properties", add_dimension="t")
    result = mtd.to_metatensor(joined.compute())
    assert metatensor.operations.equal(result, expected)
    # gradient chunk i holds the rows of the samples of values chunk i
    values_chunks = joined.block(0).values.chunks[0]
    assert len(joined.block(0).gradient("g").values.chunks[0]) == len(values_chunks)


@pytest.mark.parametrize(
    "operation",
    [
        mtd.add,
        mtd.multiply,
        mtd.equal,
        mtd.allclose,
    ],
    ids=["add", "multiply", "equal", "allclose"],
)
def test_operations_on_stores_in_other_chunks_with_gradients_of_no_entries(tmp_path, operation):
    core = _core_map(properties=0, gradient_rows=0)
    stores = []
    for rows in (3, 6):
        mtd.to_zarr(mtd.from_metatensor(core), tmp_path / f"{rows}.zarr", chunks=rows)
        stores.append(mtd.open_zarr(tmp_path / f"{rows}.zarr"))
    chunks = [s.block(0).gradient("g").values.chunks[0] for s in stores]
    assert len(chunks[0]) != len(chunks[1])

    result = operation(*stores)

    if isinstance(result, bool):
        assert result
    else:
        expected = metatensor.operations.add(core, core)
        assert metatensor.operations.equal_metadata(mtd.to_metatensor(result.compute()), expected)


@pytest.mark.parametrize("operation", ["slice", "split"])
def test_slice_samples_of_values_in_chunks_with_a_gradient_of_no_entries(operation):
    core = _core_map(properties=0, gradient_rows=0)
    block = mtd.from_metatensor(core.block(0))
    chunked = mtd.TensorBlock(
        da.from_array(core.block(0).values, chunks=(3, -1)),
        block.samples,
        [],
        block.properties,
    )
    chunked.add_gradient("g", block.gradient("g").copy())
    tensor = mtd.TensorMap(mtd.from_metatensor(core.keys), [chunked])
    selection = metatensor.Labels(["s"], np.array([[1], [4]]))

    if operation == "slice":
        result = mtd.slice(tensor, "samples", mtd.from_metatensor(selection))
        expected = metatensor.operations.slice(core, "samples", selection)
    else:
        result = mtd.split(tensor, "samples", [mtd.from_metatensor(selection)])[0]
        expected = metatensor.operations.split(core, "samples", [selection])[0]

    assert metatensor.operations.equal(mtd.to_metatensor(result.compute()), expected)
