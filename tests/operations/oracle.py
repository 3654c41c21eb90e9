"""Helpers for the tests of Operations I: tutorial data, rechunking, finite differences.

The oracle is metatensor-operations run on the same data (``metatensor.<op>``).
"""

from __future__ import annotations

from collections.abc import Callable

import dask
import dask.array as da
import metatensor
import numpy as np
from metatensor_compare import assembled

import metatensor_dask as mtd
from metatensor_dask._partition import gradient_row_chunks, row_pointer
from metatensor_dask.datasets import tutorial_file


def tutorial(name: str = "spherical-expansion") -> tuple[metatensor.TensorMap, mtd.TensorMap]:
    """A tutorial file loaded by metatensor, and the same data as metatensor-dask."""
    theirs = metatensor.load(tutorial_file(f"{name}.npz"))
    return theirs, mtd.from_metatensor(theirs)


def rechunked(tensor: mtd.TensorMap, rows: int, arbitrary: int | None = None) -> mtd.TensorMap:
    """``tensor`` with ``rows`` value rows per chunk and co-partitioned gradients, or
    gradients in chunks of ``arbitrary`` rows."""
    blocks = []
    for block in tensor.blocks():
        values = da.asarray(block.values).rechunk({0: rows})
        gradients = {}
        for parameter, gradient in block.gradients():
            if arbitrary is None:
                pointer = row_pointer(gradient.samples.column("sample"), len(block))
                chunks = {0: gradient_row_chunks(pointer, values.chunks[0])}
            else:
                chunks = {0: arbitrary}
            gradients[parameter] = mtd.TensorBlock(
                da.asarray(gradient.values).rechunk(chunks),
                gradient.samples,
                gradient.components,
                gradient.properties,
            )
        blocks.append((values, block.samples, block.components, block.properties, gradients))
    return assembled(tensor.keys, blocks)


def shuffled_gradients(tensor: mtd.TensorMap, seed: int = 0) -> mtd.TensorMap:
    """``tensor`` with gradient rows in random order (not grouped by sample)."""
    rng = np.random.default_rng(seed)
    blocks = []
    for block in tensor.blocks():
        gradients = {}
        for parameter, gradient in block.gradients():
            order = rng.permutation(len(gradient.samples))
            gradients[parameter] = mtd.TensorBlock(
                da.asarray(gradient.values)[order].rechunk({0: 5}),
                mtd.Labels(gradient.samples.names, gradient.samples.values[order]),
                gradient.components,
                gradient.properties,
            )
        values = da.asarray(block.values).rechunk({0: 2})
        blocks.append((values, block.samples, block.components, block.properties, gradients))
    return assembled(tensor.keys, blocks)


def _direction_rows(gradient: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Contract the gradient-specific components with ``direction``."""
    extra = direction.ndim - 1
    weights = direction.reshape(*direction.shape, *([1] * (gradient.ndim - 1 - extra)))
    return (weights * gradient).sum(axis=tuple(range(1, 1 + extra)))


def directional_derivative(
    block: mtd.TensorBlock, parameter: str, direction: np.ndarray
) -> np.ndarray:
    """The derivative of the values of a computed ``block`` along ``direction``, a
    vector over (gradient rows x gradient-specific components): each gradient row is
    an independent parameter of the values of its sample."""
    gradient = block.gradient(parameter)
    result = np.zeros(block.values.shape, dtype=np.float64)
    np.add.at(
        result, gradient.samples.column("sample"), _direction_rows(gradient.values, direction)
    )
    return result


def directions(tensor: mtd.TensorMap, parameter: str, seed: int = 1) -> list[np.ndarray]:
    """One random direction per block for :func:`directional_derivative`."""
    rng = np.random.default_rng(seed)
    result = []
    for block in tensor.blocks():
        gradient = block.gradient(parameter)
        extra = len(gradient.components) - len(block.components)
        result.append(rng.uniform(-1, 1, size=gradient.shape[: 1 + extra]))
    return result


def displaced(
    tensor: mtd.TensorMap, parameter: str, direction: list[np.ndarray], eps: float
) -> mtd.TensorMap:
    """``tensor`` with values moved by ``eps`` along ``direction`` (lazy, chunked)."""
    computed = tensor.compute()
    blocks = []
    for block, lazy, u in zip(computed.blocks(), tensor.blocks(), direction, strict=True):
        values = block.values + eps * directional_derivative(block, parameter, u)
        blocks.append(
            (
                da.from_array(values, chunks=lazy.values.chunks),
                block.samples,
                block.components,
                block.properties,
                dict(lazy.gradients()),
            )
        )
    return assembled(tensor.keys, blocks)


def check_finite_differences(
    function: Callable[..., mtd.TensorMap],
    inputs: list[mtd.TensorMap],
    parameter: str,
    differentiable: list[bool] | None = None,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-7,
) -> None:
    """Check the ``parameter`` gradients of ``function(*inputs)`` by central finite
    differences: every input (marked ``differentiable``) is moved along the same random
    direction in parameter space; the change of the output values must match the
    output gradient contracted with that direction."""
    differentiable = differentiable or [True] * len(inputs)
    direction = directions(inputs[0], parameter)
    result = function(*inputs).compute()

    def moved(sign: float) -> list:
        moved_inputs = [
            displaced(t, parameter, direction, sign * eps) if d else t
            for t, d in zip(inputs, differentiable, strict=True)
        ]
        # only the values of the moved results are compared
        return [block.values for block in function(*moved_inputs).blocks()]

    plus, minus = dask.compute(moved(1.0), moved(-1.0))
    for block, up, down, u in zip(result.blocks(), plus, minus, direction, strict=True):
        finite = (up - down) / (2 * eps)
        analytic = directional_derivative(block, parameter, u)
        np.testing.assert_allclose(finite, analytic, rtol=rtol, atol=atol)


def lazily(function: Callable[..., mtd.TensorMap], *args: object) -> mtd.TensorMap:
    """``function(*args)``, asserting that building it computes nothing."""
    from metatensor_dask.testing import raise_if_dask_computes

    with raise_if_dask_computes():
        return function(*args)


def as_metatensor(tensor: mtd.TensorMap) -> metatensor.TensorMap:
    """The metatensor-core copy of a metatensor-dask map (computes it)."""
    return mtd.to_metatensor(tensor)


def assert_matches_oracle(name: str, *args: object) -> None:
    """``mtd.<name>(*args)`` computes nothing when built and equals
    ``metatensor.<name>`` on the metatensor-core copies of the maps among ``args``."""
    from metatensor_dask.testing import assert_equal_to_metatensor

    theirs = [as_metatensor(a) if isinstance(a, mtd.TensorMap) else a for a in args]
    assert_equal_to_metatensor(
        lazily(getattr(mtd, name), *args), getattr(metatensor, name)(*theirs)
    )


def fingerprint(tensor: mtd.TensorMap) -> list[str]:
    """Names of every array of ``tensor``: equal before and after an operation proves
    the operation did not replace the input's arrays."""
    return [a.name for a in tensor._arrays()]
