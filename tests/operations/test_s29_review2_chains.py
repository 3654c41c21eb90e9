"""A chain of the operations whose output chunks are cut anew (joins along properties,
reductions over samples, ``keys_to_properties``, slices along samples), on a map of
small integer or boolean values read from a Zarr store in small chunks, combined with
a copy chunked otherwise, persisted midway, then written and appended to a store:
equal to metatensor's same chain, values and every gradient."""

from __future__ import annotations

from typing import Any

import dask.array as da
import metatensor
import numpy as np
import pytest
from chunked_maps import chunked, reference
from metatensor_compare import with_new_arrays

import metatensor_dask as mtd
from metatensor_dask._partition import gradient_row_chunks, row_pointer
from metatensor_dask.testing import assert_equal_to_metatensor


def _values(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    return rng.integers(-100, 100, shape).astype(dtype)


def _cast(theirs: metatensor.TensorMap, dtype: Any) -> metatensor.TensorMap:
    """``theirs`` with new random values (and gradients) of ``dtype``."""
    rng = np.random.default_rng(7)
    return with_new_arrays(theirs, lambda array: _values(rng, array.shape, dtype))


def _one_row_chunks(tensor: mtd.TensorMap) -> mtd.TensorMap:
    """``tensor`` with values in chunks of one row, grouped gradients following (the
    others in chunks of one row too)."""
    blocks = []
    for block in tensor.blocks():
        values = da.asarray(block.values).rechunk({0: 1})
        new = mtd.TensorBlock(values, block.samples, block.components, block.properties)
        for parameter, gradient in block.gradients():
            pointer = row_pointer(gradient.samples.column("sample"), len(block))
            grouped = pointer is not None and len(gradient.samples)
            rows = gradient_row_chunks(pointer, values.chunks[0]) if grouped else 1
            gradient_values = da.asarray(gradient.values).rechunk({0: rows})
            new.add_gradient(
                parameter,
                mtd.TensorBlock(
                    gradient_values, gradient.samples, gradient.components, gradient.properties
                ),
            )
        blocks.append(new)
    return mtd.TensorMap(tensor.keys, blocks)


def _first_half(module: Any, tensor: Any, other: Any) -> Any:
    joined = module.join([tensor, other], axis="properties", add_dimension="copy")
    reduced = module.sum_over_samples(joined, "atom")
    return reduced.keys_to_properties("neighbor")


def _second_half(module: Any, tensor: Any) -> Any:
    systems = module.Labels(["system"], np.array([[9], [0], [4], [5]], dtype=np.int32))
    return module.slice(tensor, "samples", systems)


def _renumbered(tensor: metatensor.TensorMap, offset: int) -> metatensor.TensorMap:
    """``tensor`` with ``offset`` added to its ``"system"`` samples (not in gradients,
    whose samples hold no ``"system"`` here)."""
    blocks = []
    for block in tensor.blocks():
        samples = np.array(block.samples.values) + offset
        new = metatensor.TensorBlock(
            block.values.copy(),
            metatensor.Labels(block.samples.names, samples),
            block.components,
            block.properties,
        )
        for parameter, gradient in block.gradients():
            assert "system" not in gradient.samples.names
            new.add_gradient(parameter, gradient.copy())
        blocks.append(new)
    return metatensor.TensorMap(tensor.keys, blocks)


@pytest.mark.parametrize("dtype", [np.bool_, np.int8])
def test_chain_of_recut_operations_written_and_appended(tmp_path, dtype):
    theirs = _cast(reference(seed=2, same_properties=True), dtype)
    theirs = metatensor.remove_gradients(theirs, ["positions"])
    mtd.to_zarr(chunked(theirs, seed=2), str(tmp_path / "source.zarr"), chunks=2)
    ours = mtd.open_zarr(str(tmp_path / "source.zarr"), chunks=3)

    expected = _first_half(metatensor, theirs, theirs)
    ours = _first_half(mtd, ours, _one_row_chunks(ours)).persist()
    assert_equal_to_metatensor(ours.compute(), expected)

    expected = _second_half(metatensor, expected)
    ours = _second_half(mtd, ours)
    store = str(tmp_path / "result.zarr")
    mtd.to_zarr(ours, store, append_dim="samples")
    mtd.to_zarr(ours, store, append_dim="samples", renumber={"system": 100})
    expected = metatensor.join([expected, _renumbered(expected, 100)], axis="samples")
    assert_equal_to_metatensor(mtd.open_zarr(store).compute(), expected)
