"""Maps mixing tiny and larger blocks (as a SOAP map does): tiny blocks are computed by
groups, larger ones chunk by chunk, side by side in one map. Checked against
metatensor-operations on the same data, values and every gradient, from memory,
``.mts`` and Zarr, with the chunk-size setting small enough to split the larger
blocks."""

from __future__ import annotations

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def _labels(module, names: list[str], rows) -> object:
    return module.Labels(names, np.asarray(rows, dtype=np.int32).reshape(-1, len(names)))


def _gradient(rng, parameter: str, samples: np.ndarray, components, properties, dtype):
    """A gradient of 0 to 2 rows per sample (``positions``) or of one row for most
    samples (``strain``), its rows grouped by sample."""
    if parameter == "positions":
        rows = [[s, samples[s, 0], k] for s in range(len(samples)) for k in range(s % 3)]
        names, extra = ["sample", "system", "atom"], [_labels(metatensor, ["xyz"], [0, 1, 2])]
    else:
        rows = [[s] for s in range(len(samples)) if s % 4 != 1]
        names = ["sample"]
        extra = [_labels(metatensor, [f"xyz_{i}"], [0, 1, 2]) for i in (1, 2)]
    shape = (len(rows), *(len(c) for c in extra + components), len(properties))
    return metatensor.TensorBlock(
        rng.uniform(-1.0, 1.0, size=shape).astype(dtype),
        _labels(metatensor, names, rows),
        extra + components,
        properties,
    )


def mixed_map(seed: int, dtype=np.float64, n_blocks: int = 16) -> metatensor.TensorMap:
    """Blocks of 0, 1, a few or 60 samples in random order, with components of 1 to 4
    entries and properties in random order; every block has ``positions`` and
    ``strain`` gradients (some of no row)."""
    rng = np.random.default_rng(seed)
    blocks = []
    for i in range(n_blocks):
        n_samples = [0, 1, 2, 5, 60][rng.integers(5)]
        samples = np.stack([np.arange(n_samples) // 3, np.arange(n_samples) % 3], axis=1)
        samples = samples[rng.permutation(n_samples)]
        components = [_labels(metatensor, ["c"], np.arange(1 + i % 4))]
        properties = _labels(metatensor, ["p"], rng.permutation(6)[: 1 + i % 3])
        shape = (n_samples, len(components[0]), len(properties))
        block = metatensor.TensorBlock(
            rng.uniform(0.5, 2.0, size=shape).astype(dtype),
            _labels(metatensor, ["system", "atom"], samples),
            components,
            properties,
        )
        for parameter in ("positions", "strain"):
            gradient = _gradient(rng, parameter, samples, components, properties, dtype)
            block.add_gradient(parameter, gradient)
        blocks.append(block)
    keys = np.stack([rng.permutation(n_blocks), np.arange(n_blocks) % 3], axis=1)
    return metatensor.TensorMap(_labels(metatensor, ["center", "species"], keys), blocks)


def _other_values(theirs: metatensor.TensorMap, seed: int) -> metatensor.TensorMap:
    """The metadata of ``theirs`` with other values."""
    rng = np.random.default_rng(seed)

    def like(block):
        values = rng.uniform(0.5, 2.0, size=block.values.shape).astype(block.values.dtype)
        return metatensor.TensorBlock(values, block.samples, block.components, block.properties)

    blocks = []
    for block in theirs.blocks():
        new = like(block)
        for parameter, gradient in block.gradients():
            new.add_gradient(parameter, like(gradient))
        blocks.append(new)
    return metatensor.TensorMap(theirs.keys, blocks)


def _sources(tmp_path, theirs: metatensor.TensorMap, name: str) -> dict[str, mtd.TensorMap]:
    metatensor.save(tmp_path / f"{name}.mts", theirs)
    mtd.from_metatensor(theirs).to_zarr(tmp_path / f"{name}.zarr", chunks=7)
    return {
        "memory": mtd.from_metatensor(theirs),
        "mts": mtd.load(tmp_path / f"{name}.mts"),
        "zarr": mtd.open_zarr(tmp_path / f"{name}.zarr", chunks=50),
    }


def _chain(module, a, b):
    """Element-wise operations on two maps, a join, a samples reduction and keys moved
    to properties."""
    product = module.multiply(module.add(a, b), module.divide(a, 1.5))
    joined = module.join([product, module.pow(b, 2)], "samples", add_dimension="t")
    reduced = module.sum_over_samples(joined, "atom")
    return reduced.keys_to_properties("species")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_chain_on_mixed_blocks_from_every_source_equals_metatensor(tmp_path, dtype):
    first = mixed_map(3, dtype)
    second = _other_values(first, 2)
    expected = _chain(metatensor, first, second)
    tolerance = (
        {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}
    )
    with dask.config.set({"metatensor_dask.chunk-size": "4KiB"}):
        ones, others = _sources(tmp_path, first, "a"), _sources(tmp_path, second, "b")
        # each map with the other read from another source (other groups)
        for a, b in [("memory", "zarr"), ("mts", "memory"), ("zarr", "mts")]:
            assert_equal_to_metatensor(_chain(mtd, ones[a], others[b]), expected, **tolerance)


def _alike_blocks(order: np.ndarray, offset: float) -> metatensor.TensorMap:
    """Blocks of one shape whose values and gradients tell their key apart, in the
    order ``order`` of their keys."""
    samples = _labels(metatensor, ["system", "atom"], [[0, 0], [0, 1]])
    properties = _labels(metatensor, ["p"], [0, 1, 2])
    blocks = []
    for key in order:
        values = np.arange(6.0).reshape(2, 3) / 8 + key + offset
        block = metatensor.TensorBlock(values, samples, [], properties)
        gradient = metatensor.TensorBlock(
            np.full((2, 3, 3), -(key + offset)),
            _labels(metatensor, ["sample", "system", "atom"], [[0, 0, 0], [1, 0, 1]]),
            [_labels(metatensor, ["xyz"], [0, 1, 2])],
            properties,
        )
        block.add_gradient("positions", gradient)
        blocks.append(block)
    return metatensor.TensorMap(_labels(metatensor, ["k"], order), blocks)


def test_blocks_of_one_shape_in_another_order_are_paired_by_key(tmp_path):
    """The blocks of the other maps, read by groups in the order of their keys, meet
    the blocks of the same key of the first (where a swap would raise no error)."""
    first = _alike_blocks(np.arange(40), 0.0)
    second = _alike_blocks(np.random.default_rng(0).permutation(40), 1000.0)
    metatensor.save(tmp_path / "second.mts", second)
    mtd.from_metatensor(second).to_zarr(tmp_path / "second.zarr")
    loaded, opened = mtd.load(tmp_path / "second.mts"), mtd.open_zarr(tmp_path / "second.zarr")
    ours = mtd.from_metatensor(first)
    assert_equal_to_metatensor(mtd.multiply(ours, loaded), metatensor.multiply(first, second))
    assert_equal_to_metatensor(mtd.divide(ours, opened), metatensor.divide(first, second))
    joined = mtd.join([opened, ours], "properties", add_dimension="t")
    assert_equal_to_metatensor(
        joined, metatensor.join([second, first], "properties", add_dimension="t")
    )


def test_a_persisted_mixed_map_operated_on_and_written_reads_back_as_metatensor(tmp_path):
    first = mixed_map(1)
    second = _other_values(first, 4)
    expected = metatensor.sum_over_samples(
        metatensor.add(metatensor.multiply(first, second), first), "system"
    )
    with dask.config.set({"metatensor_dask.chunk-size": "4KiB"}):
        ones, others = _sources(tmp_path, first, "a"), _sources(tmp_path, second, "b")
        product = mtd.multiply(ones["zarr"], others["mts"]).persist()
        result = mtd.sum_over_samples(mtd.add(product, ones["mts"]), "system")
        result.to_zarr(tmp_path / "result.zarr")
        mtd.save(tmp_path / "result.mts", result)
    assert_equal_to_metatensor(
        mtd.open_zarr(tmp_path / "result.zarr"), expected, rtol=1e-12, atol=1e-12
    )
    assert metatensor.allclose(
        metatensor.load(tmp_path / "result.mts"), expected, rtol=1e-12, atol=1e-12
    )
