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
