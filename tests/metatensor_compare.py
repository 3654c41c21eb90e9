"""Helpers that run the same code with metatensor-core and metatensor-dask and compare."""

import metatensor
import numpy as np

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


def assert_same_error(build):
    """Both raise, with the same exception type name and the same message."""
    theirs, ours = run_both(build)
    assert isinstance(theirs, Exception), f"metatensor did not raise: {theirs!r}"
    assert isinstance(ours, Exception), f"mtd did not raise: {ours!r}"
    assert type(ours).__name__ == type(theirs).__name__, (ours, theirs)
    assert str(ours) == str(theirs)


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
