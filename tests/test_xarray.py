"""``TensorBlock.to_xarray``: lazy, labelled like the block, and an optional dependency."""

from __future__ import annotations

import sys

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import metatensor_dask as mtd
from metatensor_dask.datasets import featomic_like, tutorial_file
from metatensor_dask.testing import raise_if_dask_computes


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> mtd.TensorMap:
    """A store-backed tensor: its sample labels are read from the store when needed."""
    path = tmp_path_factory.mktemp("xarray") / "t.zarr"
    featomic_like(n_systems=3, atoms_per_system=6, chunks=4).to_zarr(path)
    return mtd.open_zarr(path)


def _check(array: xr.DataArray, block: mtd.TensorBlock) -> None:
    """``array`` wraps the block's dask array, with its axes and Labels as coordinates."""
    assert isinstance(array.data, da.Array)
    assert array.data.name == block.values.name and array.chunks == block.values.chunks
    components = [c.names[0] for c in block.components]
    assert array.dims == ("samples", *components, "properties")
    for dim, labels in [("samples", block.samples), ("properties", block.properties)]:
        assert list(array.indexes[dim].names) == labels.names
        for j, name in enumerate(labels.names):
            np.testing.assert_array_equal(array[name].values, labels.values[:, j])
    for component in block.components:
        name = component.names[0]
        np.testing.assert_array_equal(array.indexes[name], component.values[:, 0])


def test_to_xarray_is_lazy_and_labelled(stored):
    block = stored.block(2)
    gradients = [block.gradient(p) for p in block.gradients_list()]
    with raise_if_dask_computes():
        array = block.to_xarray()
        converted = [g.to_xarray() for g in gradients]
    _check(array, block)
    assert array.name == "values" and array.dims == ("samples", "properties")
    for gradient, result in zip(gradients, converted, strict=True):
        _check(result, gradient)
    assert converted[0].indexes["samples"].names == ["sample", "system", "atom"]
    assert converted[1].dims == ("samples", "xyz_1", "xyz_2", "properties")

    values = block.values.compute()
    np.testing.assert_array_equal(array.values, values)
    # label-based selection, as xarray users write it
    system, atom = block.samples.values[3]
    row = array.sel(system=system, atom=atom).values
    np.testing.assert_array_equal(row, values[3])
    l_, n_1, n_2 = block.properties.values[7]
    column = array.sel(l=l_, n_1=n_1, n_2=n_2).values
    np.testing.assert_array_equal(column, values[:, 7])
    strain = converted[1].sel(xyz_1=1, xyz_2=2).values
    np.testing.assert_array_equal(strain, gradients[1].values.compute()[:, 1, 2, :])


def test_to_xarray_of_a_computed_block():
    block = mtd.load(tutorial_file("spherical-expansion.npz")).block(1).compute()
    array = block.to_xarray()
    assert isinstance(array.data, np.ndarray)
    assert array.dims == ("samples", "o3_mu", "properties")
    np.testing.assert_array_equal(array.values, block.values)
    np.testing.assert_array_equal(array["o3_mu"].values, [-1, 0, 1])


def test_to_xarray_refuses_axes_xarray_can_not_name():
    block = mtd.TensorBlock(
        np.zeros((2, 3, 1)),
        mtd.Labels.range("s", 2),
        [mtd.Labels.range("properties", 3)],
        mtd.Labels.range("p", 1),
    )
    with pytest.raises(ValueError, match=r"a component is named 'samples', 'properties'"):
        block.to_xarray()


def test_to_xarray_names_the_missing_dependency(monkeypatch):
    block = mtd.load(tutorial_file("spherical-expansion.npz")).block(0)
    monkeypatch.setitem(sys.modules, "xarray", None)  # `import xarray` raises ImportError
    with pytest.raises(ImportError, match=r"needs xarray.*pip install xarray"):
        block.to_xarray()
