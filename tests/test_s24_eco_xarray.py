"""``TensorBlock.to_xarray`` on blocks and gradients of every dtype, Labels sharing
names across axes, and Labels without dimensions, checked against metatensor."""

from __future__ import annotations

import dask.array as da
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import raise_if_dask_computes


def _labels(names: list[str], count: int, seed: int = 0) -> mtd.Labels:
    rng = np.random.default_rng(seed)
    columns = [rng.permutation(count) for _ in names]
    return mtd.Labels(names, np.stack(columns, 1).astype(np.int32).reshape(count, len(names)))


def _block(samples: mtd.Labels, components: list[mtd.Labels], properties: mtd.Labels):
    shape = (len(samples), *(len(c) for c in components), len(properties))
    values = da.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
    return mtd.TensorBlock(values, samples, components, properties)


@pytest.mark.parametrize(
    ("samples", "components", "properties", "message"),
    [
        (["system", "atom"], [], ["atom"], "properties dimension 'atom' has the name of a sam"),
        (["system", "atom"], ["atom"], ["n"], "samples dimension 'atom' has the name of the com"),
        (["system"], ["n"], ["n", "l"], "properties dimension 'n' has the name of the comp"),
        (["samples"], [], ["n"], "samples dimension 'samples' has the name of the samples axis"),
        (["a", "properties"], [], ["n"], "dimension 'properties' has the name of the properties"),
        (["s"], [], ["n", "properties"], "dimension 'properties' has the name of the properties"),
    ],
)
def test_names_used_twice_are_refused_naming_both(samples, components, properties, message):
    block = _block(
        _labels(samples, 4),
        [_labels([name], 2) for name in components],
        _labels(properties, 3, seed=1),
    )
    with raise_if_dask_computes(), pytest.raises(ValueError, match=message) as raised:
        block.to_xarray()
    assert "rename one of them first" in str(raised.value)


@pytest.mark.parametrize(("n_samples", "n_properties"), [(0, 3), (4, 0), (0, 0)])
def test_labels_without_dimensions_give_an_axis_without_coordinates(n_samples, n_properties):
    none = mtd.Labels([], np.zeros((0, 0), np.int32))
    samples = _labels(["system", "atom"], n_samples) if n_samples else none
    properties = _labels(["n"], n_properties) if n_properties else none
    block = _block(samples, [_labels(["o3_mu"], 2)], properties)
    with raise_if_dask_computes():
        array = block.to_xarray()
    assert array.dims == ("samples", "o3_mu", "properties")
    assert array.shape == block.values.shape
    expected = {"o3_mu"}
    expected |= {"samples", "system", "atom"} if n_samples else set()
    expected |= {"properties", "n"} if n_properties else set()
    assert set(array.coords) == expected


def _reference(dtype: np.dtype) -> metatensor.TensorMap:
    """A metatensor map of one block of ``dtype`` with a positions gradient."""
    rng = np.random.default_rng(5)
    samples = metatensor.Labels(["system", "atom"], rng.integers(0, 9, (7, 2), dtype=np.int32))
    samples = metatensor.Labels(samples.names, np.unique(samples.values, axis=0))
    n = len(samples)
    components = [metatensor.Labels.range("o3_mu", 3)]
    properties = metatensor.Labels(["n", "l"], np.array([[0, 1], [2, 0]], dtype=np.int32))
    block = metatensor.TensorBlock(
        (rng.normal(size=(n, 3, 2)) * 10).astype(dtype), samples, components, properties
    )
    rows = np.array([[s, samples.values[s, 0], a] for s in range(n) for a in range(s % 3)])
    gradient = metatensor.TensorBlock(
        (rng.normal(size=(len(rows), 3, 3, 2)) * 10).astype(dtype),
        metatensor.Labels(["sample", "system", "atom"], rows.astype(np.int32).reshape(-1, 3)),
        [metatensor.Labels.range("xyz", 3), *components],
        properties,
    )
    block.add_gradient("positions", gradient)
    return metatensor.TensorMap(metatensor.Labels.range("key", 1), [block])


def _assert_like(array, block: metatensor.TensorBlock) -> None:
    np.testing.assert_array_equal(array.values, block.values)
    assert array.dtype == block.values.dtype
    for axis, labels in [("samples", block.samples), ("properties", block.properties)]:
        assert list(array.indexes[axis].names) == labels.names
        for j, name in enumerate(labels.names):
            np.testing.assert_array_equal(array[name].values, labels.values[:, j])
    for component in block.components:
        np.testing.assert_array_equal(array[component.names[0]].values, component.values[:, 0])


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int32, np.int64, np.complex128])
def test_values_and_gradients_of_a_store_are_labelled_as_metatensor(tmp_path, dtype):
    theirs = _reference(np.dtype(dtype))
    mtd.to_zarr(mtd.from_metatensor(theirs), tmp_path / "t.zarr")
    block = mtd.open_zarr(tmp_path / "t.zarr").block(0)
    with raise_if_dask_computes():
        values = block.to_xarray()
        gradient = block.gradient("positions").to_xarray()
    _assert_like(values, theirs.block(0))
    _assert_like(gradient, theirs.block(0).gradient("positions"))
    assert values.sel(system=values["system"].values[0]).shape[1:] == (3, 2)
