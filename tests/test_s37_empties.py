"""Arrays of no entries (empty along every axis) through the writers.

A block with samples and no properties whose gradient has no rows holds a gradient of
shape (0, 0). Opened with chunks of 1 row, the gradient takes one empty chunk per chunk
of its values (``(0, 0, 0)``); dask leaves such an array in its own chunks when asked
for one chunk, so writing it refused the chunks as not coinciding with the stored ones.
"""

from __future__ import annotations

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd


def _labels(names: list[str], rows: list[list[int]]) -> metatensor.Labels:
    return metatensor.Labels(names, np.array(rows, dtype=np.int32).reshape(-1, len(names)))


def _tensor() -> metatensor.TensorMap:
    """An ordinary block, and one with 3 samples, no properties, and a gradient of no
    rows and no components."""
    blocks = []
    for properties in ([[0], [1]], []):
        samples = _labels(["system"], [[0], [1], [2]])
        props = _labels(["n"], properties)
        values = np.arange(3.0 * len(properties)).reshape(3, len(properties))
        block = metatensor.TensorBlock(values, samples, [], props)
        rows = [[0], [2]] if properties else []
        gradient = np.ones((len(rows), len(properties)))
        block.add_gradient(
            "alpha", metatensor.TensorBlock(gradient, _labels(["sample"], rows), [], props)
        )
        blocks.append(block)
    return metatensor.TensorMap(_labels(["k"], [[0], [1]]), blocks)


@pytest.mark.parametrize("chunks", [None, 2, "64B"])
def test_an_opened_empty_gradient_is_written_again(tmp_path, chunks):
    expected = _tensor()
    mtd.to_zarr(mtd.from_metatensor(expected), tmp_path / "a.zarr")
    opened = mtd.open_zarr(tmp_path / "a.zarr", chunks=1)
    assert len(opened.block(1).gradient("alpha").values.chunks[0]) == 3

    mtd.to_zarr(opened, tmp_path / "b.zarr", chunks=chunks)

    assert mtd.verify(tmp_path / "b.zarr").ok
    written = mtd.to_metatensor(mtd.open_zarr(tmp_path / "b.zarr"))
    assert written.block(1).gradient("alpha").values.shape == (0, 0)
    metatensor.equal_raise(written, expected)
