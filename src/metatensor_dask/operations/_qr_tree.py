r"""Least squares over rows in many chunks, in memory bounded by a few chunks.

For a system of ``M`` equations :math:`X w = Y` (``X`` of ``n_x`` columns, ``Y`` of
``n_y``), take the reduced QR factorisation :math:`X = Q R`, where ``Q`` has
orthonormal columns and ``R`` is upper triangular with at most ``n_x`` rows. For any
``w``

.. math:: \|X w - Y\|^2 = \|R w - Q^H Y\|^2 + \|(I - Q Q^H) Y\|^2

and the last term does not depend on ``w``: the system :math:`R w = Q^H Y` has the same
minimisers, and the same minimum-norm minimiser. ``X`` and ``R`` also have the same
singular values: with :math:`R = U S V^T`, :math:`X = (Q U) S V^T` is a singular value
decomposition of ``X``. numpy's ``lstsq``, which drops the singular values below
``rcond`` times the largest, therefore gives the same solution :math:`V S^+ U^T Q^H Y`
for both, provided it is given the same cut-off: numpy's default (``rcond=None``) is
the machine precision times ``max(M, n_x)``, and ``R`` has fewer rows than ``X``, so
the cut-off of the full system is passed. Each column of :math:`Q^H Y` depends on its
column of ``Y`` only, so that an infinite value in one column of ``Y`` spoils its own
column of ``w`` only.

``R`` and :math:`Q^H Y` are found without holding ``X``: each chunk's rows become
the rows :math:`[R_i \mid Q_i^H Y_i]` of the same minimisation (:math:`X_i = Q_i R_i`),
and the sum of the chunks' objectives is that of the stacked rows, which are factorised
the same way. The factors are stacked and factorised again :data:`FAN_IN` at a time, a
tree as dask's reductions build, until a few are left; the last task solves the small
system they make. No task holds more than one chunk of the inputs or :data:`FAN_IN`
factors of at most :math:`n_x \times (n_x + n_y)`.

The factorisations run in double precision (complex double for complex data), as
numpy's ``lstsq`` does for single-precision inputs; the solution is then cast to the
result dtype, as numpy casts its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize

from .. import _graph
from .._graph import chunk_ref, ref, task
from ._chunkwise import row_chunked
from ._manipulation_utils import as_dask

__all__ = ["FAN_IN", "flat_rows", "lstsq_by_columns", "lstsq_by_factors"]

FAN_IN = 4
"""How many factors (or chunks) one task of the tree stacks at most."""


def flat_rows(array: np.ndarray) -> np.ndarray:
    """``array`` as a matrix of its last axis' columns (every other axis in rows)."""
    # explicit row counts: ``reshape(-1, 0)`` is ambiguous for arrays without columns
    return array.reshape(int(np.prod(array.shape[:-1])), array.shape[-1])


def lstsq_by_columns(x: np.ndarray, y: np.ndarray, rcond: float | None) -> np.ndarray:
    """numpy's least-squares solution of ``x w = y``, in which a column of ``y`` holding
    an infinite or NaN value spoils its own column of ``w`` only.

    Each column of ``w`` is the solution for its column of ``y`` alone; numpy's
    ``lstsq`` scales ``y`` by its largest value, so that one infinite value of ``y``
    makes every column of ``w`` NaN. The finite columns are solved again without the
    others then.
    """
    weights = np.linalg.lstsq(x, y, rcond=rcond)[0]
    finite = np.isfinite(y).all(axis=0)
    if finite.any() and not finite.all():
        weights[:, finite] = np.linalg.lstsq(x, y[:, finite], rcond=rcond)[0]
    return weights


def _factor(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``[R | Q^H y]`` for the QR factorisation ``x = Q R`` (``R`` of as many rows as
    the fewer of the rows and columns of ``x``): the rows of an equivalent system.

    Each column of ``Q^H y`` depends on its column of ``y`` only, so that an infinite
    or NaN value of ``y`` spoils its own column (a QR factorisation of ``[x | y]``
    mixes the columns of ``y`` through their own reflections).
    """
    q, r = np.linalg.qr(x, mode="reduced")
    with np.errstate(invalid="ignore"):  # inf times 0: NaN, as numpy's lstsq gives
        projected = q.conj().T @ y
    return np.concatenate([r, projected], axis=1)


def _piece_factor(
    x: np.ndarray, x_rows: slice, y: np.ndarray, y_rows: slice, dtype: np.dtype
) -> np.ndarray:
    """The factor of the rows ``x[x_rows]``, ``y[y_rows]`` (flattened), in ``dtype``."""
    left, right = flat_rows(x[x_rows]).astype(dtype), flat_rows(y[y_rows]).astype(dtype)
    return _factor(left, right)


def _stacked_factor(n_x: int, *factors: np.ndarray) -> np.ndarray:
    """The factor of the rows of ``factors`` stacked on top of each other."""
    stacked = np.concatenate(factors, axis=0)
    return _factor(stacked[:, :n_x], stacked[:, n_x:])


def _solved_factors(n_x: int, cut: float, dtype: np.dtype, *factors: np.ndarray) -> np.ndarray:
    """The transposed least-squares solution of ``R[:, :n_x] w = R[:, n_x:]``, ``R`` the
    stacked ``factors``."""
    stacked = np.concatenate(factors, axis=0)
    weights = lstsq_by_columns(stacked[:, :n_x], stacked[:, n_x:], cut)
    return weights.T.astype(dtype)


def _pieces(x_chunks: tuple[int, ...], y_chunks: tuple[int, ...]) -> list[tuple]:
    """``(x chunk, x rows, y chunk, y rows)`` for each non-empty run of rows inside one
    chunk of each of two arrays with the same rows and different row chunks."""
    x_starts = np.concatenate([[0], np.cumsum(x_chunks)])
    y_starts = np.concatenate([[0], np.cumsum(y_chunks)])
    bounds = np.union1d(x_starts, y_starts)
    pieces = []
    for start, stop in itertools.pairwise(bounds):
        i = int(np.searchsorted(x_starts, start, side="right")) - 1
        j = int(np.searchsorted(y_starts, start, side="right")) - 1
        x_rows = slice(int(start - x_starts[i]), int(stop - x_starts[i]))
        y_rows = slice(int(start - y_starts[j]), int(stop - y_starts[j]))
        pieces.append((i, x_rows, j, y_rows))
    return pieces


def _leaf_tasks(
    name: str, x: da.Array, y: da.Array, dtype: np.dtype, layer: dict, keys: list
) -> None:
    """One factorisation task per run of rows of ``x`` and ``y`` (added to ``layer``,
    their keys to ``keys``)."""
    zeros_x, zeros_y = (0,) * (x.ndim - 1), (0,) * (y.ndim - 1)
    for i, x_rows, j, y_rows in _pieces(x.chunks[0], y.chunks[0]):
        key = (f"{name}-leaf", len(keys))
        x_ref, y_ref = chunk_ref(x, i, *zeros_x), chunk_ref(y, j, *zeros_y)
        layer[key] = task(key, _piece_factor, x_ref, x_rows, y_ref, y_rows, dtype)
        keys.append(key)


def _reduced(name: str, keys: list, layer: dict, n_x: int) -> list:
    """Stack and factorise :data:`FAN_IN` factors at a time until at most
    :data:`FAN_IN` are left; their keys."""
    level = 0
    while len(keys) > FAN_IN:
        reduced: list = []
        for start in range(0, len(keys), FAN_IN):
            key = (f"{name}-stack", level, len(reduced))
            group = keys[start : start + FAN_IN]
            layer[key] = task(key, _stacked_factor, n_x, *(ref(k) for k in group))
            reduced.append(key)
        keys, level = reduced, level + 1
    return keys


def lstsq_by_factors(
    xs: Sequence[Any], ys: Sequence[Any], dtype: Any, rcond: float | None
) -> da.Array:
    """The transposed least-squares solution ``w.T`` of the equations whose left-hand
    rows are those of ``xs`` and right-hand rows those of ``ys`` (flattened to their
    last axis), by a tree of QR factorisations (see the module's documentation).

    Parameters
    ----------
    xs, ys
        Arrays with the same rows pairwise (any row chunks); ``xs`` of one width, ``ys``
        of another, in their last axis.
    dtype
        The dtype of the result.
    rcond
        numpy's cut-off ratio for small singular values; ``None`` is numpy's default
        for the whole system.

    Returns
    -------
    dask.array.Array
        One chunk of shape ``(n_y, n_x)``.
    """
    pairs = [
        (row_chunked(x, x.chunks[0]), row_chunked(y, y.chunks[0]))
        for x, y in zip(map(as_dask, xs), map(as_dask, ys), strict=True)
    ]
    n_x, n_y = int(pairs[0][0].shape[-1]), int(pairs[0][1].shape[-1])
    work = np.promote_types(np.dtype(dtype), np.float64)
    if rcond is None:
        n_rows = sum(int(np.prod(x.shape[:-1])) for x, _ in pairs)
        rcond = float(np.finfo(work).eps) * max(n_rows, n_x)
    name = "lstsq-qr-" + tokenize([(x.name, y.name) for x, y in pairs], dtype, rcond)
    layer: dict = {}
    keys: list = []
    for x, y in pairs:
        _leaf_tasks(name, x, y, work, layer, keys)
    # a system without equations: one factor of no rows
    factors = [ref(k) for k in _reduced(name, keys, layer, n_x)] or [np.zeros((0, n_x + n_y), work)]
    final = (name, 0, 0)
    layer[final] = task(final, _solved_factors, n_x, rcond, np.dtype(dtype), *factors)
    dependencies = [array for pair in pairs for array in pair]
    return _graph.array_from_tasks(name, layer, dependencies, ((n_y,), (n_x,)), dtype)
