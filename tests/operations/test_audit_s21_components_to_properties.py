"""``components_to_properties`` on blocks with several components: each value moves to
the property (moved component, old property), other components keep their order.
metatensor-core 0.2.6 mixes up the remaining components when two or more of them
have more than one entry; this follows the math (docs/differences.md)."""

import dask.array as da
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd


def _labels(module, names, values):
    return module.Labels(names, np.array(values, dtype=np.int32).reshape(-1, len(names)))


SIZES = {"a": 2, "b": 3, "c": 2}


def _tensor(module, values, gradient):
    components = [_labels(module, [n], [[i] for i in range(k)]) for n, k in SIZES.items()]
    properties = _labels(module, ["p"], [[0], [5]])
    block = module.TensorBlock(values, _labels(module, ["s"], [[0], [1]]), components, properties)
    block.add_gradient(
        "positions",
        module.TensorBlock(
            gradient,
            _labels(module, ["sample", "atom"], [[0, 0], [1, 0], [1, 1]]),
            [_labels(module, ["xyz"], [[0], [1], [2]]), *components],
            properties,
        ),
    )
    return module.TensorMap(_labels(module, ["k"], [[0]]), [block])


def _arrays(seed=0):
    rng = np.random.default_rng(seed)
    values = rng.uniform(-1, 1, size=(2, *SIZES.values(), 2))
    gradient = rng.uniform(-1, 1, size=(3, 3, *SIZES.values(), 2))
    return values, gradient


def _moved(array, axis):
    """The component at ``axis`` moved before the properties, varying slowest."""
    moved = np.moveaxis(array, axis, -2)
    return moved.reshape(*moved.shape[:-2], -1)


@pytest.mark.parametrize(("name", "axis"), [("a", 1), ("b", 2), ("c", 3)])
@pytest.mark.parametrize("chunks", [None, 1])
def test_each_value_goes_to_its_component_and_property(name, axis, chunks):
    values, gradient = _arrays()
    if chunks is not None:
        values, gradient = da.from_array(values, chunks=1), da.from_array(gradient, chunks=1)
    result = _tensor(mtd, values, gradient).components_to_properties(name).block(0)
    values, gradient = _arrays()
    assert [c.names[0] for c in result.components] == [n for n in SIZES if n != name]
    np.testing.assert_array_equal(
        result.properties.values,
        [[i, p] for i in range(SIZES[name]) for p in (0, 5)],
    )
    np.testing.assert_array_equal(result.values.compute(), _moved(values, axis))
    np.testing.assert_array_equal(
        result.gradient("positions").values.compute(), _moved(gradient, axis + 1)
    )


def test_metatensor_mixes_up_the_remaining_components():
    """The case where metatensor-core 0.2.6 is wrong: the first of three components
    moved, the two others of 3 and 2 entries (if this fails, metatensor was fixed:
    compare with it again and update docs/differences.md)."""
    values, gradient = _arrays()
    theirs = _tensor(metatensor, values, gradient).components_to_properties("a").block(0)
    assert not np.array_equal(theirs.values, _moved(values, 1))
