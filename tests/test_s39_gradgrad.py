"""Gradients of gradients and unusual block shapes through the operations.

``equal``, ``allclose`` and ``equal_metadata`` compared the gradients of two blocks,
but not the gradients of those gradients: maps that differ only there were told
equal (as metatensor-operations 0.5.0 tells them, docs/differences.md).
"""

import numpy as np
import pytest

import metatensor_dask as mtd


def _labels(names, values):
    return mtd.Labels(names, np.array(values, dtype=np.int32).reshape(-1, len(names)))


def _tensor(second=1.0, second_atoms=(0, 1), nested=True):
    """One block whose ``positions`` gradient has a ``positions`` gradient of its own;
    ``second`` scales the values of the latter, ``second_atoms`` are its atoms."""
    properties = _labels(["p"], [[0], [1]])
    xyz = _labels(["xyz"], [[0], [1], [2]])
    values = np.arange(4.0).reshape(2, 2)
    block = mtd.TensorBlock(values, _labels(["system", "atom"], [[0, 0], [0, 1]]), [], properties)
    gradient = mtd.TensorBlock(
        np.arange(12.0).reshape(2, 3, 2),
        _labels(["sample", "system", "atom"], [[0, 0, 0], [1, 0, 1]]),
        [xyz],
        properties,
    )
    if nested:
        rows = [[i, 0, atom] for i, atom in enumerate(second_atoms)]
        gradient.add_gradient(
            "positions",
            mtd.TensorBlock(
                second * np.arange(1.0, 37.0).reshape(2, 3, 3, 2),
                _labels(["sample", "system", "atom"], rows),
                [_labels(["xyz_2"], [[0], [1], [2]]), xyz],
                properties,
            ),
        )
    block.add_gradient("positions", gradient)
    return mtd.TensorMap(_labels(["k"], [[0]]), [block])


DIFFERENT = {
    "values": lambda: _tensor(second=2.0),
    "samples": lambda: _tensor(second_atoms=(0, 2)),
    "missing": lambda: _tensor(nested=False),
}


@pytest.mark.parametrize("kind", DIFFERENT)
def test_maps_differing_in_gradients_of_gradients_are_not_equal(kind):
    first, second = _tensor(), DIFFERENT[kind]()
    assert mtd.equal(first, _tensor())
    assert not mtd.equal(first, second)
    assert first != second
    assert first.block(0) != second.block(0)
    assert not mtd.allclose(first, second)
    assert not mtd.equal_block(first.block(0), second.block(0))
    assert not mtd.allclose_block(first.block(0), second.block(0))
    with pytest.raises(mtd.NotEqualError, match="'positions"):
        mtd.equal_raise(first, second)
    with pytest.raises(mtd.NotEqualError, match="'positions"):
        mtd.allclose_block_raise(first.block(0), second.block(0))
    assert mtd.equal_metadata(first, second) == (kind == "values")
    assert mtd.equal_metadata(first, second, check_gradients=False)


def test_unequal_gradients_of_gradients_are_named_by_their_path():
    with pytest.raises(mtd.NotEqualError, match="gradient 'positions/positions' values are"):
        mtd.equal_raise(_tensor(), _tensor(second=2.0))
    with pytest.raises(mtd.NotEqualError, match="gradient 'positions/positions' samples"):
        mtd.equal_metadata_raise(_tensor(), _tensor(second_atoms=(0, 2)))
    with pytest.raises(mtd.NotEqualError, match="gradient parameters in 'positions'"):
        mtd.equal_metadata_block_raise(_tensor().block(0), _tensor(nested=False).block(0))
