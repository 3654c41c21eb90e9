"""Maps with gradients of gradients through ``drop_blocks``/``filter_blocks`` and the
dimension manipulations: with ``copy=True`` the blocks are kept whole, as metatensor
keeps them; relabelling keeps the gradients of gradients, which metatensor-operations
0.5.0 drops silently (docs/differences.md)."""

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def _labels(module, names, values):
    return module.Labels(names, np.array(values, dtype=np.int32).reshape(-1, len(names)))


def _tensor(module):
    """Two blocks, each with a ``positions`` gradient that has one of its own."""
    rng = np.random.default_rng(4)
    properties = _labels(module, ["p"], [[0], [1]])
    xyz = _labels(module, ["xyz"], [[0], [1], [2]])
    blocks = []
    for n_samples in (3, 2):
        block = module.TensorBlock(
            rng.uniform(size=(n_samples, 2)),
            _labels(module, ["system", "atom"], [[0, i] for i in range(n_samples)]),
            [],
            properties,
        )
        gradient = module.TensorBlock(
            rng.uniform(size=(n_samples, 3, 2)),
            _labels(module, ["sample", "atom"], [[i, i] for i in range(n_samples)]),
            [xyz],
            properties,
        )
        gradient.add_gradient(
            "positions",
            module.TensorBlock(
                rng.uniform(size=(2, 3, 3, 2)),
                _labels(module, ["sample"], [[0], [n_samples - 1]]),
                [_labels(module, ["xyz_2"], [[0], [1], [2]]), xyz],
                properties,
            ),
        )
        block.add_gradient("positions", gradient)
        blocks.append(block)
    return module.TensorMap(_labels(module, ["k"], [[0], [1]]), blocks)


@pytest.mark.parametrize("function", ["drop_blocks", "filter_blocks"])
def test_copied_blocks_keep_their_gradients_of_gradients(function):
    def chosen(module, copy):
        keys = _labels(module, ["k"], [[1]])
        return getattr(module, function)(_tensor(module), keys, copy=copy)

    assert_equal_to_metatensor(chosen(mtd, True), chosen(metatensor, True))
    for module in (metatensor, mtd):
        with pytest.raises(NotImplementedError, match="gradients of gradients"):
            chosen(module, False)


RELABELLINGS = {
    "rename": lambda m, t: m.rename_dimension(t, "samples", "atom", "center"),
    "insert": lambda m, t: m.insert_dimension(t, "keys", 0, "new", 3),
    "append": lambda m, t: m.append_dimension(t, "properties", "new", 1),
    "permute": lambda m, t: m.permute_dimensions(t, "samples", [1, 0]),
    "remove": lambda m, t: m.remove_dimension(t, "samples", "system"),
}


@pytest.mark.parametrize("name", RELABELLINGS)
def test_relabelling_keeps_gradients_of_gradients(name):
    relabel = RELABELLINGS[name]
    ours = relabel(mtd, _tensor(mtd))
    theirs = relabel(metatensor, _tensor(metatensor))
    for mine, other, original in zip(
        ours.blocks(), theirs.blocks(), _tensor(mtd).blocks(), strict=True
    ):
        assert mine.values.shape == other.values.shape
        np.testing.assert_array_equal(mine.values.compute(), other.values)
        assert mine.properties == mtd.Labels(other.properties.names, other.properties.values)
        gradient = mine.gradient("positions")
        np.testing.assert_array_equal(gradient.values.compute(), other.gradient("positions").values)
        # metatensor drops the gradient's own gradient; relabelling must not
        assert other.gradient("positions").gradients_list() == []
        nested = gradient.gradient("positions")
        expected = original.gradient("positions").gradient("positions")
        assert nested.samples == expected.samples
        assert nested.properties == mine.properties
        np.testing.assert_array_equal(nested.values.compute(), expected.values.compute())
