"""``join`` and ``join_blocks``: concatenate tensors along samples or properties.

Blocks whose arrays are all tiny single chunks are joined by one numpy call per output
array (see :mod:`._placement`), run by a few grouped tasks for a whole map; others are
concatenated chunk by chunk with dask.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask.array as da
import numpy as np

from .._gc import without_collector
from .._partition import (
    block_row_pointer,
    co_partitioned,
    gradient_row_chunks,
    row_pointer,
    split_row_chunks,
)
from ..block import TensorBlock, as_block_array
from ..errors import MetatensorError, NotEqualError, wrong_type
from ..labels import Labels
from ..tensor import TensorMap
from ._grouping import single_chunk_bytes
from ._manipulation_utils import (
    as_dask,
    block_arrays,
    check_no_gradients_of_gradients,
    coalesce,
    concatenate_rows,
    lazy_arrays,
    output_chunk_bytes,
    row_bytes,
    take_rows,
)
from ._placement import Placement, assembled
from ._utils import (
    check_blocks_raise,
    check_same_gradients_raise,
    check_same_keys_impl,
    grouped,
)

__all__ = ["join", "join_blocks"]


def _row_limit(arrays: list[da.Array]) -> int:
    """Rows per merged chunk: the inputs' largest chunk. Small neighbouring chunks are
    merged up to it, never beyond, so that a task holds no more than an input chunk
    (merging up to the configured chunk size made the peak memory follow that setting
    instead of the inputs)."""
    return max([1, *(c for a in arrays for c in a.chunks[0])])


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


def _repeated_in_one_input(axis: str, fname: str) -> str:
    """The remedy for an entry that an input of ``fname`` holds twice."""
    return (
        f"an input of `{fname}` holds an entry of its {axis} twice (Labels built with "
        "assume_unique=True); keep one row per entry"
    )


def _distinct_entries(
    names: list[str], values: np.ndarray, sources: list[Labels], axis: str, fname: str
) -> Labels:
    """The joined entries of ``axis`` (those of ``sources``, one input after the other)
    as Labels; an entry held by two of the inputs, or twice by one, is refused with
    metatensor's error, completed with the remedies."""
    try:
        return Labels(names, values)
    except MetatensorError as error:
        if any(source._repeated_entry() is not None for source in sources):
            remedy = _repeated_in_one_input(axis, fname)
        else:
            remedy = (
                f"two inputs of `{fname}` hold this entry of their {axis} "
                f'({", ".join(names)}); pass add_dimension="tensor" to keep the index of '
                "the input in a new last dimension, or give the inputs entries of their "
                "own (renumber a dimension of one of them)"
            )
        raise MetatensorError(f"{error}: {remedy}") from None


def _indexed_entries(
    names: list[str], values: np.ndarray, sources: list[Labels], axis: str, fname: str
) -> Labels:
    """Joined entries given the index of their input as a new dimension, unique by
    construction unless one of ``sources`` (the inputs' entries) repeats an entry (Labels
    built with ``assume_unique=True``): these are checked, as metatensor checks every
    joined Labels, and a repeated entry refused with its error."""
    if not any(source._may_repeat for source in sources):
        return Labels._trusted(names, values)
    try:
        return Labels(names, values)
    except MetatensorError as error:
        raise MetatensorError(f"{error}: {_repeated_in_one_input(axis, fname)}") from None


def _joined_samples(blocks: list[TensorBlock], add_dimension: str | None, fname: str) -> Labels:
    """The samples of the blocks one after the other, with the index of each block as
    the ``add_dimension`` (then unique by construction), else checked to be unique."""
    first = blocks[0]
    values = np.concatenate([block.samples.values for block in blocks])
    if add_dimension is None:
        sources = [block.samples for block in blocks]
        return _distinct_entries(first.samples.names, values, sources, "samples", fname)
    counts = [len(block.samples) for block in blocks]
    index = np.repeat(np.arange(len(blocks), dtype=np.int32), counts)[:, None]
    names = [*first.samples.names, add_dimension]
    sources = [block.samples for block in blocks]
    return _indexed_entries(names, np.hstack([values, index]), sources, "samples", fname)


def _joined_gradient_samples(blocks: list[TensorBlock], parameter: str, fname: str) -> Labels:
    """The gradient samples of the blocks one after the other, ``"sample"`` shifted by
    the samples before each block (unique: the blocks' samples do not overlap, unless a
    block's gradient samples repeat an entry)."""
    sources = [block.gradient(parameter).samples for block in blocks]
    pieces = [samples.values for samples in sources]
    shifts = np.cumsum([0] + [len(block.samples) for block in blocks[:-1]])
    values = np.concatenate(pieces)
    values[:, 0] += np.repeat(shifts, [len(piece) for piece in pieces]).astype(np.int32)
    names = sources[0].names
    return _indexed_entries(names, values, sources, f"samples of the gradient '{parameter}'", fname)


def _joined_pointer(blocks: list[TensorBlock], parameter: str) -> np.ndarray | None:
    """The row pointer of the joined gradient, when every block's rows are grouped."""
    pointers, rows = [], 0
    for block in blocks:
        pointer = block_row_pointer(block, parameter)
        if pointer is None:
            return None
        pointers.append(pointer[:-1] + rows)
        rows += int(pointer[-1])
    return np.concatenate([*pointers, [rows]]).astype(np.int64)


def _stacked(prefix: str, arrays: list[Any], placement: Placement, shape: tuple[int, ...]) -> Any:
    dtype = np.result_type(*(array.dtype for array in arrays))
    return assembled(prefix, arrays, placement, shape, dtype, 0.0)


class _Shared:
    """What the output blocks of one join share: the joined samples and gradient
    samples of inputs holding the same Labels, and the placements of pieces of the same
    lengths, made once (a map of many blocks whose blocks share their Labels then makes
    a few Labels and placements, not some per block, and their digests once)."""

    __slots__ = ("_made",)

    def __init__(self) -> None:
        self._made: dict[tuple, Any] = {}

    def get(self, key: tuple, make: Callable[[], Any]) -> Any:
        """``make()``, made once for ``key`` (the ids in a key are those of Labels that
        the input blocks hold for the whole join)."""
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = make()
        return made


def _placement(shared: _Shared, lengths: list[int]) -> Placement:
    """The pieces of ``lengths`` rows one after the other."""

    def make() -> Placement:
        starts = np.cumsum([0, *lengths[:-1]])
        return Placement([int(s) for s in starts], [0] * len(lengths))

    return shared.get(("placement", *lengths), make)


def _grouped_join_samples(
    blocks: list[TensorBlock], samples: Labels, shared: _Shared, fname: str
) -> TensorBlock:
    """The blocks stacked along samples by one numpy call per array (tiny blocks)."""
    first = blocks[0]
    placement = _placement(shared, [len(block._samples) for block in blocks])
    shape = (len(samples), *first.shape[1:])
    values = _stacked("join-samples", [block.values for block in blocks], placement, shape)
    gradients = {}
    for parameter, first_gradient in first.gradients():
        inputs = [block._gradients[parameter] for block in blocks]
        arrays = [gradient.values for gradient in inputs]
        lengths = [int(array.shape[0]) for array in arrays]
        placement = _placement(shared, lengths)
        array = _stacked(
            "join-samples-gradient", arrays, placement, (sum(lengths), *first_gradient.shape[1:])
        )

        def make(parameter: str = parameter) -> tuple[Labels, np.ndarray | None]:
            gradient_samples = _joined_gradient_samples(blocks, parameter, fname)
            pointer = row_pointer(gradient_samples.values[:, 0], len(samples))
            return gradient_samples, pointer

        key = ("gradient", parameter, *(id(b._samples) for b in blocks))
        gradient_samples, pointer = shared.get(
            (*key, *(id(gradient._samples) for gradient in inputs)), make
        )
        gradients[parameter] = TensorBlock._trusted(
            array,
            gradient_samples,
            first_gradient._components,
            first.properties,
            row_pointer=pointer,
        )
    return TensorBlock._trusted(values, samples, first._components, first.properties, gradients)


def _check_joinable_samples(first: TensorBlock, block: TensorBlock, fname: str) -> None:
    """metatensor's checks of a block joined along samples with ``first``; the checks
    that word the error run only when a quick comparison finds a difference."""
    same = (
        first._components == block._components
        and first._properties == block._properties
        and first._gradients.keys() == block._gradients.keys()
        and all(
            first._gradients[p]._components == gradient._components
            for p, gradient in block._gradients.items()
        )
    )
    if not same:
        check_blocks_raise(first, block, fname, ["components", "properties"])
        check_same_gradients_raise(first, block, fname, ["components"])
    check_no_gradients_of_gradients(block, not_yet=True)
    _check_gradient_sample_names(first, block, fname)


def _check_gradient_sample_names(first: TensorBlock, block: TensorBlock, fname: str) -> None:
    """Refuse gradients whose sample names differ from ``first``'s: their rows would be
    stacked under the first names, relabelling a dimension (metatensor does so)."""
    for parameter, gradient in block._gradients.items():
        names, expected = gradient._samples.names, first._gradients[parameter]._samples.names
        if names != expected:
            raise ValueError(
                f"the gradients '{parameter}' of the blocks given to `{fname}` have different "
                f"sample names ({expected} and {names}): joining them along samples would "
                "relabel a dimension. Give the gradients the same sample names"
            )


def _join_samples(
    blocks: list[TensorBlock],
    fname: str,
    add_dimension: str | None,
    shared: _Shared | None = None,
) -> TensorBlock:
    if len(blocks) == 1:
        return blocks[0]
    shared = _Shared() if shared is None else shared
    first = blocks[0]
    for block in blocks:
        _check_joinable_samples(first, block, fname)
    samples = shared.get(
        ("samples", add_dimension, *(id(block._samples) for block in blocks)),
        lambda: _joined_samples(blocks, add_dimension, fname),
    )
    if single_chunk_bytes(block_arrays(blocks)) is not None:
        return _grouped_join_samples(blocks, samples, shared, fname)

    values = [as_dask(block.values) for block in blocks]
    joined_values = concatenate_rows(values)
    gradients: dict[str, tuple[Any, ...]] = {}
    aligned: list[tuple[str, da.Array, np.ndarray]] = []
    limits = [_row_limit(values)]
    for parameter, first_gradient in first.gradients():
        pieces, all_aligned = [], True
        for block in blocks:
            array, block_aligned = _rows_of(block, parameter)
            pieces.append(array)
            all_aligned &= block_aligned
        joined = concatenate_rows(pieces)
        joined_samples = _joined_gradient_samples(blocks, parameter, fname)
        gradients[parameter] = (joined, joined_samples, first_gradient._components, None)
        if all_aligned:
            pointer = _joined_pointer(blocks, parameter)
            assert pointer is not None, "aligned rows have a row pointer"
            aligned.append((parameter, joined, pointer))
            limits.append(_row_limit(pieces))

    merged = coalesce([joined_values, *(array for _, array, _ in aligned)], limits)
    joined_values = merged[0]
    for (parameter, _, pointer), array in zip(aligned, merged[1:], strict=True):
        gradients[parameter] = (array, *gradients[parameter][1:3], pointer)
    return TensorBlock._trusted(
        joined_values,
        samples,
        first._components,
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
        check_no_gradients_of_gradients(block, not_yet=True)

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
        sources = [block.properties for block in blocks]
        pieces = [labels.values for labels in sources]
        names = first.properties.names
        if add_dimension is not None:
            pieces = [
                np.concatenate([v, np.full((len(v), 1), i, np.int32)], axis=1)
                for i, v in enumerate(pieces)
            ]
            names = [*names, add_dimension]
            properties = _indexed_entries(
                names, np.concatenate(pieces), sources, "properties", fname
            )
        else:
            properties = _distinct_entries(
                names, np.concatenate(pieces), sources, "properties", fname
            )
    arrays = block_arrays(blocks)
    if single_chunk_bytes(arrays) is not None:
        return _grouped_join_properties(blocks, properties)

    budget = output_chunk_bytes(arrays)
    width = len(properties)
    unions = {parameter: _gradient_union(blocks, parameter) for parameter in first.gradients_list()}
    pointers = _own_row_pointers(first, unions)
    row_chunks = split_row_chunks(
        as_dask(first.values).chunks[0],
        row_bytes(first.values, width),
        budget,
        tuple(
            (pointer, row_bytes(first.gradient(p).values, width)) for p, pointer in pointers.items()
        ),
    )
    values = _concatenate_columns([as_dask(b.values) for b in blocks], row_chunks)
    gradients = {}
    for parameter, first_gradient in first.gradients():
        union, positions = unions[parameter]
        columns = [
            _gradient_rows(block.gradient(parameter).values, union, mapping)
            for block, mapping in zip(blocks, positions, strict=True)
        ]
        if parameter in pointers:
            target = gradient_row_chunks(pointers[parameter], row_chunks)
        else:
            gradient_row_bytes = row_bytes(first_gradient.values, width)
            target = split_row_chunks(columns[0].chunks[0], gradient_row_bytes, budget)
        gradients[parameter] = TensorBlock._trusted(
            _concatenate_columns(columns, target),
            union,
            first_gradient._components,
            properties,
        )
    return TensorBlock._trusted(values, first.samples, first._components, properties, gradients)


def _own_row_pointers(
    first: TensorBlock, unions: dict[str, tuple[Labels, list[np.ndarray | None]]]
) -> dict[str, np.ndarray]:
    """The row pointers of the joined gradients whose rows are grouped by sample (the
    joined gradient is then co-partitioned): those of ``first`` when its gradient rows
    are the union of every input's, else worked out from the union."""
    pointers = {}
    for parameter, (union, positions) in unions.items():
        if positions[0] is None:
            pointer = block_row_pointer(first, parameter)
        else:
            pointer = row_pointer(union.column("sample"), len(first))
        if pointer is not None:
            pointers[parameter] = pointer
    return pointers


def _gradient_rows(array: Any, union: Labels, mapping: np.ndarray | None) -> da.Array:
    """A block's gradient ``array`` with a row for each entry of ``union`` (``mapping``:
    where its own rows go, None when they are the union), zeros where it has none."""
    array = as_dask(array)
    if mapping is None:
        return array
    index = -np.ones(len(union), np.int64)
    index[mapping] = np.arange(len(mapping))
    return take_rows(array, index, fill=0)


def _gradient_union(
    blocks: list[TensorBlock], parameter: str
) -> tuple[Labels, list[np.ndarray | None]]:
    """The union of the blocks' gradient samples (in metatensor's order), and for each
    block the position in it of each of its gradient rows (None when they are the
    union itself)."""
    union = blocks[0].gradient(parameter).samples
    for block in blocks[1:]:
        union = union.union(block.gradient(parameter).samples)
    positions: list[np.ndarray | None] = []
    for block in blocks:
        samples = block.gradient(parameter).samples
        positions.append(None if samples == union else union.union_and_mapping(samples)[2])
    return union, positions


def _grouped_join_properties(blocks: list[TensorBlock], properties: Labels) -> TensorBlock:
    """The blocks side by side along properties by one numpy call per array (tiny
    blocks); gradient rows a block lacks are zeros in its columns."""
    first = blocks[0]
    starts = [int(s) for s in np.cumsum([0] + [len(b.properties) for b in blocks[:-1]])]
    placement = Placement([0] * len(blocks), starts)
    shape = (*first.shape[:-1], len(properties))
    values = _stacked("join-properties", [block.values for block in blocks], placement, shape)
    gradients = {}
    for parameter, first_gradient in first.gradients():
        union, positions = _gradient_union(blocks, parameter)
        rows = [0 if p is None else p for p in positions]
        shape = (len(union), *first_gradient.shape[1:-1], len(properties))
        arrays = [block.gradient(parameter).values for block in blocks]
        gradients[parameter] = TensorBlock._trusted(
            _stacked("join-properties-gradient", arrays, Placement(rows, starts), shape),
            union,
            first_gradient._components,
            properties,
            row_pointer=row_pointer(union.column("sample"), len(first.samples)),
        )
    return TensorBlock._trusted(values, first.samples, first._components, properties, gradients)


def _concatenate_columns(arrays: list[da.Array], rows: tuple[int, ...]) -> da.Array:
    """``arrays`` side by side along their last axis, in one chunk along it, in the row
    chunks ``rows`` (dask's concatenation drops empty row chunks: a values chunk whose
    samples have no gradient rows would lose its gradient chunk).

    An array of no entries is made anew in those chunks: dask does not rechunk an
    array of no rows and no columns into several (empty) row chunks, and concatenating
    it with one that has them builds a graph that fails when computed.
    """
    dtype = np.result_type(*(array.dtype for array in arrays))
    shape = (*arrays[0].shape[:-1], sum(array.shape[-1] for array in arrays))
    if 0 in shape:
        return da.zeros(shape, dtype=dtype, chunks=(rows, *((n,) for n in shape[1:])))
    joined = da.concatenate([array.rechunk({0: rows}) for array in arrays], axis=-1)
    if len(joined.chunks[-1]) > 1:
        joined = joined.rechunk({joined.ndim - 1: -1})
    return joined if joined.chunks[0] == rows else joined.rechunk({0: rows})


def _no_entries(shape: tuple[int, ...], dtype: Any) -> Any:
    """An array of ``shape``, which has a zero, held as data (no task to compute it;
    grouped tasks read it directly)."""
    return as_block_array(np.zeros(shape, dtype=dtype))


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
            _no_entries(gradient_shape, block.dtype),
            gradient_samples,
            gradient.components,
            properties,
        )
    return TensorBlock._trusted(
        _no_entries(shape, block.dtype), samples, block.components, properties, gradients
    )


#: the remedy for inputs whose keys have other dimensions
_SAME_KEY_DIMENSIONS = (
    "give the inputs the same key dimensions first, with `rename_dimension`, "
    '`permute_dimensions`, `insert_dimension` or `remove_dimension` on axis="keys"'
)


def _check_same_keys(first: TensorMap, other: TensorMap) -> None:
    """Refuse maps of other keys with metatensor's error, completed with the remedies."""
    message = check_same_keys_impl(first, other, "join")
    if not message:
        return
    if first.keys.names != other.keys.names:
        # `different_keys` compares key entries: it needs the same key dimensions too
        raise NotEqualError(f"{message}: {_SAME_KEY_DIMENSIONS}")
    raise NotEqualError(
        f'{message}: pass different_keys="union" to keep every key (a block '
        'missing from an input counts as an empty one) or different_keys="intersection" '
        "to keep the keys every input has"
    )


def _combined_keys(keys: Labels, other: Labels, different_keys: str) -> Labels:
    """The union or intersection of two inputs' keys; keys of other dimensions raise
    metatensor's error, completed with the remedy."""
    try:
        return keys.intersection(other) if different_keys == "intersection" else keys.union(other)
    except MetatensorError as error:
        if keys.names == other.names:
            raise
        raise MetatensorError(f"{error}: {_SAME_KEY_DIMENSIONS}") from error


def _aligned_keys(
    tensors: list[TensorMap], axis: str, different_keys: str
) -> tuple[Labels, list[list[TensorBlock]]]:
    """The output keys, and for each of them the blocks to join (one per tensor)."""
    if different_keys == "error":
        for tensor in tensors[1:]:
            _check_same_keys(tensors[0], tensor)
        keys = tensors[0].keys
    elif different_keys in ("intersection", "union"):
        keys = tensors[0].keys
        for tensor in tensors[1:]:
            keys = _combined_keys(keys, tensor.keys, different_keys)
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
    if different_keys == "union":
        _check_completed(tensors, keys, positions, per_key)
    return keys, per_key


def _check_completed(
    tensors: list[TensorMap],
    keys: Labels,
    positions: list[np.ndarray],
    per_key: list[list[TensorBlock]],
) -> None:
    """Refuse a union whose maps, each completed by the empty blocks of the keys it
    lacks, would not be valid maps (blocks of different sample, component or property
    names, dtypes or gradients), with the error of the map's constructor, as
    metatensor."""
    for index, (tensor, where) in enumerate(zip(tensors, positions, strict=True)):
        missing = np.flatnonzero(where < 0)
        if len(missing):
            completed = tensor.keys.union(Labels(keys.names, keys.values[missing]))
            TensorMap(completed, [*tensor.blocks(), *(per_key[k][index] for k in missing)])


@without_collector
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
        keys) or ``"union"`` (a missing block counts as an empty one, with the
        metadata of the first input that has it; as in metatensor, each input
        completed by these empty blocks must be a valid map).
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
    chunks are merged up to the configured ``metatensor_dask.chunk-size``. Blocks
    whose arrays are all tiny single chunks are joined by one numpy call per output
    array, a few grouped tasks for the whole map. Gradient
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
            raise wrong_type(
                f"`tensors` elements must be metatensor TensorMap, not {type(tensor)}", tensor
            )
    if len(tensors) == 0:
        raise ValueError("provide at least one `TensorMap` for joining")
    if axis not in ("samples", "properties"):
        raise ValueError(
            "Only `'properties'` or `'samples'` are valid values for the `axis` parameter."
        )
    if len(tensors) == 1:
        return tensors[0]
    keys, per_key = _aligned_keys([lazy_arrays(t) for t in tensors], axis, different_keys)
    if axis == "samples":
        names = {tuple(b.samples.names) for blocks in per_key for b in blocks}
        if len(names) > 1:
            raise ValueError(
                "Different tensor have different sample names in `join`. Joining along "
                "samples with different sample names will lose information and is not "
                "supported."
            )
        shared = _Shared()
        return grouped(
            keys, lambda: [_join_samples(b, "join", add_dimension, shared) for b in per_key]
        )
    # tiny blocks are joined by a few grouped tasks (see grouped_tiny_blocks)
    return grouped(keys, lambda: [_join_properties(b, "join", add_dimension) for b in per_key])


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
            raise wrong_type(
                f"`blocks` elements must be metatensor TensorBlock, not {type(block)}", block
            )
    if len(blocks) == 0:
        raise ValueError("provide at least one `TensorBlock` for joining")
    if axis not in ("samples", "properties"):
        raise ValueError(
            "Only `'properties'` or `'samples'` are valid values for the `axis` parameter"
        )
    blocks = [lazy_arrays(block) for block in blocks]
    if axis == "samples":
        if len({tuple(b.samples.names) for b in blocks}) > 1:
            raise ValueError(
                "Different blocks have different sample names in `join_blocks`. Joining "
                "along samples with different sample names will lose information and is "
                "not supported."
            )
        return _join_samples(blocks, "join_blocks", add_dimension)
    return _join_properties(blocks, "join_blocks", add_dimension)
