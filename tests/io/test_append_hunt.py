"""Appends, ``write_batches`` and ``convert --append`` on blocks with components, two
gradients (one, ``strain``, with samples ``["sample"]`` and components of its own),
negative sample values and a renumbered dimension that is not the first: the store
read back equals metatensor's ``join(..., axis="samples", different_keys="union")`` of
the (renumbered) batches, values and every gradient."""

from __future__ import annotations

import metatensor
import numpy as np
from test_zarr_append import shifted

import metatensor_dask as mtd
from metatensor_dask.execution.cli import main
from metatensor_dask.testing import assert_equal_to_metatensor


def _labels(names: list[str], values) -> metatensor.Labels:
    return metatensor.Labels(names, np.asarray(values, dtype=np.int32).reshape(-1, len(names)))


def _block(seed: int, systems, dtype=np.float64) -> metatensor.TensorBlock:
    """Samples ``["atom", "system"]`` (atoms from -1), values ``(n, 3, 2)``, a
    ``positions`` gradient of 0 to 2 rows per sample and a ``strain`` gradient of one
    row per sample with components ``xyz_1``, ``xyz_2`` of its own."""
    rng = np.random.default_rng(seed)
    systems = np.asarray(systems, dtype=np.int32)
    n = len(systems)
    samples = _labels(["atom", "system"], np.stack([np.arange(n) - 1, systems], axis=1))
    components = [_labels(["c"], [-1, 0, 1])]
    properties = _labels(["p"], [0, 1])
    block = metatensor.TensorBlock(
        rng.normal(size=(n, 3, 2)).astype(dtype), samples, components, properties
    )
    per_sample = np.arange(n) % 3
    sample = np.repeat(np.arange(n), per_sample)
    atom = np.concatenate([np.arange(k) for k in per_sample]) if n else sample
    xyz = [_labels([name], [0, 1, 2]) for name in ("xyz", "xyz_1", "xyz_2")]
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.normal(size=(len(sample), 3, 3, 2)).astype(dtype),
            _labels(["sample", "system", "atom"], np.stack([sample, systems[sample], atom], 1)),
            [xyz[0], *components],
            properties,
        ),
    )
    block.add_gradient(
        "strain",
        metatensor.TensorBlock(
            rng.normal(size=(n, 3, 3, 3, 2)).astype(dtype),
            _labels(["sample"], np.arange(n)),
            [xyz[1], xyz[2], *components],
            properties,
        ),
    )
    return block


def _tensor(blocks: dict[int, metatensor.TensorBlock]) -> metatensor.TensorMap:
    return metatensor.TensorMap(_labels(["k"], list(blocks)), list(blocks.values()))


def _join(batches: list[metatensor.TensorMap]) -> metatensor.TensorMap:
    return metatensor.join(batches, axis="samples", different_keys="union")


def _empty() -> metatensor.TensorMap:
    """A map without blocks."""
    return metatensor.TensorMap(_labels(["k"], []), [])


def test_convert_renumbers_past_sources_without_samples(tmp_path):
    """A source without blocks, or whose blocks have no rows, between others: the
    sources after it are still numbered past every source before it."""
    sources = [
        _tensor({0: _block(0, [0, 1, 1]), 1: _block(1, [0])}),
        _empty(),
        _tensor({1: _block(2, [0, 0, 1])}),
        _tensor({0: _block(3, []), 2: _block(4, [])}),
        _tensor({0: _block(5, [0, 2]), 2: _block(6, [1])}),
    ]
    paths = []
    for i, tensor in enumerate(sources):
        paths.append(str(tmp_path / f"{i}.mts"))
        metatensor.save(paths[-1], tensor)
    out = tmp_path / "all.zarr"
    assert main(["convert", *paths, str(out), "--append", "--renumber", "system", "-q"]) == 0
    expected = [sources[0], shifted(sources[2], 2), sources[3], shifted(sources[4], 4)]
    assert_equal_to_metatensor(mtd.open_zarr(out).compute(), _join(expected))
