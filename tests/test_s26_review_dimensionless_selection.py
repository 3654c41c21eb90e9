"""A selection without dimensions compares no dimension: every entry matches it, as in
metatensor, whether it has rows or not (``Labels.select``, ``slice``,
``drop_blocks``)."""

from __future__ import annotations

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd


def _tensor(module):
    blocks = [
        module.TensorBlock(
            np.arange(8.0).reshape(4, 2) + key,
            module.Labels(["s", "t"], np.array([[0, 1], [2, 0], [1, 1], [3, 5]], np.int32)),
            [],
            module.Labels.range("p", 2),
        )
        for key in range(3)
    ]
    keys = module.Labels(["k", "j"], np.array([[0, 4], [1, 2], [2, 0]], np.int32))
    return module.TensorMap(keys, blocks)


def _answers(module, rows: int) -> list:
    tensor = _tensor(module)
    selection = module.Labels([], np.zeros((rows, 0), np.int32))
    sliced = module.slice(tensor, "samples", selection)
    return [
        tensor.keys.select(selection).tolist(),
        tensor.block(1).samples.select(selection).tolist(),
        [block.values.shape for block in sliced.blocks()],
        module.drop_blocks(tensor, selection).keys.values.tolist(),
    ]


@pytest.mark.parametrize("rows", [0, 1])
def test_a_selection_without_dimensions_selects_every_entry(rows):
    assert _answers(mtd, rows) == _answers(metatensor, rows)
