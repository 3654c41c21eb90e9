"""Joined along properties, a gradient whose rows are grouped by sample keeps one chunk
per values chunk, holding that chunk's rows: also where values chunks have no gradient
rows next to a chunk of one row (dask's concatenation dropped the empty chunks), and
where the joined gradient's rows are not the first block's (it has none)."""

from __future__ import annotations

import dask.array as da
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd

SAMPLES = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.int32)


def _block(module, values, gradient_rows, gradient, first_property, chunked):
    wrap = (lambda a, c: da.from_array(a, chunks=c)) if chunked else (lambda a, c: a)
    properties = module.Labels(["p"], np.array([[first_property], [first_property + 1]], np.int32))
    block = module.TensorBlock(
        wrap(values, (2, 2)), module.Labels(["system", "atom"], SAMPLES), [], properties
    )
    samples = module.Labels(
        ["sample", "system", "atom"], np.array(gradient_rows, np.int32).reshape(-1, 3)
    )
    xyz = module.Labels(["xyz"], np.arange(3, dtype=np.int32)[:, None])
    block.add_gradient(
        "positions",
        module.TensorBlock(wrap(gradient, (len(gradient_rows), 3, 2)), samples, [xyz], properties),
    )
    return block


@pytest.mark.parametrize(
    ("first_rows", "second_rows"),
    [
        ([[3, 1, 1]], [[3, 1, 1]]),
        ([], [[0, 0, 0], [1, 0, 1], [2, 1, 0], [3, 1, 1]]),
    ],
)
def test_joined_gradients_follow_their_values_chunks(first_rows, second_rows):
    rng = np.random.default_rng(5)
    parts = [
        (rng.standard_normal((4, 2)), rows, rng.standard_normal((len(rows), 3, 2)), 2 * i)
        for i, rows in enumerate([first_rows, second_rows])
    ]

    def joined(module, chunked):
        maps = [
            module.TensorMap(
                module.Labels(["k"], np.array([[0]], np.int32)),
                [_block(module, *part, chunked=chunked)],
            )
            for part in parts
        ]
        return module.join(maps, axis="properties")

    ours = joined(mtd, chunked=True).block(0)
    theirs = joined(metatensor, chunked=False).block(0)
    gradient = ours.gradient("positions")
    column = theirs.gradient("positions").samples.column("sample")
    pointer = np.searchsorted(column, np.arange(len(SAMPLES) + 1))
    bounds = np.cumsum([0, *ours.values.chunks[0]])
    assert len(ours.values.chunks[0]) > 1
    assert gradient.values.chunks[0] == tuple(np.diff(pointer[bounds]).tolist())
    np.testing.assert_array_equal(np.asarray(ours.values), theirs.values)
    assert np.array_equal(gradient.samples.values, theirs.gradient("positions").samples.values)
    np.testing.assert_array_equal(np.asarray(gradient.values), theirs.gradient("positions").values)
