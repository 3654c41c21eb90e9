"""``solve``: solution of the square systems ``X @ w = Y`` per block."""

from __future__ import annotations

import numpy as np

from ..block import TensorBlock
from ..tensor import TensorMap
from ._chunkwise import combine_rows
from ._lstsq import _flat_rows, linalg_dtype, stacked_equations
from ._utils import (
    blocks_by_key,
    check_same_gradients_raise,
    check_same_keys_raise,
    check_tensor,
    grouped,
)

__all__ = ["solve"]


def _solve_weights(*arrays: np.ndarray, n_x: int) -> np.ndarray:
    return np.linalg.solve(_flat_rows(arrays[:n_x]), _flat_rows(arrays[n_x:])).T


def _solve_block(X: TensorBlock, Y: TensorBlock) -> TensorBlock:
    if X.samples != Y.samples:
        raise ValueError("X and Y blocks in `solve` should have the same samples in the same order")
    for x_component, y_component in zip(X.components, Y.components, strict=True):
        if x_component != y_component:
            raise ValueError(
                "X and Y blocks in `solve` should have the same components                 "
                "in the same order"
            )
    check_same_gradients_raise(X, Y, "solve")
    xs, ys = stacked_equations(X, Y)
    shape = (len(Y.properties), len(X.properties))
    dtype = linalg_dtype(X, Y)
    weights = combine_rows(_solve_weights, [*xs, *ys], shape, dtype, {"n_x": len(xs)})
    return TensorBlock._trusted(weights, Y.properties, [], X.properties)


def solve(X: TensorMap, Y: TensorMap) -> TensorMap:
    r"""The solution :math:`w` of :math:`X w = Y` for each pair of blocks.

    Every block of ``X`` must hold a square 2-D array of values. As in
    :func:`lstsq`, gradient rows are appended as extra equations (so a block of ``X``
    with gradients is no longer square: numpy then raises), and the result block has
    values :math:`w^T`, the properties of ``Y`` as samples and those of ``X`` as
    properties. All the rows of a block are gathered into one task; blocks of tiny
    single-chunk arrays are solved by a few grouped tasks for the whole map.

    Parameters
    ----------
    X, Y
        Maps with the same keys; blocks with the same samples, components and gradients.

    Returns
    -------
    TensorMap
        The solutions, with the keys of ``X``, in numpy's dtype for ``X`` and ``Y``
        (float64 for integers and bools).

    Raises
    ------
    ValueError
        If a block of ``X`` is not square 2-D, or samples/components differ.
    NotEqualError
        If keys or gradients differ.
    TypeError
        numpy's, for float16 values, which its linear algebra refuses.
    """
    check_tensor(X, "X")
    check_tensor(Y, "Y")
    check_same_keys_raise(X, Y, "solve")
    for block in X.blocks():
        shape = block.shape
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError("the values in each block of X should be a square 2D array")
    return grouped(
        X.keys,
        lambda: [_solve_block(x, y) for x, y in zip(X.blocks(), blocks_by_key(X, Y), strict=True)],
    )
