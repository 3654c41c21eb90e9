"""``to_zarr(chunks=<size>)`` of wide blocks whose gradient rows are not grouped by
sample (no row pointer, so not co-partitioned): the gradient is stored in as many
chunks as its values, as the documentation of ``to_zarr`` says, rather than in chunks
of the ``chunk-size`` setting that ignore the size asked for."""

from __future__ import annotations

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

PROPERTIES = 4000
"""A value row is 31 KiB, a gradient row of three components 94 KiB."""


def _labels(names: list[str], values) -> metatensor.Labels:
    return metatensor.Labels(names, np.asarray(values, dtype=np.int32).reshape(-1, len(names)))


def _shuffled_map(n_samples: int) -> metatensor.TensorMap:
    """One block of ``n_samples`` samples and a ``positions`` gradient of two rows per
    sample, in random order (not grouped by sample)."""
    rng = np.random.default_rng(n_samples)
    samples = _labels(["system"], np.arange(n_samples))
    properties = _labels(["p"], np.arange(PROPERTIES))
    block = metatensor.TensorBlock(
        rng.normal(size=(n_samples, PROPERTIES)), samples, [], properties
    )
    rows = np.array([(s, a) for s in range(n_samples) for a in range(2)])
    order = rng.permutation(len(rows))
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.normal(size=(len(rows), 3, PROPERTIES)),
            _labels(["sample", "atom"], rows[order]),
            [_labels(["xyz"], np.arange(3))],
            properties,
        ),
    )
    return metatensor.TensorMap(_labels(["k"], [0]), [block])


@pytest.mark.parametrize(("n_samples", "chunks"), [(6, "64KiB"), (13, "256KiB"), (9, 2)])
def test_an_ungrouped_gradient_gets_as_many_chunks_as_its_values(tmp_path, n_samples, chunks):
    theirs = _shuffled_map(n_samples)
    path = tmp_path / "wide.zarr"
    # the setting is left at its default: only the `chunks` argument asks for small chunks
    with dask.config.set({"metatensor_dask.chunk-size": "64MiB"}):
        mtd.from_metatensor(theirs).to_zarr(path, chunks=chunks)
        opened = mtd.open_zarr(path)
    block = opened.block(0)
    gradient = block.gradient("positions").values
    assert len(block.values.chunks[0]) > 1
    assert len(gradient.chunks[0]) == len(block.values.chunks[0])
    assert_equal_to_metatensor(opened, theirs)
