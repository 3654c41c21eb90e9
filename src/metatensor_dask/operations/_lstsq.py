"""``lstsq``: least-squares solution of ``X @ w = Y`` per block, gradients as equations."""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from ..block import TensorBlock
from ..tensor import TensorMap
from ._chunkwise import combine_rows, is_lazy
from ._grouping import tiny_groups
from ._manipulation_utils import as_dask
from ._qr_tree import flat_rows, lstsq_by_columns, lstsq_by_factors
from ._utils import (
    blocks_by_key,
    check_blocks_raise,
    check_same_gradients_raise,
    check_same_keys_raise,
    check_tensor,
    grouped,
)

__all__ = ["lstsq"]


def stacked_equations(X: TensorBlock, Y: TensorBlock) -> tuple[list, list]:
    """The values of ``X`` and ``Y``, then each of their gradients, as lists of arrays
    whose rows are equations (in metatensor's order)."""
    xs, ys = [X.values], [Y.values]
    for parameter, gradient in X.gradients():
        xs.append(gradient.values)
        ys.append(Y.gradient(parameter).values)
    return xs, ys


def _flat_rows(arrays: tuple[np.ndarray, ...]) -> np.ndarray:
    """The rows of ``arrays``, each flattened to its last axis, one after the other."""
    flat = [flat_rows(a) for a in arrays]
    return flat[0] if len(flat) == 1 else np.concatenate(flat, axis=0)


def linalg_dtype(X: TensorBlock, Y: TensorBlock) -> np.dtype:
    """The dtype of numpy's solutions of ``X @ w = Y``: float64 for integers and bools,
    the wider of the two inexact dtypes otherwise.

    Raises
    ------
    TypeError
        numpy's, for the dtypes its linear algebra refuses (float16).
    """
    x, y = np.ones((1, 1), X.dtype), np.ones((1, 1), Y.dtype)
    return np.linalg.solve(x, y).dtype


def _lstsq_weights(*arrays: np.ndarray, n_x: int, rcond: float | None) -> np.ndarray:
    x = _flat_rows(arrays[:n_x])
    y = _flat_rows(arrays[n_x:])
    return lstsq_by_columns(x, y, rcond).T


def _in_one_task(xs: list, ys: list) -> bool:
    """Whether the equations are solved by one task holding all their rows: computed
    arrays, tiny single chunks (grouped for the whole map), or values in one chunk
    each without gradients."""
    arrays = [*xs, *ys]
    if not any(is_lazy(a) for a in arrays):
        return True
    if tiny_groups([as_dask(a) for a in arrays]) is not None:
        return True
    return len(xs) == 1 and all(not is_lazy(a) or a.numblocks[0] == 1 for a in arrays)


def _lstsq_block(X: TensorBlock, Y: TensorBlock, rcond: float | None) -> TensorBlock:
    check_blocks_raise(X, Y, "lstsq", check=["samples", "components"])
    check_same_gradients_raise(X, Y, "lstsq", check=["samples", "components"])
    xs, ys = stacked_equations(X, Y)
    shape = (len(Y.properties), len(X.properties))
    dtype = linalg_dtype(X, Y)
    if _in_one_task(xs, ys):
        weights = combine_rows(
            _lstsq_weights, [*xs, *ys], shape, dtype, {"n_x": len(xs), "rcond": rcond}
        )
    else:
        weights = lstsq_by_factors(xs, ys, dtype, rcond)
    return TensorBlock._trusted(weights, Y.properties, [], X.properties)


def lstsq(X: TensorMap, Y: TensorMap, rcond: float | None, driver: str | None = None) -> TensorMap:
    r"""The weights :math:`w` minimising :math:`\|X w - Y\|^2` for each pair of blocks.

    Values are flattened to ``(-1, n_properties)``; the gradient rows of ``X`` and
    ``Y`` are appended as extra equations (a fit to values and gradients). The result
    block for each key has values :math:`w^T`, the properties of ``Y`` as samples, no
    components, the properties of ``X`` as properties and no gradients.

    The rows of a block in several chunks (or with gradients) are never gathered: each
    chunk is reduced to the rows ``[R | Q^H Y]`` of the QR factorisation ``X = Q R`` of
    its rows, those are stacked and factorised again a few at a time, and the
    small system of the last factors is solved by numpy's ``lstsq`` with the cut-off it
    would use on the whole block: the same minimisation, in the memory of a few chunks
    (see :mod:`metatensor_dask.operations._qr_tree`). A block whose values are one
    chunk without gradients is solved by numpy's ``lstsq`` in one task; blocks of tiny
    single-chunk arrays by a few grouped tasks for the whole map.

    Parameters
    ----------
    X, Y
        Maps with the same keys; blocks with the same samples and components, and the
        same gradients (samples and components).
    rcond
        Cut-off ratio for small singular values, as ``numpy.linalg.lstsq``; ``None``
        warns, as metatensor does, since numpy and torch differ there.
    driver
        Ignored (used by torch in metatensor).

    Returns
    -------
    TensorMap
        The weights, with the keys of ``X``, in numpy's dtype for ``X`` and ``Y``
        (float64 for integers and bools).

    Raises
    ------
    NotEqualError
        If keys or block metadata differ.
    TypeError
        numpy's, for float16 values, which its linear algebra refuses.
    """
    if rcond is None:
        warnings.warn(
            "WARNING rcond is set to None, which will trigger the default behavior which is "
            "different between numpy and torch lstsq function, and might depend on the "
            "version you are using.",
            stacklevel=2,
        )
    check_tensor(X, "X")
    check_tensor(Y, "Y")
    if rcond is not None and not isinstance(rcond, numbers.Real):
        raise TypeError(f"`rcond` must be None or a real number, not {type(rcond)}")
    check_same_keys_raise(X, Y, "lstsq")
    return grouped(
        X.keys,
        lambda: [
            _lstsq_block(x, y, rcond) for x, y in zip(X.blocks(), blocks_by_key(X, Y), strict=True)
        ],
    )
