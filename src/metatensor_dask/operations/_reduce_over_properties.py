"""Sum, mean, variance and standard deviation over some property dimensions.

Properties sharing the values of the remaining dimensions form a group; each group
becomes one output property (sorted). Each row chunk is reduced on its own (properties
are one chunk), so the work is embarrassingly parallel; gradients use the value row of
each gradient row, taken from the co-partitioned values chunk.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable

import dask.array as da
import numpy as np

from .._gc import without_collector
from ..block import TensorBlock
from ..labels import Labels
from ..tensor import TensorMap
from ._grouping import TinyGroups, single_chunk_shape, tiny_groups
from ._manipulation_utils import (
    as_dask,
    broadcast_rows,
    check_no_gradients_of_gradients,
    checked_names,
    documented_reduction,
    in_reduction_dtype,
    lazy_arrays,
    reduction_dtype,
    reduction_groups,
    rows_only,
    values_at_gradient_rows,
)
from ._reduce_over_samples import float16_in_float32
from ._segments import WIDE_ROW, add_rows_in_order, rowwise
from ._utils import check_block, check_tensor, map_blocks

__all__ = [
    "mean_over_properties",
    "mean_over_properties_block",
    "std_over_properties",
    "std_over_properties_block",
    "sum_over_properties",
    "sum_over_properties_block",
    "var_over_properties",
    "var_over_properties_block",
]

Names = list[str] | str


#: Columns up to which a sum over properties adds column after column in Python.
FEW_COLUMNS = 32


class _Groups:
    """Sum the last axis by groups of columns (``group[p]`` for column ``p``).

    Made once per distinct properties of a map (see :class:`_SharedGroups`), and given
    as such to the tasks of tiny blocks; its ``repr`` is a digest of the groups (it
    names those tasks).
    """

    def __init__(self, group: np.ndarray, n_groups: int):
        self.group = group
        self.counts = np.bincount(group, minlength=n_groups)
        hasher = hashlib.blake2b(np.ascontiguousarray(group, np.int64).tobytes(), digest_size=12)
        hasher.update(str(n_groups).encode())
        self.digest = hasher.hexdigest()

    def __repr__(self) -> str:
        return f"_Groups({self.digest})"

    def __dask_tokenize__(self) -> str:
        return self.digest

    def sum(self, array: np.ndarray) -> np.ndarray:
        """The sums of the columns of ``array`` by group, in its dtype, each group's
        columns added one by one into zeros, in their order: bit for bit metatensor's."""
        n_groups = len(self.counts)
        n_columns = array.shape[-1]
        if n_columns <= FEW_COLUMNS:
            # one vectorised += per column, in order: what ``add.at`` does, without its
            # cost per call (most of the time on maps of many tiny blocks)
            sums = np.zeros((*array.shape[:-1], n_groups), array.dtype)
            for column, group in enumerate(self.group.tolist()):
                sums[..., group] += array[..., column]
            return sums
        if array.size < WIDE_ROW * n_columns or array.dtype.kind not in "fc":
            sums = np.zeros((*array.shape[:-1], n_groups), array.dtype)
            # columns first (views): ``add.at`` adds the columns of ``array`` in order
            np.add.at(np.moveaxis(sums, -1, 0), self.group, np.moveaxis(array, -1, 0))
            return sums
        # many long columns: each made a contiguous row, added in order as rows are
        columns = np.ascontiguousarray(array.reshape(-1, n_columns).T)
        sums = np.zeros((n_groups, columns.shape[1]), array.dtype)
        add_rows_in_order(sums, self.group, columns)
        return np.ascontiguousarray(sums.T).reshape(*array.shape[:-1], n_groups)

    def divided(self, sums: np.ndarray) -> np.ndarray:
        """``sums`` divided by the size of their group, in the dtype of a quotient of
        ``sums`` (float32 stays float32, as the lazy arrays declare)."""
        return sums / self.counts.astype(reduction_dtype(sums.dtype, "mean"))

    def mean(self, array: np.ndarray) -> np.ndarray:
        return self.divided(self.sum(array))

    def var(self, array: np.ndarray) -> np.ndarray:
        return self.divided(self.sum((array - self.mean(array)[..., self.group]) ** 2))

    def centre(self, array: np.ndarray) -> np.ndarray:
        """The mean refined by the mean deviation from it, from which the var and std
        gradients take deviations: a group of equal values has this value as its centre
        exactly, where its rounded mean may differ from it (three 0.1 average to
        0.1 + 1.4e-17), and so no deviation (gradients 0, as of a group of no spread)."""
        mean = self.mean(array)
        return mean + self.mean(array - mean[..., self.group])


def _reduce_values(array: np.ndarray, groups: _Groups, reduction: str) -> np.ndarray:
    """The ``reduction`` of ``array`` over each group of its last axis."""
    if reduction == "sum":
        return groups.sum(array)
    if reduction == "mean":
        return groups.mean(array)
    result = groups.var(array)
    return np.sqrt(result) if reduction == "std" else result


def _reduce_gradient(
    gradient: np.ndarray, values: np.ndarray, groups: _Groups, reduction: str
) -> np.ndarray:
    """The var or std gradient of a chunk of gradient rows, given their value rows."""
    centered = values - groups.centre(values)[..., groups.group]
    moment = groups.divided(groups.sum(gradient * broadcast_rows(centered, gradient.ndim)))
    if reduction == "var":
        return 2 * moment
    std = broadcast_rows(np.sqrt(groups.var(values)), gradient.ndim)
    with np.errstate(divide="ignore", invalid="ignore"):
        result = moment / std
    # 0 where the deviation is 0 (not differentiable there); NaN and infinities of the
    # values or gradients stay
    return np.where(std == 0, 0, result)


def _values_function(groups: _Groups, reduction: str) -> Callable[[np.ndarray], np.ndarray]:
    # a partial of a module function: dask names its tasks from the function, and
    # pickles a closure to do so (milliseconds for each array)
    return functools.partial(_reduce_values, groups=groups, reduction=reduction)


def _gradient_function(
    groups: _Groups, reduction: str
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    return functools.partial(_reduce_gradient, groups=groups, reduction=reduction)


def _reduced(array: np.ndarray, groups: _Groups, reduction: str) -> np.ndarray:
    """The reduction of a whole (tiny) array of values or gradient rows."""
    return _values_function(groups, reduction)(array)


def _reduced_gradient(
    values: np.ndarray, gradient: np.ndarray, column: np.ndarray, groups: _Groups, reduction: str
) -> np.ndarray:
    """The var or std gradient of a whole (tiny) gradient; ``column`` is its
    ``"sample"``."""
    return _gradient_function(groups, reduction)(gradient, values[column])


class _SharedGroups:
    """:func:`reduction_groups` of the properties for one reduction, and their
    :class:`_Groups`, made once per distinct Labels (told apart by their digest): the
    blocks of a map usually share their properties, and on maps of many tiny blocks
    this costs more than the sums."""

    def __init__(self, names: list[str]):
        self.names = names
        self._groups: dict[str, tuple[Labels, _Groups]] = {}

    def __call__(self, properties: Labels) -> tuple[Labels, _Groups]:
        key = properties.digest()
        if key not in self._groups:
            reduced, group = reduction_groups(properties, self.names)
            self._groups[key] = (reduced, _Groups(group, len(reduced)))
        return self._groups[key]


def _grouped_block(
    groups: TinyGroups, block: TensorBlock, properties: Labels, by: _Groups, reduction: str
) -> TensorBlock:
    """The reduction of a tiny single-chunk block as calls run by the tasks of
    ``groups`` (one task per group of blocks, see :func:`grouped_tiny_blocks`)."""
    n_groups = len(properties)
    constants = (by, reduction)
    values = block.values
    values_shape = single_chunk_shape(values)
    values_bytes = math.prod(values_shape) * values.dtype.itemsize
    dtype = reduction_dtype(values.dtype, reduction)
    name = f"{reduction}-over-properties"
    shape = (*values_shape[:-1], n_groups)
    result = groups.record(name, _reduced, [values], constants, shape, dtype, values_bytes)
    gradients = {}
    for parameter, gradient in block.gradients():
        rows = gradient.values
        rows_shape = single_chunk_shape(rows)
        rows_bytes = math.prod(rows_shape) * rows.dtype.itemsize
        shape = (*rows_shape[:-1], n_groups)
        dtype = reduction_dtype(rows.dtype, reduction)
        if reduction in ("sum", "mean"):
            new = groups.record(name, _reduced, [rows], constants, shape, dtype, rows_bytes)
        else:
            column = gradient.samples.column("sample").astype(np.int64)
            inputs = [values, rows]
            extra = (column, *constants)
            nbytes = values_bytes + rows_bytes
            new = groups.record(name, _reduced_gradient, inputs, extra, shape, dtype, nbytes)
        # made for its place: the block below takes it as it is (no copy)
        gradients[parameter] = TensorBlock._trusted(
            new,
            gradient.samples,
            gradient._components,
            properties,
            row_pointer=gradient.row_pointer,
            path=(parameter,),
        )
    return TensorBlock._trusted(result, block.samples, block._components, properties, gradients)


def _reduce_block(block: TensorBlock, shared: _SharedGroups, reduction: str) -> TensorBlock:
    check_no_gradients_of_gradients(block)
    properties, groups = shared(block.properties)
    # integers and bools are averaged as numpy does, in float64: their sums in their
    # own dtype overflow, and bools add up as a logical or
    block = in_reduction_dtype(block, reduction)
    if len(block.properties) == 0:
        gradients = {
            p: TensorBlock._trusted(g._held_values(), g.samples, g.components, properties)
            for p, g in block.gradients()
        }
        return TensorBlock._trusted(
            block._held_values(), block.samples, block.components, properties, gradients
        )
    tiny = tiny_groups([block.values, *(g.values for _, g in block.gradients())])
    if tiny is not None:
        return _grouped_block(tiny, block, properties, groups, reduction)

    values = rows_only(as_dask(block.values))
    result = da.map_blocks(
        _values_function(groups, reduction),
        values,
        chunks=(*values.chunks[:-1], (len(properties),)),
        dtype=reduction_dtype(values.dtype, reduction),
    )
    gradients = {}
    for parameter, gradient in block.gradients():
        function = _gradient_function(groups, reduction)
        if reduction in ("sum", "mean"):
            rows = rows_only(as_dask(gradient.values))
            new = da.map_blocks(
                _values_function(groups, reduction),
                rows,
                chunks=(*rows.chunks[:-1], (len(properties),)),
                dtype=reduction_dtype(rows.dtype, reduction),
            )
        else:
            rows, at_rows = values_at_gradient_rows(block, parameter)
            trailing = (*rows.shape[1:-1], len(properties))
            dtype = reduction_dtype(rows.dtype, reduction)
            new = rowwise(function, rows.chunks[0], trailing, rows, at_rows, dtype=dtype)
        gradients[parameter] = TensorBlock._trusted(
            new,
            gradient.samples,
            gradient.components,
            properties,
            row_pointer=gradient.row_pointer,
        )
    return TensorBlock._trusted(result, block.samples, block.components, properties, gradients)


@without_collector
def _reduce(tensor: TensorMap, property_names: Names, reduction: str) -> TensorMap:
    check_tensor(tensor, "tensor")
    names = checked_names(property_names, tensor.property_names, "property")
    shared = _SharedGroups(names)
    tensor = lazy_arrays(tensor)
    return float16_in_float32(
        lambda t: map_blocks(t, lambda block: _reduce_block(block, shared, reduction)),
        tensor,
        reduction,
    )


def _reduce_one(block: TensorBlock, property_names: Names, reduction: str) -> TensorBlock:
    check_block(block, "block")
    shared = _SharedGroups(checked_names(property_names, block.properties.names, "property"))
    return float16_in_float32(lambda b: _reduce_block(b, shared, reduction), block, reduction)


def _documented(kind: str, rule: str):
    return documented_reduction(kind, "properties", _RETURNS, rule)


_RETURNS = """A lazy result with one property per group (sorted); samples, components and
        gradient samples are unchanged. A block without properties keeps none, with
        the remaining property names (``_`` when all are reduced, where metatensor
        gives no names and so an invalid map)."""
_SUM = r":math:`\nabla \sum_p x_p = \sum_p \nabla x_p`."
_ON_COMPONENTS = (
    "metatensor-operations 0.5.0 divides by the group sizes along the first component "
    "axis instead of the properties on blocks with components: it fails, or gives wrong "
    "values when that component has as many entries as there are groups; this divides "
    "along the properties."
)
_MEAN = (
    r":math:`\nabla \bar{x} = \frac{1}{n} \sum_p \nabla x_p` over the :math:`n` "
    "properties of the group. " + _ON_COMPONENTS
)
_CENTRE = (
    r" The deviations are taken from the mean refined once, :math:`\bar{x} + \frac{1}{n} "
    r"\sum_p (x_p - \bar{x})`, exactly the common value of a group of equal values (whose "
    "rounded mean may not be: three 0.1 average to 0.1 + 1.4e-17), which so gets gradients "
    "0, as finite differences give; metatensor-operations 0.5.0 gives minus the mean of "
    "their gradients to its standard deviation."
)
_VAR = (
    r":math:`\nabla \mathrm{Var} = \frac{2}{n} \sum_p (x_p - \bar{x}) \nabla x_p`, with "
    "the values of the gradient row's sample. " + _ON_COMPONENTS + _CENTRE
)
_STD = (
    r":math:`\nabla \sigma = \frac{1}{n \sigma} \sum_p (x_p - \bar{x}) \nabla x_p`, 0 "
    "where :math:`\\sigma = 0`. " + _ON_COMPONENTS + _CENTRE
)


@_documented("TensorBlock", _SUM)
def sum_over_properties_block(block: TensorBlock, property_names: Names) -> TensorBlock:
    """Sum the properties of each group."""
    return _reduce_one(block, property_names, "sum")


@_documented("TensorMap", _SUM)
def sum_over_properties(tensor: TensorMap, property_names: Names) -> TensorMap:
    """Sum the properties of each group, in every block."""
    return _reduce(tensor, property_names, "sum")


@_documented("TensorBlock", _MEAN)
def mean_over_properties_block(block: TensorBlock, property_names: Names) -> TensorBlock:
    """Average the properties of each group."""
    return _reduce_one(block, property_names, "mean")


@_documented("TensorMap", _MEAN)
def mean_over_properties(tensor: TensorMap, property_names: Names) -> TensorMap:
    """Average the properties of each group, in every block."""
    return _reduce(tensor, property_names, "mean")


@_documented("TensorBlock", _VAR)
def var_over_properties_block(block: TensorBlock, property_names: Names) -> TensorBlock:
    """Variance of the properties of each group, :math:`E[(x - E[x])^2]`."""
    return _reduce_one(block, property_names, "var")


@_documented("TensorMap", _VAR)
def var_over_properties(tensor: TensorMap, property_names: Names) -> TensorMap:
    """Variance of the properties of each group, in every block."""
    return _reduce(tensor, property_names, "var")


@_documented("TensorBlock", _STD)
def std_over_properties_block(block: TensorBlock, property_names: Names) -> TensorBlock:
    """Standard deviation of the properties of each group."""
    return _reduce_one(block, property_names, "std")


@_documented("TensorMap", _STD)
def std_over_properties(tensor: TensorMap, property_names: Names) -> TensorMap:
    """Standard deviation of the properties of each group, in every block."""
    return _reduce(tensor, property_names, "std")
