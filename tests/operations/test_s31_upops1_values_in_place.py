"""Writing a block's values or gradients in place (metatensor's
``block.values[:] += x``) is refused with a ``TypeError`` naming the remedy, and
changes nothing: dask would replace the graph of that one array object only, so that
the operations reading the map's other holders of the same values (copies, groups of
tiny blocks, the numpy rows it was made from) would silently use the old values."""

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd


def _map(n_blocks: int, rows: int) -> metatensor.TensorMap:
    blocks = []
    for _ in range(n_blocks):
        block = metatensor.TensorBlock(
            np.zeros((rows, 2)),
            metatensor.Labels.range("s", rows),
            [],
            metatensor.Labels.range("p", 2),
        )
        block.add_gradient(
            "g",
            metatensor.TensorBlock(
                np.ones((rows, 2)),
                metatensor.Labels.range("sample", rows),
                [],
                metatensor.Labels.range("p", 2),
            ),
        )
        blocks.append(block)
    return metatensor.TensorMap(metatensor.Labels.range("k", n_blocks), blocks)


@pytest.mark.parametrize("shape", [(2, 30), (40, 1)], ids=["blocks", "tiny-blocks"])
def test_writing_values_in_place_raises_and_changes_nothing(shape):
    theirs = _map(*shape)
    tensor = mtd.from_metatensor(theirs)
    copied = mtd.drop_blocks(tensor, mtd.Labels(["k"], np.array([[0]])), copy=True)
    for block in (tensor.block(1), mtd.add(tensor, 1.0).block(0), copied.block(0)):
        with pytest.raises(TypeError, match=r"immutable dask arrays.*build a new block"):
            block.values[:] += 1.0
        with pytest.raises(TypeError, match="immutable"):
            block.gradient("g").values[0] = 5.0
    assert mtd.equal(mtd.multiply(tensor, 1.0), tensor)
    assert metatensor.equal(mtd.to_metatensor(tensor), theirs)
