"""Labels without dimensions: metatensor-core counts no entry in them, so that a map or
block holding such Labels with rows is refused there; here too, with a clear error,
rather than a map that metatensor can not represent."""

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd


def _labels(module, names, values):
    return module.Labels(names, np.array(values, dtype=np.int32).reshape(-1, len(names)))


def _tensor(module):
    blocks = []
    for i in range(3):
        block = module.TensorBlock(
            np.full((2, 3), float(i)),
            _labels(module, ["s"], [[0], [1]]),
            [],
            _labels(module, ["p"], [[0], [1], [2]]),
        )
        blocks.append(block)
    return module.TensorMap(_labels(module, ["k"], [[0], [1], [2]]), blocks)


@pytest.mark.parametrize(("axis", "name"), [("keys", "k"), ("samples", "s"), ("properties", "p")])
def test_removing_the_only_dimension_of_labels_with_entries_raises(axis, name):
    with pytest.raises(metatensor.MetatensorError):
        metatensor.remove_dimension(_tensor(metatensor), axis, name)
    with pytest.raises(mtd.MetatensorError, match=f"can not remove '{name}', the only dim"):
        mtd.remove_dimension(_tensor(mtd), axis, name)


def test_removing_the_only_dimension_of_empty_labels_is_allowed():
    def emptied(module):
        tensor = module.slice(_tensor(module), "samples", _labels(module, ["s"], [[9]]))
        return module.remove_dimension(tensor, "samples", "s")

    theirs, ours = emptied(metatensor), emptied(mtd)
    assert ours.block(0).samples.names == list(theirs.block(0).samples.names) == []
    assert ours.block(0).values.shape == theirs.block(0).values.shape == (0, 3)


@pytest.mark.parametrize("module", [metatensor, mtd])
def test_a_map_refuses_keys_without_dimensions_with_rows(module):
    blocks = _tensor(module).blocks()
    keys = module.Labels([], np.zeros((3, 0), dtype=np.int32))
    with pytest.raises(module.MetatensorError, match=r"entries in the keys \(0\)"):
        module.TensorMap(keys, [block.copy() for block in blocks])


@pytest.mark.parametrize("module", [metatensor, mtd])
@pytest.mark.parametrize("axis", ["sample", "property"])
def test_a_block_refuses_samples_or_properties_without_dimensions(module, axis):
    empty = module.Labels([], np.zeros((2, 0), dtype=np.int32))
    full = _labels(module, ["a"], [[0], [1]])
    samples, properties = (empty, full) if axis == "sample" else (full, empty)
    with pytest.raises(module.MetatensorError, match=f"but we have 0 {axis} label entries"):
        module.TensorBlock(np.zeros((2, 2)), samples, [], properties)
