"""Helpers that run the same code with metatensor-core and metatensor-dask and compare."""

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd


def run_both(build):
    """``build(module)`` with metatensor, then with mtd: ``(theirs, ours)``.

    An exception is returned instead of raised, so that errors can be compared.
    """
    results = []
    for module in (metatensor, mtd):
        try:
            results.append(build(module))
        except Exception as error:  # the comparison is the test
            results.append(error)
    return results


def assert_same_error(ours, theirs):
    """Both calls raise the same exception type name with the same message."""
    with pytest.raises(Exception) as expected:
        theirs()
    with pytest.raises(Exception) as actual:
        ours()
    assert type(actual.value).__name__ == type(expected.value).__name__, (
        actual.value,
        expected.value,
    )
    assert str(actual.value) == str(expected.value), (str(actual.value), str(expected.value))


def assert_same_error_of(build):
    """``build(metatensor)`` and ``build(mtd)`` raise the same error (see above)."""
    assert_same_error(lambda: build(mtd), lambda: build(metatensor))


def assert_same_labels(ours, theirs):
    """Same names, same int32 values in the same order."""
    assert isinstance(ours, mtd.Labels), type(ours)
    assert ours.names == list(theirs.names)
    assert ours.values.dtype == np.int32
    assert ours.values.shape == np.asarray(theirs.values).shape
    np.testing.assert_array_equal(ours.values, np.asarray(theirs.values))


def assert_same_result(build):
    """Both succeed and give the same Labels."""
    theirs, ours = run_both(build)
    for result in (theirs, ours):
        if isinstance(result, Exception):
            raise result
    assert_same_labels(ours, theirs)


def assembled(keys, parts, info=None):
    """A map built with the public constructors from ``parts``: for each block
    ``(values, samples, components, properties, {parameter: gradient block})``."""
    blocks = []
    for values, samples, components, properties, gradients in parts:
        block = mtd.TensorBlock(values, samples, components, properties)
        for parameter, gradient in gradients.items():
            block.add_gradient(parameter, gradient)
        blocks.append(block)
    tensor = mtd.TensorMap(keys, blocks)
    for name, value in (info or {}).items():
        tensor.set_info(name, value)
    return tensor


def with_new_arrays(tensor, new_array):
    """``tensor`` (metatensor's) with each array replaced by ``new_array(array)``.

    Labels stay; ``new_array`` is called for each block's values, then for each of its
    gradients' values, block after block (so that a random generator it draws from
    gives the same map each time).
    """
    blocks = []
    for block in tensor.blocks():
        new = metatensor.TensorBlock(
            new_array(block.values), block.samples, block.components, block.properties
        )
        for parameter, gradient in block.gradients():
            new.add_gradient(
                parameter,
                metatensor.TensorBlock(
                    new_array(gradient.values),
                    gradient.samples,
                    gradient.components,
                    gradient.properties,
                ),
            )
        blocks.append(new)
    return metatensor.TensorMap(tensor.keys, blocks)
