import metatensor
import numpy as np
from oracle import lazily, tutorial

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def _transposed(theirs):
    """A map whose numpy values are not C-contiguous."""
    blocks = []
    for block in theirs.blocks():
        values = np.asfortranarray(block.values)
        blocks.append(
            metatensor.TensorBlock(values, block.samples, block.components, block.properties)
        )
    return metatensor.TensorMap(theirs.keys, blocks)


def test_computed_tensors_as_metatensor():
    theirs, _ = tutorial()
    fortran = _transposed(metatensor.remove_gradients(theirs))
    ours = mtd.TensorMap(
        mtd.from_metatensor(fortran).keys,
        [
            mtd.TensorBlock(
                np.asfortranarray(b.values),
                mtd.from_metatensor(b).samples,
                mtd.from_metatensor(b).components,
                mtd.from_metatensor(b).properties,
            )
            for b in fortran.blocks()
        ],
    )
    assert mtd.is_contiguous(ours) == metatensor.is_contiguous(fortran)
    largest = max(range(len(ours)), key=lambda i: len(ours.block(i).samples))
    assert not mtd.is_contiguous_block(ours.block(largest))
    assert not mtd.is_contiguous(ours)
    contiguous = mtd.make_contiguous(ours)
    assert mtd.is_contiguous(contiguous) == metatensor.is_contiguous(
        metatensor.make_contiguous(fortran)
    )
    assert_equal_to_metatensor(contiguous, fortran)


def test_lazy_tensors():
    theirs, ours = tutorial()
    result = lazily(mtd.make_contiguous, ours)
    assert mtd.is_contiguous(result)
    assert mtd.is_contiguous_block(lazily(mtd.make_contiguous_block, ours.block(0)))
    assert not mtd.is_contiguous(ours)  # unknown until computed
    computed = result.compute()
    assert all(a.flags["C_CONTIGUOUS"] for a in computed._arrays())
    assert_equal_to_metatensor(result, theirs)
