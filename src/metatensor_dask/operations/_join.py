"""``join`` and ``join_blocks``: concatenate tensors along samples or properties."""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
from dask.utils import parse_bytes

from .. import config
from .._partition import block_row_pointer, co_partitioned
from ..block import TensorBlock
from ..labels import Labels
from ..tensor import TensorMap
from ._manipulation_utils import (
    as_dask,
    check_no_gradients_of_gradients,
    coalesce,
    concatenate_rows,
    take_rows,
)
from ._utils import check_blocks_raise, check_same_gradients_raise, check_same_keys_raise

__all__ = ["join", "join_blocks"]


def _row_limit(arrays: list[da.Array]) -> int:
    """Rows per merged chunk: the configured chunk size, or the inputs' largest chunk."""
    target = parse_bytes(config.get("chunk-size"))
    largest = max([1, *(c for a in arrays for c in a.chunks[0])])
    row_bytes = max(1, int(np.prod(arrays[0].shape[1:])) * arrays[0].dtype.itemsize)
    return max(largest, target // row_bytes)


def _rows_of(block: TensorBlock, parameter: str) -> tuple[da.Array, bool]:
    """The gradient values, co-partitioned with the block's values when possible."""
    gradient = block.gradient(parameter)
    if len(gradient.samples) == 0:
        value_chunks = as_dask(block.values).chunks[0]
        chunks = ((0,) * len(value_chunks), *((n,) for n in gradient.shape[1:]))
        return da.zeros(gradient.shape, dtype=gradient.dtype, chunks=chunks), True
    pairs = co_partitioned(block, parameter)
    if pairs is not None:
        return pairs[1], True
    return as_dask(gradient.values), False


def _join_samples(blocks: list[TensorBlock], fname: str, add_dimension: str | None) -> TensorBlock:
    if len(blocks) == 1:
        return blocks[0]
    first = blocks[0]
    for block in blocks:
        check_blocks_raise(first, block, fname, ["components", "properties"])
        check_same_gradients_raise(first, block, fname, ["components"])
        check_no_gradients_of_gradients(block)

    sample_values = [block.samples.values for block in blocks]
    if add_dimension is not None:
        sample_values = [
            np.concatenate([v, np.full((len(v), 1), i, np.int32)], axis=1)
            for i, v in enumerate(sample_values)
        ]
    names = first.samples.names + ([add_dimension] if add_dimension is not None else [])
    samples = Labels(names, np.concatenate(sample_values))

    values = [as_dask(block.values) for block in blocks]
    joined_values = concatenate_rows(values)
    gradients: dict[str, tuple[Any, ...]] = {}
    aligned: list[tuple[str, da.Array, np.ndarray]] = []
    limits = [_row_limit(values)]
    for parameter, first_gradient in first.gradients():
        pieces, pointers, all_aligned = [], [], True
        shifted = []
        shift = rows = 0
        for block in blocks:
            array, block_aligned = _rows_of(block, parameter)
            pieces.append(array)
            all_aligned &= block_aligned
            if all_aligned:
                pointer = block_row_pointer(block, parameter)
                assert pointer is not None, "aligned rows have a row pointer"
                pointers.append(pointer[:-1] + rows)
            gradient_samples = block.gradient(parameter).samples.values.copy()
            gradient_samples[:, 0] += shift
            shifted.append(gradient_samples)
            shift += len(block.samples)
            rows += array.shape[0]
        joined = concatenate_rows(pieces)
        joined_samples = Labels(first_gradient.samples.names, np.concatenate(shifted))
        gradients[parameter] = (joined, joined_samples, first_gradient.components, None)
        if all_aligned:
            pointer = np.concatenate([*pointers, [rows]]).astype(np.int64)
            aligned.append((parameter, joined, pointer))
            limits.append(_row_limit(pieces))

    merged = coalesce([joined_values, *(array for _, array, _ in aligned)], limits)
    joined_values = merged[0]
    for (parameter, _, pointer), array in zip(aligned, merged[1:], strict=True):
        gradients[parameter] = (array, *gradients[parameter][1:3], pointer)
    return TensorBlock._trusted(
        joined_values,
        samples,
        first.components,
        first.properties,
        {
            p: TensorBlock._trusted(array, s, c, first.properties, row_pointer=pointer)
            for p, (array, s, c, pointer) in gradients.items()
        },
    )


def _join_properties(
    blocks: list[TensorBlock], fname: str, add_dimension: str | None
) -> TensorBlock:
    if len(blocks) == 1:
        return blocks[0]
    first = blocks[0]
    for block in blocks:
        check_blocks_raise(first, block, fname, ["samples", "components"])
        check_same_gradients_raise(first, block, fname, ["components"])
        check_no_gradients_of_gradients(block)

    different_names = any(b.properties.names != first.properties.names for b in blocks)
    if different_names:
        if add_dimension is not None:
            raise ValueError(
                "We can not add an extra dimension to properties when the inputs "
                "have different property names"
            )
        properties = Labels._trusted(
            ["joined_index", "property"],
            np.concatenate(
                [
                    np.stack([np.full(len(b.properties), i), np.arange(len(b.properties))], 1)
                    for i, b in enumerate(blocks)
                ]
            )
            .astype(np.int32)
            .reshape(-1, 2),
        )
    else:
        pieces = [block.properties.values for block in blocks]
        names = first.properties.names
        if add_dimension is not None:
            pieces = [
                np.concatenate([v, np.full((len(v), 1), i, np.int32)], axis=1)
                for i, v in enumerate(pieces)
            ]
            names = [*names, add_dimension]
        properties = Labels(names, np.concatenate(pieces))

    first_values = as_dask(first.values)
    row_chunks = first_values.chunks[0]
    values = _concatenate_columns([as_dask(b.values).rechunk({0: row_chunks}) for b in blocks])
    gradients = {}
    for parameter, first_gradient in first.gradients():
        union = first_gradient.samples
        for block in blocks[1:]:
            union = union.union(block.gradient(parameter).samples)
        reference, _ = _rows_of(first, parameter)
        target = reference.chunks[0] if len(union) == reference.shape[0] else None
        gradient_pieces: list[da.Array] = []
        for block in blocks:
            gradient = block.gradient(parameter)
            array = as_dask(gradient.values)
            if gradient.samples != union:
                _, _, mapping = union.union_and_mapping(gradient.samples)
                index = -np.ones(len(union), np.int64)
                index[mapping] = np.arange(len(mapping))
                array = take_rows(array, index, fill=0)
            if target is None:
                target = array.chunks[0]
            gradient_pieces.append(array.rechunk({0: target}))
        gradients[parameter] = TensorBlock._trusted(
            _concatenate_columns(gradient_pieces), union, first_gradient.components, properties
        )
    return TensorBlock._trusted(values, first.samples, first.components, properties, gradients)


def _concatenate_columns(arrays: list[da.Array]) -> da.Array:
    joined = da.concatenate(arrays, axis=-1)
    return joined.rechunk({joined.ndim - 1: -1}) if len(joined.chunks[-1]) > 1 else joined


def _empty_like(block: TensorBlock, axis: str) -> TensorBlock:
    """A block with the metadata of ``block`` and no samples (or no properties)."""
    check_no_gradients_of_gradients(block)
    if axis == "samples":
        samples = Labels.empty(block.samples.names)
        properties = block.properties
        shape = (0, *block.shape[1:])
    else:
        samples = block.samples
        properties = Labels.empty(block.properties.names)
        shape = (*block.shape[:-1], 0)
    gradients = {}
    for parameter, gradient in block.gradients():
        if axis == "samples":
            gradient_samples = Labels.empty(gradient.samples.names)
            gradient_shape = (0, *gradient.shape[1:])
        else:
            gradient_samples = gradient.samples
            gradient_shape = (*gradient.shape[:-1], 0)
        gradients[parameter] = TensorBlock._trusted(
            da.zeros(gradient_shape, dtype=block.dtype),
            gradient_samples,
            gradient.components,
            properties,
        )
    return TensorBlock._trusted(
        da.zeros(shape, dtype=block.dtype), samples, block.components, properties, gradients
    )


def _aligned_keys(
    tensors: list[TensorMap], axis: str, different_keys: str
) -> tuple[Labels, list[list[TensorBlock]]]:
    """The output keys, and for each of them the blocks to join (one per tensor)."""
    if different_keys == "error":
        for tensor in tensors[1:]:
            check_same_keys_raise(tensors[0], tensor, "join")
        keys = tensors[0].keys
    elif different_keys in ("intersection", "union"):
        keys = tensors[0].keys
        for tensor in tensors[1:]:
            keys = (
                keys.intersection(tensor.keys)
                if different_keys == "intersection"
                else (keys.union(tensor.keys))
            )
    else:
        raise ValueError(
            f"'{different_keys}' is not a valid option for `different_keys`. Choose "
            "either 'error', 'intersection' or 'union'."
        )
    per_key = []
    positions = [keys._membership(tensor.keys) for tensor in tensors]
    for k in range(len(keys)):
        blocks = []
        for tensor, where in zip(tensors, positions, strict=False):
            if where[k] >= 0:
                blocks.append(tensor.block_by_id(int(where[k])))
            else:
                reference = next(
                    t.block_by_id(int(w[k]))
                    for t, w in zip(tensors, positions, strict=False)
                    if w[k] >= 0
                )
                blocks.append(_empty_like(reference, axis))
        per_key.append(blocks)
    return keys, per_key


def join(
    tensors: list[TensorMap],
    axis: str,
    different_keys: str = "error",
    add_dimension: str | None = None,
) -> TensorMap:
    """Join tensors along samples or properties, block by block.

    Parameters
    ----------
    tensors
        A list or tuple of maps; none is modified.
    axis
        ``"samples"`` or ``"properties"``.
    different_keys
        ``"error"`` (the keys must be the same), ``"intersection"`` (keep the common
        keys) or ``"union"`` (a missing block counts as an empty one).
    add_dimension
        Name of an extra last sample (or property) dimension holding the index of the
        input tensor, to keep entries unique.

    Returns
    -------
    TensorMap
        A lazy map; a single input is returned as is.

    Notes
    -----
    Along samples, values are concatenated lazily (no copy); neighbouring small
    chunks are merged up to the configured ``metatensor_dask.chunk-size``. Gradient
    rule: joining stacks independent entries, so gradient rows are concatenated with
    ``"sample"`` shifted by the number of samples before them, and stay co-partitioned
    with the values. Along properties the samples must be the same; the gradient
    samples are the union of the inputs' (in metatensor's order) and each input fills
    its own columns, with zeros where it has no gradient row. When property names
    differ, properties become ``["joined_index", "property"]``. Sample names must be
    identical in the same order (metatensor only compares them as sets, and then joins
    columns that do not match).
    """
    if not isinstance(tensors, (list, tuple)):
        raise TypeError(f"`tensors` must be a list or a tuple, not {type(tensors)}")
    for tensor in tensors:
        if not isinstance(tensor, TensorMap):
            raise TypeError(f"`tensors` elements must be metatensor TensorMap, not {type(tensor)}")
    if len(tensors) == 0:
        raise ValueError("provide at least one `TensorMap` for joining")
    if axis not in ("samples", "properties"):
        raise ValueError(
            "Only `'properties'` or `'samples'` are valid values for the `axis` parameter."
        )
    if len(tensors) == 1:
        return tensors[0]
    keys, per_key = _aligned_keys(list(tensors), axis, different_keys)
    if axis == "samples":
        names = {tuple(t.sample_names) for t in tensors if len(t)}
        if len(names) > 1:
            raise ValueError(
                "Different tensor have different sample names in `join`. Joining along "
                "samples with different sample names will lose information and is not "
                "supported."
            )
        blocks = [_join_samples(b, "join", add_dimension) for b in per_key]
    else:
        blocks = [_join_properties(b, "join", add_dimension) for b in per_key]
    return TensorMap._trusted(keys, blocks)


def join_blocks(
    blocks: list[TensorBlock], axis: str, add_dimension: str | None = None
) -> TensorBlock:
    """Join blocks along samples or properties.

    Parameters
    ----------
    blocks
        A list or tuple of blocks; none is modified.
    axis
        ``"samples"`` or ``"properties"``.
    add_dimension
        Name of an extra last dimension holding the index of the input block.

    Returns
    -------
    TensorBlock
        A lazy block.

    Notes
    -----
    Gradient rule: as :func:`join`, gradient rows are stacked with their values.
    """
    if not isinstance(blocks, (list, tuple)):
        raise TypeError(f"`blocks` must be a list or a tuple, not {type(blocks)}")
    for block in blocks:
        if not isinstance(block, TensorBlock):
            raise TypeError(f"`blocks` elements must be metatensor TensorBlock, not {type(block)}")
    if len(blocks) == 0:
        raise ValueError("provide at least one `TensorBlock` for joining")
    if axis not in ("samples", "properties"):
        raise ValueError(
            "Only `'properties'` or `'samples'` are valid values for the `axis` parameter"
        )
    if axis == "samples":
        if len({tuple(b.samples.names) for b in blocks}) > 1:
            raise ValueError(
                "Different blocks have different sample names in `join_blocks`. Joining "
                "along samples with different sample names will lose information and is "
                "not supported."
            )
        return _join_samples(list(blocks), "join_blocks", add_dimension)
    return _join_properties(list(blocks), "join_blocks", add_dimension)
