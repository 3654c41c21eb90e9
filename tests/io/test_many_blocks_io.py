"""Files of maps of many tiny blocks: the cost of writing, saving and opening them must
not grow faster than the number of blocks. Calls are counted, not timed."""

from __future__ import annotations

import metatensor
import numpy as np
import pytest
from dask.highlevelgraph import Layer

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def tiny(n_blocks: int) -> metatensor.TensorMap:
    """``n_blocks`` blocks of 4 samples, 2 properties and a gradient of 2 rows per sample."""
    rng = np.random.default_rng(n_blocks)
    samples = metatensor.Labels.range("s", 4)
    properties = metatensor.Labels.range("p", 2)
    rows = np.stack([np.repeat(np.arange(4), 2), np.tile([0, 1], 4)], axis=1)
    gradient_samples = metatensor.Labels(["sample", "atom"], rows.astype(np.int32))
    blocks = []
    for _ in range(n_blocks):
        block = metatensor.TensorBlock(rng.random((4, 2)), samples, [], properties)
        block.add_gradient(
            "positions",
            metatensor.TensorBlock(
                rng.random((8, 3, 2)),
                gradient_samples,
                [metatensor.Labels.range("xyz", 3)],
                properties,
            ),
        )
        blocks.append(block)
    return metatensor.TensorMap(metatensor.Labels.range("k", n_blocks), blocks)


@pytest.fixture
def culled_layers(monkeypatch):
    """The number of graph layers dask culls, by layer (each cull of a layer copies the
    set of keys still needed: one layer per array made writes quadratic in blocks)."""
    calls = []
    cull = Layer.cull

    def counting(self, *args, **kwargs):
        calls.append(self)
        return cull(self, *args, **kwargs)

    monkeypatch.setattr(Layer, "cull", counting)
    return calls


@pytest.mark.parametrize("operation", ["copy", "multiply"])
def test_writing_culls_one_flat_graph(tmp_path, culled_layers, operation):
    theirs = tiny(30)
    tensor = mtd.from_metatensor(theirs)
    if operation == "multiply":  # grouped tiny blocks, sharing their group's tasks
        tensor = mtd.multiply(tensor, tensor)
        theirs = metatensor.multiply(theirs, theirs)
    tensor.to_zarr(tmp_path / "t.zarr")
    assert len(culled_layers) <= 1
    mtd.save(tmp_path / "t.mts", tensor)
    assert len(culled_layers) <= 2
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "t.zarr"), theirs)
    assert_equal_to_metatensor(mtd.load(tmp_path / "t.mts"), theirs)
