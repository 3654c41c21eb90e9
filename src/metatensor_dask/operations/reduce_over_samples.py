"""Sum, mean, variance and standard deviation over some sample dimensions.

Samples sharing the values of the remaining dimensions form a group; each group
becomes one output sample (sorted, as metatensor's ``np.unique`` gives them). Values
and gradients are reduced chunk by chunk (see :mod:`._segments`): no block is ever
loaded whole, and gradients follow the same path as their values.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from .._partition import gradient_row_chunks, row_pointer
from ..block import TensorBlock
from ..labels import Labels
from ..tensor import TensorMap
from ._manipulation_utils import (
    as_dask,
    check_no_gradients_of_gradients,
    rows_only,
    unique_rows,
    values_at_gradient_rows,
)
from ._segments import output_chunks, rowwise, segment_sum
from ._utils import check_block, check_tensor

__all__ = [
    "mean_over_samples",
    "mean_over_samples_block",
    "std_over_samples",
    "std_over_samples_block",
    "sum_over_samples",
    "sum_over_samples_block",
    "var_over_samples",
    "var_over_samples_block",
]

Names = list[str] | str


def _identity(rows: np.ndarray) -> np.ndarray:
    return rows


def _squared_deviation(rows: np.ndarray, mean: np.ndarray, group: np.ndarray) -> np.ndarray:
    return (rows - mean[group]) ** 2


def _centered_gradient(
    gradient: np.ndarray, values: np.ndarray, mean: np.ndarray, group: np.ndarray
) -> np.ndarray:
    """``(x_s - mean_g) * dx`` for gradient rows, broadcasting values over the gradient's
    own components."""
    centered = values - mean[group]
    extra = gradient.ndim - centered.ndim
    return gradient * centered.reshape(centered.shape[:1] + (1,) * extra + centered.shape[1:])


def _per_row(array: da.Array, counts: np.ndarray) -> da.Array:
    """``counts`` chunked as the rows of ``array``, shaped to broadcast against it."""
    column = da.from_array(counts.astype(array.dtype), chunks=(array.chunks[0],))
    return column.reshape((-1,) + (1,) * (array.ndim - 1))


def _std_gradient(
    centered: np.ndarray, std: np.ndarray, group: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    scale = std[group] * counts.reshape((-1,) + (1,) * (std.ndim - 1))
    extra = centered.ndim - scale.ndim
    scale = scale.reshape(scale.shape[:1] + (1,) * extra + scale.shape[1:])
    with np.errstate(divide="ignore", invalid="ignore"):
        result = centered / scale
    return np.nan_to_num(result, nan=0.0, posinf=0.0, neginf=0.0)


def _names_list(names: Names) -> list[str]:
    return [names] if isinstance(names, str) else list(names)


def _check_names(sample_names: list[str], present: list[str]) -> None:
    for name in sample_names:
        if name not in present:
            raise ValueError(
                f"one of the requested sample name ({name}) is not part of this TensorMap"
            )


def _reduce_block(block: TensorBlock, sample_names: list[str], reduction: str) -> TensorBlock:
    check_no_gradients_of_gradients(block)
    remaining = [n for n in block.samples.names if n not in sample_names]
    if len(block.samples) == 0:
        samples = Labels.empty(remaining or ["_"])
        return TensorBlock._trusted(
            block.values,
            samples,
            block.components,
            block.properties,
            dict(block.gradients()),
        )
    columns = [block.samples.names.index(n) for n in remaining]
    if remaining:
        new_samples, group = unique_rows(block.samples.values[:, columns])
        samples = Labels._trusted(remaining, new_samples)
    else:
        group = np.zeros(len(block.samples), np.int64)
        samples = Labels.single()
    n_groups = len(samples)
    counts = np.bincount(group, minlength=n_groups)

    values = rows_only(as_dask(block.values))
    shape = (n_groups, *values.shape[1:])
    chunks = output_chunks(group, values.chunks[0], n_groups)
    total = segment_sum(_identity, [values], group, chunks, shape, values.dtype)
    mean = total / _per_row(total, counts)
    if reduction == "sum":
        result = total
    elif reduction == "mean":
        result = mean
    else:
        squares = segment_sum(
            _squared_deviation,
            [values],
            group,
            chunks,
            shape,
            values.dtype,
            out_operands=[mean],
            extras=[_local(group, chunks)],
        )
        result = squares / _per_row(squares, counts)
        if reduction == "std":
            result = da.sqrt(result)

    gradients = {}
    for parameter, gradient in block.gradients():
        if len(gradient.samples) == 0:
            gradients[parameter] = gradient
            continue
        renumbered = gradient.samples.values.copy()
        renumbered[:, 0] = group[renumbered[:, 0]]
        merged, merged_index = unique_rows(renumbered)
        merged_samples = Labels._trusted(gradient.samples.names, merged)
        pointer = row_pointer(merged[:, 0], n_groups)
        gradient_chunks = gradient_row_chunks(pointer, chunks)
        merged_counts = counts[merged[:, 0]]
        gradient_shape = (len(merged), *gradient.shape[1:])
        if reduction in ("sum", "mean"):
            rows = rows_only(as_dask(gradient.values))
            summed = segment_sum(
                _identity, [rows], merged_index, gradient_chunks, gradient_shape, rows.dtype
            )
            new = summed if reduction == "sum" else summed / _per_row(summed, merged_counts)
        else:
            rows, at_rows = values_at_gradient_rows(block, parameter)
            column = gradient.samples.column("sample")
            if rows.chunks[0] != at_rows.chunks[0]:
                at_rows = at_rows.rechunk({0: rows.chunks[0]})
            centered = segment_sum(
                _centered_gradient,
                [rows, at_rows],
                merged_index,
                gradient_chunks,
                gradient_shape,
                rows.dtype,
                out_operands=[mean],
                extras=[_local(group[column], chunks)],
            )
            if reduction == "var":
                new = 2 * centered / _per_row(centered, merged_counts)
            else:
                local_group = da.from_array(
                    _local(merged[:, 0].astype(np.int64), chunks), chunks=(gradient_chunks,)
                )
                count_rows = da.from_array(
                    merged_counts.astype(rows.dtype), chunks=(gradient_chunks,)
                )
                new = rowwise(
                    _std_gradient,
                    centered.chunks[0],
                    centered.shape[1:],
                    centered,
                    result,
                    local_group,
                    count_rows,
                    dtype=rows.dtype,
                )
        gradients[parameter] = TensorBlock._trusted(
            new, merged_samples, gradient.components, block.properties, row_pointer=pointer
        )
    return TensorBlock._trusted(result, samples, block.components, block.properties, gradients)


def _local(target: np.ndarray, chunks: tuple[int, ...]) -> np.ndarray:
    """Each output row index ``target`` relative to the start of its output chunk."""
    bounds = np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)
    owner = np.searchsorted(bounds, target, side="right") - 1
    return target - bounds[owner]


def _reduce(tensor: TensorMap, sample_names: Names, reduction: str) -> TensorMap:
    check_tensor(tensor, "tensor")
    names = _names_list(sample_names)
    _check_names(names, tensor.sample_names)
    blocks = [_reduce_block(block, names, reduction) for block in tensor.blocks()]
    return TensorMap._trusted(tensor.keys, blocks)


def _reduce_one(block: TensorBlock, sample_names: Names, reduction: str) -> TensorBlock:
    check_block(block, "block")
    names = _names_list(sample_names)
    _check_names(names, block.samples.names)
    return _reduce_block(block, names, reduction)


def _documented(kind: str):
    """Append the shared numpydoc sections of the reductions to a docstring."""
    what = "block" if kind == "TensorBlock" else "tensor"

    def decorate(function):
        function.__doc__ += f"""
    Parameters
    ----------
    {what}
        The input; it is not modified.
    sample_names
        The sample dimension(s) to reduce over (they disappear). The remaining
        dimensions define the groups; reducing over all of them gives the single
        sample ``_=0``.

    Returns
    -------
    {kind}
        A lazy result with one sample per group, sorted. Partial sums are computed
        chunk by chunk and combined in a tree; gradients follow the same path. An
        empty block stays empty, with the remaining sample names (``_`` when all are
        reduced, where metatensor gives no names and so an invalid map).
    """
        return function

    return decorate


@_documented("TensorBlock")
def sum_over_samples_block(block: TensorBlock, sample_names: Names) -> TensorBlock:
    """Sum the values of the samples in each group.

    Gradient rule: :math:`\\nabla \\sum_i x_i = \\sum_i \\nabla x_i`. Gradient rows
    are renumbered to their group, and rows with the same entries are added.
    """
    return _reduce_one(block, sample_names, "sum")


@_documented("TensorMap")
def sum_over_samples(tensor: TensorMap, sample_names: Names) -> TensorMap:
    """Sum the values of the samples in each group, in every block.

    Gradient rule: :math:`\\nabla \\sum_i x_i = \\sum_i \\nabla x_i`. Gradient rows
    are renumbered to their group, and rows with the same entries are added.
    """
    return _reduce(tensor, sample_names, "sum")


@_documented("TensorBlock")
def mean_over_samples_block(block: TensorBlock, sample_names: Names) -> TensorBlock:
    """Average the values of the samples in each group.

    Gradient rule: :math:`\\nabla \\bar{x} = \\frac{1}{n} \\sum_i \\nabla x_i`, with
    :math:`n` the number of samples in the group. metatensor-operations 0.5.0 divides
    by the number of gradient rows merged instead, which is wrong when some samples
    have no gradient row for an entry (sparse gradients); this follows the math.
    """
    return _reduce_one(block, sample_names, "mean")


@_documented("TensorMap")
def mean_over_samples(tensor: TensorMap, sample_names: Names) -> TensorMap:
    """Average the values of the samples in each group, in every block.

    Gradient rule: :math:`\\nabla \\bar{x} = \\frac{1}{n} \\sum_i \\nabla x_i`, with
    :math:`n` the number of samples in the group (metatensor-operations 0.5.0 divides by
    the number of merged gradient rows, wrong for sparse gradients).
    """
    return _reduce(tensor, sample_names, "mean")


@_documented("TensorBlock")
def var_over_samples_block(block: TensorBlock, sample_names: Names) -> TensorBlock:
    """Variance of the values of the samples in each group, :math:`E[(x - E[x])^2]`.

    Gradient rule: :math:`\\nabla \\mathrm{Var} = \\frac{2}{n} \\sum_i (x_i - \\bar{x})
    \\nabla x_i = 2 (E[x \\nabla x] - E[x] E[\\nabla x])` over the :math:`n` samples of
    the group (a sample without a gradient row contributes zero). metatensor-operations
    0.5.0 normalizes by the number of merged gradient rows (wrong for sparse
    gradients); this follows the math.
    """
    return _reduce_one(block, sample_names, "var")


@_documented("TensorMap")
def var_over_samples(tensor: TensorMap, sample_names: Names) -> TensorMap:
    """Variance of the values of the samples in each group, in every block.

    Gradient rule: :math:`\\nabla \\mathrm{Var} = \\frac{2}{n} \\sum_i (x_i - \\bar{x})
    \\nabla x_i` over the :math:`n` samples of the group (metatensor-operations 0.5.0
    normalizes by merged gradient rows, wrong for sparse gradients).
    """
    return _reduce(tensor, sample_names, "var")


@_documented("TensorBlock")
def std_over_samples_block(block: TensorBlock, sample_names: Names) -> TensorBlock:
    """Standard deviation of the values of the samples in each group.

    Gradient rule: :math:`\\nabla \\sigma = \\frac{1}{n \\sigma} \\sum_i (x_i -
    \\bar{x}) \\nabla x_i`, set to 0 where :math:`\\sigma = 0` (as metatensor does);
    normalized by the group size (metatensor-operations 0.5.0 uses the number of
    merged gradient rows, wrong for sparse gradients).
    """
    return _reduce_one(block, sample_names, "std")


@_documented("TensorMap")
def std_over_samples(tensor: TensorMap, sample_names: Names) -> TensorMap:
    """Standard deviation of the values of the samples in each group, in every block.

    Gradient rule: :math:`\\nabla \\sigma = \\frac{1}{n \\sigma} \\sum_i (x_i -
    \\bar{x}) \\nabla x_i`, 0 where :math:`\\sigma = 0`, normalized by the group size.
    """
    return _reduce(tensor, sample_names, "std")
