"""``sort`` of blocks without samples, without properties, or whose gradient has no
rows, where metatensor-operations 0.5.0 leaves them unsorted or fails: the expected
result is metatensor's sort of the same block with one more entry, removed after."""

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

HIGH, LOW = 2**31 - 1, -(2**31)


def _labels(names, rows):
    return metatensor.Labels(names, np.array(rows, dtype=np.int32).reshape(-1, len(names)))


def _map(samples, properties, gradient_rows):
    """One block with a component ``c = [1, 0]`` and a ``"positions"`` gradient."""
    component = _labels(["c"], [[1], [0]])
    values = np.arange(len(samples) * 2 * len(properties), dtype=np.float64)
    block = metatensor.TensorBlock(
        values.reshape(len(samples), 2, len(properties)),
        _labels(["s"], samples),
        [component],
        _labels(["p"], properties),
    )
    gradient = np.arange(len(gradient_rows) * 2 * len(properties), dtype=np.float64) + 0.5
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            gradient.reshape(len(gradient_rows), 2, len(properties)),
            _labels(["sample", "g"], gradient_rows),
            [component],
            _labels(["p"], properties),
        ),
    )
    return metatensor.TensorMap(_labels(["k"], [[0]]), [block])


# (the map, a map with one more entry, its axis and the entry, removed after the sort)
CASES = {
    "no samples": (
        _map([], [[3], [HIGH], [LOW]], []),
        _map([[7]], [[3], [HIGH], [LOW]], [[0, LOW]]),
        "samples",
        [7],
    ),
    "no properties": (
        _map([[5], [LOW], [HIGH]], [], [[2, 1], [0, 0]]),
        _map([[5], [LOW], [HIGH]], [[0]], [[2, 1], [0, 0]]),
        "properties",
        [0],
    ),
    "gradient without rows": (
        _map([[5], [LOW], [HIGH]], [[1], [0]], []),
        _map([[5], [LOW], [HIGH], [9]], [[1], [0]], [[3, 0]]),
        "samples",
        [9],
    ),
}


def _without(tensor, axis, removed):
    """``tensor`` without the entry ``removed`` of ``axis`` (in its order)."""
    block = tensor.block(0)
    labels = block.samples if axis == "samples" else block.properties
    kept = [i for i, entry in enumerate(labels) if list(entry.values) != removed]
    blocks = [metatensor.slice_block(block, axis, kept)]
    return metatensor.TensorMap(tensor.keys, blocks)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("descending", [False, True])
def test_sort_of_blocks_without_entries_is_metatensors_with_one_more(case, descending):
    tensor, larger, axis, removed = CASES[case]
    expected = _without(metatensor.sort(larger, descending=descending), axis, removed)
    ours = mtd.sort(mtd.from_metatensor(tensor), descending=descending)
    assert_equal_to_metatensor(ours, expected)
