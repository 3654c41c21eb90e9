"""``keys_to_properties`` given the entries to move, when a merged block lacks some of
them: each output block must be as wide as the entries given, the missing columns
filled, whether the blocks are tiny (grouped tasks) or chunked."""

import dask.array as da
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def _labels(module, names, values):
    return module.Labels(names, np.array(values, dtype=np.int32).reshape(-1, len(names)))


def _tensor(module, keys, rows_per_chunk=None):
    """Blocks of keys ``(a, b)``, two properties, a ``positions`` gradient."""
    blocks = []
    for i, n_samples in enumerate([2, 3, 4][: len(keys)]):
        values = np.arange(n_samples * 2, dtype=np.float64).reshape(n_samples, 2) + 10 * i
        gradient_values = -values[:, None, :].repeat(3, axis=1)
        if module is mtd and rows_per_chunk is not None:
            values = da.from_array(values, chunks=(rows_per_chunk, 2))
            gradient_values = da.from_array(gradient_values, chunks=(rows_per_chunk, 3, 2))
        properties = _labels(module, ["p"], [[0], [1]])
        block = module.TensorBlock(
            values, _labels(module, ["s"], [[j] for j in range(n_samples)]), [], properties
        )
        block.add_gradient(
            "positions",
            module.TensorBlock(
                gradient_values,
                _labels(module, ["sample", "atom"], [[j, 0] for j in range(n_samples)]),
                [_labels(module, ["xyz"], [[0], [1], [2]])],
                properties,
            ),
        )
        blocks.append(block)
    return module.TensorMap(_labels(module, ["a", "b"], keys), blocks)


# blocks whose other keys differ: an output block holds one of them only
KEYS = [[[0, 1], [1, 2]], [[0, 1], [1, 2], [1, 1]], [[0, 2], [1, 1]]]
SELECTIONS = [[[1], [2]], [[2], [1]], [[1], [2], [3]], [[2], [5]]]


@pytest.mark.parametrize("rows_per_chunk", [None, 1])
@pytest.mark.parametrize("selection", SELECTIONS)
@pytest.mark.parametrize("keys", KEYS)
def test_entries_that_some_blocks_lack_are_filled(keys, selection, rows_per_chunk):
    ours = _tensor(mtd, keys, rows_per_chunk).keys_to_properties(
        _labels(mtd, ["b"], selection), fill_value=-7.0
    )
    theirs = _tensor(metatensor, keys).keys_to_properties(
        _labels(metatensor, ["b"], selection), fill_value=-7.0
    )
    assert_equal_to_metatensor(ours, theirs)
