"""``to_zarr(mode="a")`` of stored keys with new gradients keeps the stored values: the
tensor's values must be those, or the new gradients would be stored beside values they
are not the derivatives of. Values read from the store as it is are not read again."""

from __future__ import annotations

import dask
import metatensor
import numpy as np
import pytest
from zarr_writer_process import make_metatensor, with_strain_of

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def _files(path):
    return sorted((p.relative_to(path), p.stat().st_size) for p in path.rglob("*"))


def _raising_scheduler(*args, **kwargs):
    raise AssertionError("the write computed something while it was built")


def _with_values(tensor: metatensor.TensorMap, change) -> metatensor.TensorMap:
    """``tensor`` with each block's values replaced by ``change(key, values)``."""
    blocks = []
    for key, block in tensor.items():
        new = metatensor.TensorBlock(
            change(key, block.values.copy()), block.samples, block.components, block.properties
        )
        for parameter, gradient in block.gradients():
            new.add_gradient(parameter, gradient.copy())
        blocks.append(new)
    return metatensor.TensorMap(tensor.keys, blocks)


def _without_nested(tensor: metatensor.TensorMap) -> metatensor.TensorMap:
    """``tensor`` whose positions gradients have no gradient of their own."""
    blocks = []
    for block in tensor.blocks():
        new = metatensor.TensorBlock(
            block.values.copy(), block.samples, block.components, block.properties
        )
        for parameter, gradient in block.gradients():
            new.add_gradient(
                parameter,
                metatensor.TensorBlock(
                    gradient.values.copy(),
                    gradient.samples,
                    gradient.components,
                    gradient.properties,
                ),
            )
        blocks.append(new)
    return metatensor.TensorMap(tensor.keys, blocks)


def _opened_with_gradients(path, full: metatensor.TensorMap, **open_options) -> mtd.TensorMap:
    """The store at ``path`` opened, each block given the strain gradient of ``full``."""
    return with_strain_of(mtd.open_zarr(path, **open_options), full)


@pytest.fixture
def full():
    return make_metatensor(seed=3, nested=False)


@pytest.mark.parametrize("chunks", [None, 4])
def test_other_values_are_refused_before_anything_is_written(tmp_path, full, chunks):
    path = tmp_path / "t.zarr"
    without = metatensor.remove_gradients(full, ["strain"])
    mtd.from_metatensor(without).to_zarr(path, chunks=chunks)
    before = _files(path)

    def change(key, values):
        if tuple(key.values) == (1, 1):
            values[9, 1, 2] += 1e-12  # one value of the third chunk of 4 rows
        return values

    changed = _with_values(full, change)
    with pytest.raises(
        mtd.MetatensorDaskError,
        match=r"stored values of the block \(1, 1\).*differ from them \(first at row 9\).*"
        r"open_zarr.*mode='w'",
    ):
        mtd.from_metatensor(changed).to_zarr(path, mode="a")
    assert _files(path) == before
    assert_equal_to_metatensor(mtd.open_zarr(path), without)


def test_equal_values_from_elsewhere_are_compared_and_written(tmp_path, full):
    """NaN equals NaN, and -0.0 equals 0.0, as the values are the same numbers."""
    path = tmp_path / "t.zarr"

    def special(key, values):
        if values.size:
            values.flat[0], values.flat[-1] = np.nan, 0.0
        return values

    stored = _with_values(full, special)
    mtd.from_metatensor(metatensor.remove_gradients(stored, ["strain"])).to_zarr(path, chunks=4)

    def negative_zero(key, values):
        if values.size:
            values.flat[-1] = -0.0
        return values

    brought = _with_values(stored, negative_zero)
    mtd.from_metatensor(brought).to_zarr(path, mode="a")
    result = mtd.open_zarr(path)
    for block, expected in zip(result.blocks(), stored.blocks(), strict=True):
        np.testing.assert_array_equal(block.values.compute(), expected.values)
        np.testing.assert_array_equal(
            block.gradient("strain").values.compute(), expected.gradient("strain").values
        )


@pytest.mark.parametrize("chunks", [None, 4, 5])
def test_values_read_from_the_store_are_not_read_again(tmp_path, full, chunks):
    """Tiny blocks (items of groups, ``chunks=None``) and dask arrays (chunks of 4
    rows; opened in chunks of 5); the graph is built without computing anything."""
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(metatensor.remove_gradients(full, ["strain"])).to_zarr(
        path, chunks=chunks and 4
    )
    tensor = _opened_with_gradients(path, full, chunks=chunks)
    with dask.config.set(scheduler=_raising_scheduler):
        write = tensor.to_zarr(path, mode="a", compute=False)
    write.compute()
    assert_equal_to_metatensor(mtd.open_zarr(path), full)


def test_values_of_a_store_overwritten_since_opened_are_compared(tmp_path, full):
    path = tmp_path / "t.zarr"
    without = metatensor.remove_gradients(full, ["strain"])
    mtd.from_metatensor(without).to_zarr(path, chunks=4)
    tensor = _opened_with_gradients(path, full)
    other = _with_values(without, lambda key, values: values * 2)
    mtd.from_metatensor(other).to_zarr(path, mode="w", chunks=4)
    with pytest.raises(
        mtd.MetatensorDaskError,
        match=r"overwritten \(or is being written\) since this tensor was opened",
    ):
        tensor.to_zarr(path, mode="a")
    assert_equal_to_metatensor(mtd.open_zarr(path), other)


def test_a_new_nested_gradient_needs_the_stored_gradient_values(tmp_path):
    full = make_metatensor(seed=4, nested=True)
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(_without_nested(full)).to_zarr(path, chunks=4)

    def changed_gradient(tensor):
        blocks = []
        for block in tensor.blocks():
            new = block.copy()
            gradient = new.gradient("positions")
            if gradient.values.size:
                gradient.values[-1, 0, 0, 0] = 7.0
            blocks.append(new)
        return metatensor.TensorMap(tensor.keys, blocks)

    with pytest.raises(
        mtd.MetatensorDaskError,
        match=r"stored values of the gradient 'positions' of the block \(1, 1\)",
    ):
        mtd.from_metatensor(changed_gradient(full)).to_zarr(path, mode="a")
    mtd.from_metatensor(full).to_zarr(path, mode="a")
    assert_equal_to_metatensor(mtd.open_zarr(path), full)
