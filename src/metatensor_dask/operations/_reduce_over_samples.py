"""Sum, mean, variance and standard deviation over some sample dimensions.

Samples sharing the values of the remaining dimensions form a group; each group
becomes one output sample (sorted, as metatensor's ``np.unique`` gives them). Values
and gradients are reduced chunk by chunk (see :mod:`._segments`): no block is ever
loaded whole, and gradients follow the same path as their values.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import NamedTuple, TypeVar

import dask.array as da
import numpy as np

from .._gc import without_collector
from .._graph import computed_apart
from .._partition import gradient_row_chunks, row_pointer, split_row_chunks
from ..block import TensorBlock
from ..labels import Labels
from ..tensor import TensorMap
from ._grouping import TinyGroups, single_chunk_shape, tiny_groups
from ._manipulation_utils import (
    as_dask,
    block_arrays,
    broadcast_rows,
    check_no_gradients_of_gradients,
    checked_names,
    documented_reduction,
    in_reduction_dtype,
    largest_chunk_bytes,
    lazy_arrays,
    merged_row_chunks,
    reduction_dtype,
    reduction_groups,
    row_bytes,
    rows_only,
    unique_rows,
    values_at_gradient_rows,
)
from ._segments import add_rows_in_order, crossed, output_chunks, rowwise, segment_sum
from ._utils import check_block, check_tensor, map_blocks

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


def _deviation(rows: np.ndarray, mean: np.ndarray, group: np.ndarray) -> np.ndarray:
    return rows - mean[group]


def _refined(mean: np.ndarray, deviations: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``mean`` plus the mean of the deviations from it (``deviations`` are their sums,
    ``counts`` the group sizes as rows): the centre from which the var and std gradients
    take deviations. A group of equal values has this value as its centre exactly, where
    its rounded mean may differ from it (three 0.1 average to 0.1 + 1.4e-17), and so no
    deviation: gradients 0, as of a group of no spread."""
    return mean + deviations / counts


def _centered_gradient(
    gradient: np.ndarray, values: np.ndarray, mean: np.ndarray, group: np.ndarray
) -> np.ndarray:
    """``(x_s - mean_g) * dx`` for gradient rows, broadcasting values over the gradient's
    own components."""
    return gradient * broadcast_rows(values - mean[group], gradient.ndim)


def _divided_by_counts(array: da.Array, counts: np.ndarray, scale: float = 1.0) -> da.Array:
    """``scale * array`` divided row by row by ``counts`` (one entry per row), in the
    dtype of a quotient (float64 for integers)."""
    column = counts.astype(array.dtype).reshape((-1,) + (1,) * (array.ndim - 1))
    column = da.from_array(column, chunks=(array.chunks[0],) + ((1,),) * (array.ndim - 1))
    # chunk by chunk, not `scale * array / column`: dask 2026.8's element-wise operators
    # take an axis of length 1 chunked as (0, 1) for a broadcast one (a wrong shape and
    # missing tasks)
    dtype = reduction_dtype(array.dtype, "mean")
    return da.map_blocks(_scaled_quotient, array, column, scale, dtype=dtype)


def _scaled_quotient(array: np.ndarray, counts: np.ndarray, scale: float) -> np.ndarray:
    return scale * array / counts if scale != 1.0 else array / counts


def _centre(
    values: da.Array, mean: da.Array, group: np.ndarray, chunks: tuple[int, ...], counts: np.ndarray
) -> da.Array:
    """The groups' means refined by their mean deviation (see :func:`_refined`), in the
    output chunks of ``mean``."""
    shape = mean.shape
    deviations = segment_sum(
        _deviation,
        [values],
        group,
        chunks,
        shape,
        mean.dtype,
        out_operands=[mean],
        extras=[_local(group, chunks)],
    )
    column = counts.astype(mean.dtype).reshape((-1,) + (1,) * (mean.ndim - 1))
    column = da.from_array(column, chunks=(mean.chunks[0],) + ((1,),) * (mean.ndim - 1))
    # chunk by chunk (see `_divided_by_counts`)
    return da.map_blocks(_refined, mean, deviations, column, dtype=mean.dtype)


def _moments_for_gradients(
    block: TensorBlock,
    group: np.ndarray,
    chunks: tuple[int, ...],
    counts: np.ndarray,
    reduction: str,
) -> tuple[TensorBlock, da.Array, da.Array]:
    """``block`` with its values computed apart (:func:`computed_apart`), and from these
    the reduced values and the groups' centres that the gradients of a variance or
    standard deviation need.

    Sharing the values with the reduced values' pass, the gradients' pass held every
    values chunk of the block at once. Values are the smallest array of a block with
    gradients: reading them twice costs little (a chain of operations before the
    reduction computes its values twice)."""
    values = computed_apart(rows_only(as_dask(block.values)), "for-gradients")
    block = block._with_arrays([values, *(g.values for _, g in block.gradients())])
    shape = (len(counts), *values.shape[1:])
    mean = _divided_by_counts(
        segment_sum(_identity, [values], group, chunks, shape, values.dtype), counts
    )
    result = _spread(values, mean, group, chunks, counts, reduction)
    return block, result, _centre(values, mean, group, chunks, counts)


def _spread(
    values: da.Array,
    mean: da.Array,
    group: np.ndarray,
    chunks: tuple[int, ...],
    counts: np.ndarray,
    reduction: str,
) -> da.Array:
    """The groups' variance (``reduction`` ``"var"``) or standard deviation (``"std"``),
    from the squared deviations of ``values`` from the groups' ``mean``."""
    squares = segment_sum(
        _squared_deviation,
        [values],
        group,
        chunks,
        mean.shape,
        mean.dtype,
        out_operands=[mean],
        extras=[_local(group, chunks)],
    )
    result = _divided_by_counts(squares, counts)
    return da.sqrt(result) if reduction == "std" else result


def _std_gradient(
    centered: np.ndarray, std: np.ndarray, group: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    scale = std[group] * counts.reshape((-1,) + (1,) * (std.ndim - 1))
    scale = broadcast_rows(scale, centered.ndim)
    with np.errstate(divide="ignore", invalid="ignore"):
        result = centered / scale
    # 0 where the deviation is 0 (not differentiable there); NaN and infinities of the
    # values or gradients stay
    return np.where(scale == 0, 0, result)


def _as_rows(counts: np.ndarray, like: np.ndarray) -> np.ndarray:
    """``counts`` in the dtype of ``like``, shaped to broadcast against its rows."""
    return counts.astype(like.dtype).reshape((-1,) + (1,) * (like.ndim - 1))


class _Segments:
    """How the rows of an array are added into output rows: ``targets[r]`` for row
    ``r``, ``size`` output rows. Worked out once per distinct Labels (see
    :class:`_SharedLabels`) instead of in every task; each output row adds its rows one
    by one, in their order, as metatensor and the chunk-by-chunk path
    (:func:`segment_sum`) do.
    """

    def __init__(self, targets: np.ndarray, size: int):
        hasher = hashlib.blake2b(np.ascontiguousarray(targets, np.int64).tobytes(), digest_size=12)
        hasher.update(str(size).encode())
        self.digest = hasher.hexdigest()
        self.size = size
        self.targets = targets

    def __repr__(self) -> str:
        # what names the grouped tasks (see `hash_arguments`)
        return f"_Segments({self.digest})"

    def sum(self, rows: np.ndarray) -> np.ndarray:
        """The sums of ``rows`` into the output rows, added into zeros (a sum of
        negative zeros is +0.0, as in metatensor)."""
        result = np.zeros((self.size, *rows.shape[1:]), rows.dtype)
        add_rows_in_order(result, self.targets, rows)
        return result


class _Grouping:
    """The samples of a block by group: ``group`` (int64) for each sample, ``counts``
    samples in each group, and how to add them (:class:`_Segments`)."""

    def __init__(self, group: np.ndarray, counts: np.ndarray):
        self.group, self.counts = group, counts
        self.segments = _Segments(group, len(counts))

    def __repr__(self) -> str:
        return f"_Grouping({self.segments.digest})"


class _MergedRows:
    """The rows of a gradient merged by group: ``column`` (its ``"sample"``, int64),
    ``merged_group`` (the output sample of each merged row) and how to add the rows
    into the merged rows (:class:`_Segments`)."""

    def __init__(self, column: np.ndarray, index: np.ndarray, merged_group: np.ndarray):
        self.column, self.merged_group = column, merged_group
        self.segments = _Segments(index, len(merged_group))
        hasher = hashlib.blake2b(column.tobytes(), digest_size=12)
        hasher.update(merged_group.tobytes())
        hasher.update(self.segments.digest.encode())
        self.digest = hasher.hexdigest()

    def __repr__(self) -> str:
        return f"_MergedRows({self.digest})"


def _reduced_values(values: np.ndarray, grouping: _Grouping, reduction: str) -> np.ndarray:
    """The reduction of a whole block's values at once (the arithmetic of the chunked
    path, on one chunk)."""
    group, counts, segments = grouping.group, grouping.counts, grouping.segments
    total = segments.sum(values)
    if reduction == "sum":
        return total
    mean = total / _as_rows(counts, total)
    if reduction == "mean":
        return mean
    squares = segments.sum(_squared_deviation(values, mean, group))
    variance = squares / _as_rows(counts, squares)
    return variance if reduction == "var" else np.sqrt(variance)


def _reduced_gradient(
    values: np.ndarray,
    gradient: np.ndarray,
    grouping: _Grouping,
    merged: _MergedRows,
    reduction: str,
) -> np.ndarray:
    """The reduction of a whole gradient at once."""
    if reduction == "sum":
        return merged.segments.sum(gradient)
    merged_counts = grouping.counts[merged.merged_group]
    if reduction == "mean":
        summed = merged.segments.sum(gradient)
        return summed / _as_rows(merged_counts, summed)
    column = merged.column
    mean = _reduced_values(values, grouping, "mean")
    deviations = grouping.segments.sum(_deviation(values, mean, grouping.group))
    centre = _refined(mean, deviations, _as_rows(grouping.counts, mean))
    rows = _centered_gradient(gradient, values[column], centre, grouping.group[column])
    centered = merged.segments.sum(rows)
    if reduction == "var":
        return 2 * centered / _as_rows(merged_counts, centered)
    std = _reduced_values(values, grouping, "std")
    return _std_gradient(centered, std, merged.merged_group, merged_counts.astype(gradient.dtype))


class _Merged(NamedTuple):
    """A gradient's rows renumbered to their group, the same entries merged."""

    samples: Labels  # the merged samples
    merged_rows: np.ndarray  # the merged row of each row
    pointer: np.ndarray  # the merged rows' row pointer over the output samples
    rows: _MergedRows  # what the grouped tasks need


class _SharedLabels:
    """The label arithmetic of one reduction, done once per distinct Labels.

    Blocks often share their samples (a ``.mts`` file stores identical Labels once, and
    the blocks of a map of many small structures have the same atoms), and on maps of
    many tiny blocks this arithmetic costs more than the sums. Labels are told apart
    by their digest.
    """

    def __init__(self, names: list[str]):
        self.names = names
        self._groups: dict[str, tuple[Labels, _Grouping]] = {}
        self._merged: dict[tuple[str, str], _Merged] = {}

    def groups(self, samples: Labels) -> tuple[Labels, _Grouping]:
        """The output samples, and the group (output sample) of each sample."""
        key = samples.digest()
        if key not in self._groups:
            reduced, group = reduction_groups(samples, self.names)
            counts = np.bincount(group, minlength=len(reduced))
            self._groups[key] = (reduced, _Grouping(_frozen(group), _frozen(counts)))
        return self._groups[key]

    def merged(self, gradient: TensorBlock, samples: Labels) -> _Merged:
        """The rows of ``gradient`` (of a block with ``samples``) merged by group."""
        key = (gradient.samples.digest(), samples.digest())
        if key not in self._merged:
            reduced, grouping = self.groups(samples)
            renumbered = gradient.samples.values.copy()
            renumbered[:, 0] = grouping.group[renumbered[:, 0]]
            merged, index = unique_rows(renumbered)
            merged_group = _frozen(merged[:, 0].astype(np.int64))
            pointer = row_pointer(merged_group, len(reduced))
            assert pointer is not None, "unique_rows sorts the merged rows by their first column"
            column = _frozen(gradient.samples.column("sample").astype(np.int64))
            self._merged[key] = _Merged(
                Labels._trusted(gradient.samples.names, merged),
                _frozen(index),
                _frozen(pointer),
                _MergedRows(column, index, merged_group),
            )
        return self._merged[key]


def _without_rows(gradient: TensorBlock, n_samples: int, reduction: str) -> TensorBlock:
    """A gradient of no row, kept as it is in the dtype of ``reduction``, with the row
    pointer of no row over the ``n_samples`` reduced samples (not over the input's)."""
    kept = in_reduction_dtype(gradient, reduction)
    return TensorBlock._trusted(
        kept._held_values(),
        kept.samples,
        kept._components,
        kept.properties,
        row_pointer=np.zeros(n_samples + 1, dtype=np.int64),
    )


def _frozen(array: np.ndarray) -> np.ndarray:
    """``array``, read-only (it is shared by the blocks with the same Labels)."""
    array.flags.writeable = False
    return array


def _grouped_block(
    groups: TinyGroups, block: TensorBlock, shared: _SharedLabels, reduction: str
) -> TensorBlock:
    """The reduction of a tiny single-chunk block as calls run by the tasks of
    ``groups`` (one task per group of blocks, see :func:`grouped_tiny_blocks`)."""
    samples, grouping = shared.groups(block.samples)
    values = block.values
    values_shape = single_chunk_shape(values)
    values_bytes = math.prod(values_shape) * values.dtype.itemsize
    result = groups.record(
        f"{reduction}-over-samples",
        _reduced_values,
        [values],
        (grouping, reduction),
        (len(samples), *values_shape[1:]),
        reduction_dtype(values.dtype, reduction),
        values_bytes,
    )
    gradients = {}
    for parameter, gradient in block.gradients():
        if len(gradient.samples) == 0:
            gradients[parameter] = _without_rows(gradient, len(samples), reduction)
            continue
        merged = shared.merged(gradient, block.samples)
        gradient_values = gradient.values
        gradient_shape = single_chunk_shape(gradient_values)
        new = groups.record(
            f"{reduction}-over-samples-gradient",
            _reduced_gradient,
            [values, gradient_values],
            (grouping, merged.rows, reduction),
            (len(merged.samples), *gradient_shape[1:]),
            reduction_dtype(gradient_values.dtype, reduction),
            values_bytes + math.prod(gradient_shape) * gradient_values.dtype.itemsize,
        )
        # made for its place: the block below takes it as it is (no copy)
        gradients[parameter] = TensorBlock._trusted(
            new,
            merged.samples,
            gradient._components,
            block.properties,
            row_pointer=merged.pointer,
            path=(parameter,),
        )
    return TensorBlock._trusted(result, samples, block._components, block.properties, gradients)


def _reduce_block(block: TensorBlock, shared: _SharedLabels, reduction: str) -> TensorBlock:
    check_no_gradients_of_gradients(block)
    samples, grouping = shared.groups(block.samples)
    # integers and bools are averaged as numpy does, in float64: their sums in their
    # own dtype overflow, and bools add up as a logical or
    block = in_reduction_dtype(block, reduction)
    if len(block.samples) == 0:
        return TensorBlock._trusted(
            block._held_values(),
            samples,
            block.components,
            block.properties,
            dict(block.gradients()),
        )
    groups = tiny_groups([block.values, *(g.values for _, g in block.gradients())])
    if groups is not None:
        return _grouped_block(groups, block, shared, reduction)
    n_groups = len(samples)
    group, counts = grouping.group, grouping.counts

    values = rows_only(as_dask(block.values))
    shape = (n_groups, *values.shape[1:])
    chunks = _bounded_chunks(block, shared, output_chunks(group, values.chunks[0], n_groups))
    if crossed(group, values.chunks[0], chunks):
        block = merged_row_chunks(block)
        values = rows_only(as_dask(block.values))
        chunks = _bounded_chunks(block, shared, output_chunks(group, values.chunks[0], n_groups))
    total = segment_sum(_identity, [values], group, chunks, shape, values.dtype)
    mean = _divided_by_counts(total, counts)
    if reduction == "sum":
        result = total
    elif reduction == "mean":
        result = mean
    else:
        result = _spread(values, mean, group, chunks, counts, reduction)
        if block.gradients_list():
            block, result_for_gradients, centre = _moments_for_gradients(
                block, group, chunks, counts, reduction
            )

    gradients = {}
    for parameter, gradient in block.gradients():
        if len(gradient.samples) == 0:
            gradients[parameter] = _without_rows(gradient, n_groups, reduction)
            continue
        merged = shared.merged(gradient, block.samples)
        merged_index, merged_samples, pointer = merged.merged_rows, merged.samples, merged.pointer
        gradient_chunks = gradient_row_chunks(pointer, chunks)
        merged_counts = counts[merged.rows.merged_group]
        gradient_shape = (len(merged_samples), *gradient.shape[1:])
        if reduction in ("sum", "mean"):
            rows = rows_only(as_dask(gradient.values))
            summed = segment_sum(
                _identity, [rows], merged_index, gradient_chunks, gradient_shape, rows.dtype
            )
            new = summed if reduction == "sum" else _divided_by_counts(summed, merged_counts)
        else:
            rows, at_rows = values_at_gradient_rows(block, parameter)
            column = merged.rows.column
            if rows.chunks[0] != at_rows.chunks[0]:
                at_rows = at_rows.rechunk({0: rows.chunks[0]})
            centered = segment_sum(
                _centered_gradient,
                [rows, at_rows],
                merged_index,
                gradient_chunks,
                gradient_shape,
                mean.dtype,
                out_operands=[centre],
                extras=[_local(group[column], chunks)],
            )
            if reduction == "var":
                new = _divided_by_counts(centered, merged_counts, scale=2.0)
            else:
                local_group = da.from_array(
                    _local(merged.rows.merged_group, chunks), chunks=(gradient_chunks,)
                )
                count_rows = da.from_array(
                    merged_counts.astype(rows.dtype), chunks=(gradient_chunks,)
                )
                new = rowwise(
                    _std_gradient,
                    centered.chunks[0],
                    centered.shape[1:],
                    centered,
                    result_for_gradients,
                    local_group,
                    count_rows,
                    dtype=result.dtype,
                )
        gradients[parameter] = TensorBlock._trusted(
            new, merged_samples, gradient.components, block.properties, row_pointer=pointer
        )
    return TensorBlock._trusted(result, samples, block.components, block.properties, gradients)


def _bounded_chunks(
    block: TensorBlock, shared: _SharedLabels, chunks: tuple[int, ...]
) -> tuple[int, ...]:
    """The output's row ``chunks`` cut between groups so that no chunk of the reduced
    values or gradients outgrows the block's largest input chunk.

    Gradient rows merge only within a group: reducing over a dimension that every
    chunk shares (``"system"`` of atoms) leaves about as many gradient rows as before,
    in as few chunks as there are value chunks of the few groups. A group's own gradient
    rows stay in one chunk (co-partitioned with its value row)."""
    budget = largest_chunk_bytes(block_arrays([block]))
    gradients = tuple(
        (shared.merged(gradient, block.samples).pointer, row_bytes(gradient, gradient.shape[-1]))
        for _, gradient in block.gradients()
        if len(gradient.samples)
    )
    return split_row_chunks(chunks, row_bytes(block, block.shape[-1]), budget, gradients)


def _local(target: np.ndarray, chunks: tuple[int, ...]) -> np.ndarray:
    """Each output row index ``target`` relative to the start of its output chunk."""
    bounds = np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)
    owner = np.searchsorted(bounds, target, side="right") - 1
    return target - bounds[owner]


Data = TypeVar("Data", TensorMap, TensorBlock)


def float16_in_float32(reduce: Callable[[Data], Data], data: Data, reduction: str) -> Data:
    """``reduce(data)``; a mean, variance or standard deviation of float16 values is
    computed in float32 then cast back, as numpy does: their sums overflow float16
    (65504)."""
    if reduction == "sum" or data.dtype != np.float16:
        return reduce(data)
    return reduce(data.to(dtype=np.float32)).to(dtype=np.float16)


@without_collector
def _reduce(tensor: TensorMap, sample_names: Names, reduction: str) -> TensorMap:
    check_tensor(tensor, "tensor")
    names = checked_names(sample_names, tensor.sample_names, "sample")
    shared = _SharedLabels(names)
    tensor = lazy_arrays(tensor)
    return float16_in_float32(
        lambda t: map_blocks(t, lambda block: _reduce_block(block, shared, reduction)),
        tensor,
        reduction,
    )


def _reduce_one(block: TensorBlock, sample_names: Names, reduction: str) -> TensorBlock:
    check_block(block, "block")
    shared = _SharedLabels(checked_names(sample_names, block.samples.names, "sample"))
    return float16_in_float32(lambda b: _reduce_block(b, shared, reduction), block, reduction)


def _documented(kind: str, rule: str):
    return documented_reduction(kind, "samples", _RETURNS, rule)


_RETURNS = """A lazy result with one sample per group, sorted. Partial sums are computed
        chunk by chunk and combined in a tree; gradients follow the same path. An
        empty block stays empty, with the remaining sample names (``_`` when all are
        reduced, where metatensor gives no names and so an invalid map)."""
_SUM = r""":math:`\nabla \sum_i x_i = \sum_i \nabla x_i`. Gradient rows are renumbered to their
    group, and rows with the same entries are added."""
_MEAN = r""":math:`\nabla \bar{x} = \frac{1}{n} \sum_i \nabla x_i`, with :math:`n` the number of
    samples in the group. metatensor-operations 0.5.0 divides by the number of gradient
    rows merged instead, which is wrong when some samples have no gradient row for an
    entry (sparse gradients); this follows the math."""
_CENTRE = r"""

    The deviations in gradients are taken from the mean refined once,
    :math:`\bar{x} + \frac{1}{n} \sum_i (x_i - \bar{x})`, exactly the common value of a
    group of equal values (whose rounded mean may not be: three 0.1 average to
    0.1 + 1.4e-17), which so gets gradients 0, as finite differences give;
    metatensor-operations 0.5.0 gives minus the mean of their gradients to its standard
    deviation."""
_VAR = (
    r""":math:`\nabla \mathrm{Var} = \frac{2}{n} \sum_i (x_i - \bar{x}) \nabla x_i = 2
    (E[x \nabla x] - E[x] E[\nabla x])` over the :math:`n` samples of the group (a sample
    without a gradient row contributes zero). metatensor-operations 0.5.0 normalizes by
    the number of merged gradient rows (wrong for sparse gradients); this follows the
    math."""
    + _CENTRE
)
_STD = (
    r""":math:`\nabla \sigma = \frac{1}{n \sigma} \sum_i (x_i - \bar{x}) \nabla x_i`, set
    to 0 where :math:`\sigma = 0` (as metatensor does); normalized by the group size
    (metatensor-operations 0.5.0 uses the number of merged gradient rows, wrong for
    sparse gradients)."""
    + _CENTRE
)


@_documented("TensorBlock", _SUM)
def sum_over_samples_block(block: TensorBlock, sample_names: Names) -> TensorBlock:
    """Sum the values of the samples in each group."""
    return _reduce_one(block, sample_names, "sum")


@_documented("TensorMap", _SUM)
def sum_over_samples(tensor: TensorMap, sample_names: Names) -> TensorMap:
    """Sum the values of the samples in each group, in every block."""
    return _reduce(tensor, sample_names, "sum")


@_documented("TensorBlock", _MEAN)
def mean_over_samples_block(block: TensorBlock, sample_names: Names) -> TensorBlock:
    """Average the values of the samples in each group."""
    return _reduce_one(block, sample_names, "mean")


@_documented("TensorMap", _MEAN)
def mean_over_samples(tensor: TensorMap, sample_names: Names) -> TensorMap:
    """Average the values of the samples in each group, in every block."""
    return _reduce(tensor, sample_names, "mean")


@_documented("TensorBlock", _VAR)
def var_over_samples_block(block: TensorBlock, sample_names: Names) -> TensorBlock:
    """Variance of the values of the samples in each group, :math:`E[(x - E[x])^2]`."""
    return _reduce_one(block, sample_names, "var")


@_documented("TensorMap", _VAR)
def var_over_samples(tensor: TensorMap, sample_names: Names) -> TensorMap:
    """Variance of the values of the samples in each group, in every block."""
    return _reduce(tensor, sample_names, "var")


@_documented("TensorBlock", _STD)
def std_over_samples_block(block: TensorBlock, sample_names: Names) -> TensorBlock:
    """Standard deviation of the values of the samples in each group."""
    return _reduce_one(block, sample_names, "std")


@_documented("TensorMap", _STD)
def std_over_samples(tensor: TensorMap, sample_names: Names) -> TensorMap:
    """Standard deviation of the values of the samples in each group, in every block."""
    return _reduce(tensor, sample_names, "std")
