"""Test helpers for users and for this package's own tests.

* :func:`raise_if_dask_computes`: a scheduler that raises, to prove laziness;
* :func:`assert_equal_to_metatensor`: compare with metatensor-core's result, values
  and gradients;
* :mod:`metatensor_dask.testing.strategies`: hypothesis strategies of tensors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import dask
import numpy as np

__all__ = ["assert_equal_to_metatensor", "raise_if_dask_computes"]


class DaskComputed(AssertionError):
    """Raised by :func:`raise_if_dask_computes` when something computes."""


@contextlib.contextmanager
def raise_if_dask_computes(max_computes: int = 0) -> Iterator[None]:
    """Fail when dask computes more than ``max_computes`` times inside the block."""
    count = 0

    def scheduler(dsk: Any, keys: Any, **kwargs: Any) -> Any:
        nonlocal count
        count += 1
        if count > max_computes:
            raise DaskComputed(f"dask computed {count} times, expected at most {max_computes}")
        return dask.get(dsk, keys, **kwargs)

    with dask.config.set(scheduler=scheduler):
        yield


def assert_equal_to_metatensor(
    ours: Any, theirs: Any, rtol: float = 0.0, atol: float = 0.0
) -> None:
    """Assert that a metatensor-dask object equals a metatensor-core one.

    Compares keys (in order), every block's labels, values, dtypes and gradients
    (recursively). ``rtol``/``atol`` of 0 ask for bit-identical values.
    """
    import metatensor

    from ..block import TensorBlock
    from ..io.convert import to_metatensor
    from ..labels import Labels
    from ..tensor import TensorMap

    if isinstance(ours, Labels):
        assert isinstance(theirs, metatensor.Labels)
        assert ours.names == list(theirs.names), (ours.names, theirs.names)
        np.testing.assert_array_equal(ours.values, np.asarray(theirs.values))
        return
    assert isinstance(ours, (TensorBlock, TensorMap)), type(ours)
    converted = to_metatensor(ours)
    if isinstance(ours, TensorMap):
        assert converted.keys == theirs.keys, "keys differ"
        assert converted.info() == theirs.info(), "info differs"
        pairs: Iterator[tuple[Any, Any]] = zip(converted.blocks(), theirs.blocks(), strict=True)
    else:
        pairs = iter([(converted, theirs)])
    for mine, other in pairs:
        _assert_blocks(mine, other, rtol, atol)


def _assert_blocks(mine: Any, other: Any, rtol: float, atol: float) -> None:
    assert mine.samples == other.samples, "samples differ"
    assert len(mine.components) == len(other.components), "components differ"
    for a, b in zip(mine.components, other.components, strict=True):
        assert a == b, "components differ"
    assert mine.properties == other.properties, "properties differ"
    assert mine.values.dtype == other.values.dtype, (mine.values.dtype, other.values.dtype)
    if rtol == 0 and atol == 0:
        np.testing.assert_array_equal(mine.values, other.values)
    else:
        np.testing.assert_allclose(mine.values, other.values, rtol=rtol, atol=atol)
    assert sorted(mine.gradients_list()) == sorted(other.gradients_list()), "gradients differ"
    for parameter in mine.gradients_list():
        _assert_blocks(mine.gradient(parameter), other.gradient(parameter), rtol, atol)
