"""Move key dimensions to samples or properties, and components to properties.

These are ``TensorMap`` methods in metatensor-core; here they are functions (also
available as methods). The merged metadata (samples, properties, gradient samples and
where each block's entries go) is found with numpy on all merged blocks at once.
Merged blocks that are all tiny single chunks become one numpy call per output array
or row chunk (see :mod:`._stacking`; their arrays are walked once, see
:mod:`._pieces`), run by a few grouped tasks; otherwise rows are concatenated
with ``dask.array.concatenate`` and only reordered (dask's fancy indexing) when the
merged samples are not already in the blocks' order. Gradients are rebuilt with the
same moves and stay co-partitioned with their values.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import dask.array as da
import numpy as np

from .._gc import without_collector
from .._partition import gradient_row_chunks, row_pointer, split_row_chunks
from ..block import TensorBlock
from ..errors import invalid_parameter, wrong_type
from ..labels import Labels, check_unique_names
from ..tensor import TensorMap
from ._grouping import single_chunk_shape, tiny_groups
from ._manipulation_utils import (
    as_dask,
    block_arrays,
    coalesce,
    inverse_permutation,
    lazy_arrays,
    lexsort_rows,
    max_rows,
    output_chunk_bytes,
    row_bytes,
    rows_only,
    same_labels,
    take_rows,
    unique_rows,
)
from ._pieces import tiny_pieces
from ._placement import Placement, Target
from ._stacking import ColumnStarts, RowTargets, stacked
from ._utils import check_tensor, grouped

__all__ = ["components_to_properties", "keys_to_properties", "keys_to_samples"]


# -- shared ---------------------------------------------------------------------------


def _names_to_move(keys_to_move: Any, function: str) -> tuple[list[str], Labels | None]:
    if isinstance(keys_to_move, Labels):
        if len(keys_to_move) == 0:
            return keys_to_move.names, None
        if function == "keys_to_samples":
            raise invalid_parameter(
                "user provided values for the keys to move is not yet implemented, "
                "`keys_to_move` should not contain any entry when calling keys_to_samples"
            )
        return keys_to_move.names, keys_to_move
    names = _names_given(keys_to_move)
    if names is not None:
        return names, None
    raise wrong_type(
        "`keys_to_move` must be a string, a sequence of strings or Labels, "
        f"not {type(keys_to_move)}{_set_hint(keys_to_move)}",
        keys_to_move,
    )


def _names_given(value: Any) -> list[str] | None:
    """``value`` as a list of dimension names, as metatensor takes them: a string, a
    sequence of strings or a 1-D numpy array of strings (numpy strings become ``str``);
    ``None`` for anything else."""
    if isinstance(value, str):
        return [str(value)]
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind == "U":
        return [str(name) for name in value]
    if isinstance(value, Sequence) and all(isinstance(name, str) for name in value):
        return [str(name) for name in value]
    return None


def _set_hint(value: Any) -> str:
    """The remedy for names given as a set, whose order changes from one run to the next
    (metatensor takes it, and moves the dimensions in that order)."""
    if isinstance(value, (set, frozenset)):
        return "; a set has no order: give the names in a list, in the order to move them"
    return ""


def _check_not_taken(names: list[str], taken: list[str], axis: str) -> None:
    """Refuse to move a dimension onto an axis that already has one of its name
    (metatensor stops on an internal assertion)."""
    for name in names:
        if name in taken:
            raise invalid_parameter(
                f"can not move '{name}' to the {axis}: they already have a dimension "
                f"named '{name}'; rename one of them first (rename_dimension)"
            )


def _first_appearance(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique rows in order of first appearance, and each row's position among them."""
    unique, inverse = unique_rows(rows)
    first = np.full(len(unique), len(rows), np.int64)
    np.minimum.at(first, inverse, np.arange(len(rows)))
    order = np.argsort(first, kind="stable")
    return unique[order].astype(np.int32), inverse_permutation(order)[inverse]


def _members(which: np.ndarray, count: int) -> list[np.ndarray]:
    """For each of ``count`` groups, the positions ``i`` (increasing) with
    ``which[i]`` equal to it."""
    order = np.argsort(which, kind="stable")
    return np.split(order, np.cumsum(np.bincount(which, minlength=count))[:-1])


def _groups(
    tensor: TensorMap, names: list[str], function: str
) -> tuple[Labels, list[np.ndarray], list[list[TensorBlock]], np.ndarray]:
    """The remaining keys, the positions of the blocks merged into each and these
    blocks, and the moved key columns."""
    if len(tensor) == 0:
        raise invalid_parameter("there are no keys to move in an empty TensorMap")
    key_names = tensor.keys.names
    for name in names:
        if name not in key_names:
            raise invalid_parameter(f"'{name}' is not part of the keys for this tensor map")
    moved = [key_names.index(n) for n in names]
    kept = [i for i in range(len(key_names)) if i not in moved]
    if kept:
        new_keys, which = _first_appearance(tensor.keys.values[:, kept])
        keys = Labels._trusted([key_names[i] for i in kept], new_keys)
    else:
        keys, which = Labels.single(), np.zeros(len(tensor), np.int64)
    members = _members(which, len(keys))
    blocks = tensor.blocks()
    if any(g._gradients for block in blocks for g in block._gradients.values()):
        raise invalid_parameter(f"gradient of gradients are not supported yet in {function}")
    merged = [[blocks[i] for i in positions.tolist()] for positions in members]
    for group in merged:
        components = [block._components for block in group]
        reference = components[0]
        same = all(len(c) == len(reference) for c in components) and all(
            same_labels([c[k] for c in components], reference[k]) for k in range(len(reference))
        )
        if not same:
            where = "samples" if function == "keys_to_samples" else "properties"
            raise invalid_parameter(
                f"can not move keys to {where} if the blocks have different components "
                "labels, call components_to_properties first"
            )
    return keys, members, merged, tensor.keys.values[:, moved]


def _fill_value(tensor: TensorMap, fill_value: Any) -> Any:
    """``fill_value`` in the dtype of the values, as metatensor converts it (1.5 becomes
    1 for integers), refused when it has no value there (NaN or infinity for integers),
    with numpy's error as metatensor raises it, before anything is built."""
    if not isinstance(tensor, TensorMap) or len(tensor) == 0:
        return fill_value
    try:
        converted = np.array(fill_value, dtype=tensor.dtype)
    except (ValueError, OverflowError, TypeError) as error:
        raise type(error)(
            f"{error}: `fill_value` {fill_value!r} can not be stored in this tensor's "
            f"{tensor.dtype} values; give a value of that dtype, or convert the tensor "
            "first (`tensor.to(dtype=...)`)"
        ) from error
    if converted.ndim != 0:
        shape = ", ".join(str(size) for size in converted.shape)
        raise invalid_parameter(
            f"fill_value must be a single scalar, got a shape [{shape}]: give one number, "
            "used for every entry missing from a block"
        )
    return converted[()]


def _keys_moved(
    tensor: TensorMap,
    keys_to_move: Any,
    function: str,
    merge: Callable[[list[TensorBlock], Labels, list[str], Labels | None], TensorBlock],
) -> TensorMap:
    """Check the arguments of ``function``, then build each new block with ``merge(blocks,
    their moved key entries, moved names, selected key entries or None)``; ``info`` is
    kept. The moved key entries may repeat one when the keys may (see
    :meth:`Labels._made_from`)."""
    check_tensor(tensor, "tensor")
    names, selected = _names_to_move(keys_to_move, function)
    check_unique_names(names)  # first, as metatensor
    tensor = lazy_arrays(tensor)
    keys, members, merged, moved = _groups(tensor, names, function)
    if function == "keys_to_samples":
        _check_not_taken(names, tensor.sample_names, "samples")
    else:
        _check_not_taken(names, tensor.property_names, "properties")

    def build() -> list[TensorBlock]:
        return [
            merge(group, Labels._made_from(names, moved[m], tensor.keys), names, selected)
            for m, group in zip(members, merged, strict=True)
        ]

    # blocks made of tiny blocks are built by a few grouped tasks
    return grouped(keys, build, tensor.info())


def _merge_samples(sample_values: list[np.ndarray], sort_samples: bool) -> tuple[np.ndarray, _Rows]:
    """metatensor's merged samples (first appearance, optionally sorted) and where each
    block's samples go (each block's target 0 when its samples are the merged samples,
    in order)."""
    first = sample_values[0]
    counts = np.fromiter((len(v) for v in sample_values), np.int64, len(sample_values))
    if all(v is first or np.array_equal(v, first) for v in sample_values[1:]):
        # blocks with the same samples (the usual case): no search needed
        if not sort_samples:
            return first, _Rows(counts, targets=[0] * len(sample_values))
        order = lexsort_rows(first)
        in_order = bool(np.all(order == np.arange(len(order))))
        rank = 0 if in_order else inverse_permutation(order)
        return first[order], _Rows(counts, targets=[rank] * len(sample_values))
    merged, position = _first_appearance(np.concatenate(sample_values))
    if sort_samples:
        order = lexsort_rows(merged)
        merged, position = merged[order], inverse_permutation(order)[position]
    return merged, _Rows(counts, positions=position)


def _stacked_samples(
    stacked: np.ndarray, counts: np.ndarray, sort_samples: bool
) -> tuple[np.ndarray, _Rows]:
    """The samples of the blocks (``counts`` rows each, all different: each block has
    its own moved key values) one after the other, optionally sorted, and where each
    block's samples go (each block's first position when they stay consecutive)."""
    if not sort_samples:
        starts = np.cumsum(counts) - counts
        return stacked, _Rows(counts, targets=starts.tolist())
    order = lexsort_rows(stacked)
    return stacked[order], _Rows(counts, positions=inverse_permutation(order))


class _Rows:
    """Where the rows of merged blocks go in the output (``counts`` rows each): for
    the rows of all blocks one after the other, their output row (:attr:`positions`),
    or for each block, its target (:attr:`targets`, see :class:`Placement`); each is
    found from the other when first asked for."""

    __slots__ = ("_positions", "_targets", "counts")

    def __init__(
        self,
        counts: np.ndarray,
        positions: np.ndarray | None = None,
        targets: Sequence[Target] | None = None,
    ):
        self.counts = np.asarray(counts, np.int64)
        self._positions, self._targets = positions, targets

    @property
    def positions(self) -> np.ndarray:
        if self._positions is None:
            assert self._targets is not None
            self._positions = _positions(self._targets, self.counts.tolist())
        return self._positions

    @property
    def targets(self) -> Sequence[Target]:
        if self._targets is None:
            assert self._positions is not None
            self._targets = _split(self._positions, self.counts.tolist())
        return self._targets

    def shared_target(self) -> Target | None:
        """The target of every block when all blocks have as many rows and the same
        target (blocks whose samples are all the merged samples), else None."""
        targets = self._targets
        if not targets or any(t is not targets[0] for t in targets):
            return None
        return targets[0] if (self.counts == self.counts[0]).all() else None

    def in_order(self, size: int) -> bool:
        """Whether every block's rows are all ``size`` output rows, in order."""
        if not (self.counts == size).all():
            return False
        if self._targets is not None and all(isinstance(t, int) and t == 0 for t in self._targets):
            return True
        if size == 0:
            return True
        return bool((self.positions.reshape(-1, size) == np.arange(size)).all())


def _split(array: np.ndarray, counts: Sequence[int]) -> list[np.ndarray]:
    """``array`` cut in consecutive pieces of ``counts`` entries."""
    bounds = np.cumsum([0, *counts]).tolist()
    # slices between Python ints: ``np.split`` costs several times more per piece
    return [array[start:stop] for start, stop in itertools.pairwise(bounds)]


def _split_like(array: np.ndarray, pieces: Sequence[Any]) -> list[np.ndarray]:
    """``array`` (one entry per row of the concatenated ``pieces``) cut like ``pieces``."""
    return _split(array, [len(p) for p in pieces])


def _positions(mappings: Sequence[Target], counts: list[int]) -> np.ndarray:
    """The targets of ``mappings`` (see :class:`Placement`, ``counts`` entries each)
    as one array of positions."""
    if all(isinstance(m, int) for m in mappings):
        offsets = np.cumsum([0, *counts[:-1]])
        shift = np.asarray(mappings, np.int64) - offsets
        return np.repeat(shift, counts) + np.arange(sum(counts), dtype=np.int64)
    return np.concatenate([_as_index(m, n) for m, n in zip(mappings, counts, strict=True)])


def _as_index(target: Target, count: int) -> np.ndarray:
    """A placement target (see :class:`Placement`) as positions, for ``count`` entries."""
    if isinstance(target, np.ndarray):
        return target
    return np.arange(target, target + count, dtype=np.int64)


def _source_rows(mappings: list[np.ndarray], count: int) -> np.ndarray:
    """For each output row, the row of the concatenated inputs that fills it (the last
    one when several do, as metatensor copies blocks in order), or -1."""
    source = -np.ones(count, np.int64)
    start = 0
    for mapping in mappings:
        source[mapping] = start + np.arange(len(mapping))
        start += len(mapping)
    return source


def _gradients_of(blocks: list[TensorBlock], parameter: str) -> list[TensorBlock]:
    """The ``parameter`` gradient of each block (metatensor's error when one has none)."""
    found = [block._gradients.get(parameter) for block in blocks]
    if any(gradient is None for gradient in found):
        missing = next(b for b, g in zip(blocks, found, strict=True) if g is None)
        missing.gradient(parameter)  # raises
    return found  # type: ignore[return-value]


def _merged_gradient_samples(gradients: list[TensorBlock], rows: _Rows) -> tuple[Labels, _Rows]:
    """Sorted unique samples of the ``gradients`` of the merged blocks after
    renumbering ``"sample"`` with ``rows`` (where each block's samples go), and where
    each input gradient row goes among them.

    When every block has the same gradient samples and its samples go to the same
    merged rows (``keys_to_properties`` of blocks with the same samples), the rows of
    all blocks are renumbered alike: they are merged once, on one block's."""
    first = gradients[0].samples
    target = rows.shared_target()
    if target is not None and same_labels([g.samples for g in gradients], first):
        index = _as_index(target, int(rows.counts[0]))
        renumbered = first.values.copy()
        if len(renumbered):
            renumbered[:, 0] = index[renumbered[:, 0]]
        merged, position = _sorted_unique(renumbered, int(index.max(initial=-1)) + 1)
        in_place = len(merged) == len(position) and (position == np.arange(len(position))).all()
        counts = np.full(len(gradients), len(renumbered), np.int64)
        targets = [0 if in_place else position] * len(gradients)
        return Labels._trusted(first.names, merged), _Rows(counts, targets=targets)
    pieces = [gradient.samples.values for gradient in gradients]
    counts = np.fromiter((len(p) for p in pieces), np.int64, len(pieces))
    renumbered = np.concatenate(pieces)
    if len(renumbered):
        offsets = np.repeat(np.cumsum(rows.counts) - rows.counts, counts)
        renumbered[:, 0] = rows.positions[renumbered[:, 0] + offsets]
    merged, position = _sorted_unique(renumbered, int(rows.positions.max(initial=-1)) + 1)
    return Labels._trusted(first.names, merged), _Rows(counts, positions=position)


def _sorted_unique(rows: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`unique_rows` of renumbered gradient samples (``"sample"`` in ``[0,
    size)``), in linear time when :func:`_unique_grouped_rows` can."""
    found = _unique_grouped_rows(rows, size)
    merged, position = unique_rows(rows) if found is None else found
    if len(position) == 0:
        merged = np.zeros((0, rows.shape[1]), np.int32)
    return merged, position


def _unique_grouped_rows(rows: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`unique_rows` of ``rows`` in linear time, when the rows of each value of
    the first column (in ``[0, size)``) are consecutive, increasing and distinct by the
    other columns (``keys_to_samples``: each merged sample is one block's, whose
    gradient rows are grouped by sample); else None (a sort is needed)."""
    n = len(rows)
    if n == 0 or rows.shape[1] == 0:
        return None
    first = rows[:, 0].astype(np.int64)
    change = np.ones(n, bool)
    change[1:] = first[1:] != first[:-1]
    runs = np.flatnonzero(change)
    counts = np.bincount(first, minlength=size)
    if len(runs) != np.count_nonzero(counts):
        return None  # a value of the first column in several runs
    if n > 1 and not change[1:].all():
        if rows.shape[1] == 1:
            return None  # repeated rows
        within = ~change[1:]
        difference = rows[1:, 1:][within].astype(np.int64) - rows[:-1, 1:][within]
        differs = difference != 0
        leading = difference[np.arange(len(difference)), differs.argmax(axis=1)]
        if not (differs.any(axis=1) & (leading > 0)).all():
            return None  # rows not increasing within a run
    rank = np.arange(n) - runs[np.cumsum(change) - 1]
    position = (np.cumsum(counts) - counts)[first] + rank
    merged = np.empty_like(rows)
    merged[position] = rows
    return merged, position


def _properties_union(blocks: list[TensorBlock]) -> tuple[Labels, Sequence[Target]]:
    """The union of the blocks' properties (in order of first appearance, as
    metatensor's repeated unions), and where each block's properties are in it."""
    first = blocks[0].properties
    if same_labels([block.properties for block in blocks], first):
        return first, [0] * len(blocks)
    pieces = [block.properties.values for block in blocks]
    union, position = _first_appearance(np.concatenate(pieces))
    return Labels._trusted(first.names, union), list(_split_like(position, pieces))


def _spread_columns(array: da.Array, columns: np.ndarray, width: int, fill: float) -> da.Array:
    """``array`` with its last axis placed at ``columns`` of a ``width``-wide axis."""
    if width == array.shape[-1] and np.array_equal(columns, np.arange(width)):
        return array
    array = rows_only(array)

    def spread(block: np.ndarray) -> np.ndarray:
        out = np.full((*block.shape[:-1], width), fill, dtype=block.dtype)
        out[..., columns] = block
        return out

    return da.map_blocks(spread, array, chunks=(*array.chunks[:-1], (width,)), dtype=array.dtype)


def _finish(
    values: da.Array,
    gradients: dict[str, tuple[da.Array, Labels, list[Labels]]],
    samples: Labels,
    components: list[Labels],
    properties: Labels,
    limits: list[int],
) -> TensorBlock:
    """Co-partition gradients with the values, merge small chunks, build the block."""
    arrays, parameters = [values], []
    for parameter, (array, gradient_samples, _) in gradients.items():
        pointer = row_pointer(gradient_samples.column("sample"), len(samples))
        if pointer is not None and len(gradient_samples):
            array = array.rechunk({0: gradient_row_chunks(pointer, values.chunks[0])})
            arrays.append(array)
            parameters.append(parameter)
        gradients[parameter] = (array, *gradients[parameter][1:])
    merged = (
        coalesce(arrays, limits[: len(arrays)]) if len(parameters) == len(gradients) else arrays
    )
    blocks = {}
    for parameter, (array, gradient_samples, gradient_components) in gradients.items():
        if parameter in parameters:
            array = merged[1 + parameters.index(parameter)]
        blocks[parameter] = TensorBlock._trusted(
            array, gradient_samples, gradient_components, properties
        )
    return TensorBlock._trusted(merged[0], samples, components, properties, blocks)


# -- keys to samples ------------------------------------------------------------------


def _assembled_block(
    prefix: str,
    blocks: list[TensorBlock],
    gradients_of: dict[str, list[TensorBlock]],
    rows: dict[str, tuple[Labels, _Rows]],
    samples: Labels,
    properties: Labels,
    columns: Sequence[Target | None],
    fill: float,
) -> TensorBlock | None:
    """The merged block of tiny blocks, each array one numpy call (see
    :mod:`._stacking`), or None unless every array placed is a tiny single chunk.

    ``gradients_of`` gives each block's gradient of each parameter; ``rows``, for the
    values (``""``) and each gradient, the output samples and where each block's rows
    go; ``columns`` where each block's properties go (None:
    the block is left out).
    """
    first = blocks[0]
    placed = [i for i, c in enumerate(columns) if c is not None]
    if not placed:
        return None
    everyone = len(placed) == len(blocks)
    chosen = blocks if everyone else [blocks[i] for i in placed]
    held = {"": [block._held_values() for block in chosen]}
    shapes = {"": first.shape}
    for parameter, gradient in first.gradients():
        of = gradients_of[parameter]
        held[parameter] = [g._held_values() for g in (of if everyone else [of[i] for i in placed])]
        shapes[parameter] = gradient.shape
    pieces = {}
    for key, arrays in held.items():
        found = tiny_pieces(arrays)
        if found is None:
            return None
        pieces[key] = found
    # the common layouts, each a few arrays whatever the blocks: blocks of the same
    # properties stacked along rows, or of the same rows side by side; a block that
    # starts at column 0 fills every column only when it is as wide as the output (not
    # so when keys_to_properties is given entries that some merged block lacks)
    starts = [c for c in columns if c is not None]
    by_rows = everyone and all(
        isinstance(c, int) and c == 0 and len(b.properties) == len(properties)
        for c, b in zip(starts, blocks, strict=True)
    )
    by_columns = (
        not by_rows
        and all(isinstance(c, int) for c in starts)
        and all(r.in_order(len(labels)) for labels, r in rows.values())
    )
    if by_columns:
        widths = np.array([len(blocks[i].properties) for i in placed], np.int64)
        order = np.argsort(np.asarray(starts, np.int64), kind="stable")

    def merged(key: str) -> Any:
        labels, where = rows[key]
        part = pieces[key]
        shape = (len(labels), *shapes[key][1:-1], len(properties))
        layout: Any
        if by_rows:
            layout = RowTargets(where.positions, where.counts, len(labels))
        elif by_columns:
            part = part.subset(order)
            layout = ColumnStarts(np.asarray(starts, np.int64)[order], widths[order])
        else:
            targets = where.targets
            layout = Placement([targets[i] for i in placed], starts)
        return stacked(prefix, part, layout, shape, part.dtype, fill)

    gradients = {}
    for parameter, first_gradient in first.gradients():
        gradient_samples = rows[parameter][0]
        gradients[parameter] = TensorBlock._trusted(
            merged(parameter),
            gradient_samples,
            first_gradient.components,
            properties,
            row_pointer=row_pointer(gradient_samples.column("sample"), len(samples)),
        )
    return TensorBlock._trusted(merged(""), samples, first.components, properties, gradients)


def _merge_along_samples(
    blocks: list[TensorBlock], moved: Labels, names: list[str], fill: float, sort: bool
) -> TensorBlock:
    first = blocks[0]
    sample_values = [block.samples.values for block in blocks]
    counts = np.fromiter((len(v) for v in sample_values), np.int64, len(sample_values))
    stacked_values = np.hstack(
        [np.concatenate(sample_values), np.repeat(moved.values, counts, axis=0)]
    )
    merged, mappings = _stacked_samples(stacked_values, counts, sort)
    samples = Labels._made_from(
        first.samples.names + names, merged, moved, *(block.samples for block in blocks)
    )
    properties, columns = _properties_union(blocks)
    width = len(properties)
    gradients_of = {p: _gradients_of(blocks, p) for p in first.gradients_list()}
    gradient_rows = {
        parameter: _merged_gradient_samples(gradients, mappings)
        for parameter, gradients in gradients_of.items()
    }
    rows: dict[str, tuple[Labels, _Rows]] = {"": (samples, mappings), **gradient_rows}
    grouped_block = _assembled_block(
        "keys-to-samples", blocks, gradients_of, rows, samples, properties, columns, fill
    )
    if grouped_block is not None:
        return grouped_block

    index_columns = [_as_index(c, len(b.properties)) for b, c in zip(blocks, columns, strict=True)]
    pieces = [
        _spread_columns(as_dask(b.values), c, width, fill)
        for b, c in zip(blocks, index_columns, strict=True)
    ]
    sources = [_as_index(m, n) for m, n in zip(mappings.targets, counts.tolist(), strict=True)]
    values = take_rows(da.concatenate(pieces), _source_rows(sources, len(merged)))
    limits = [max(max_rows(p) for p in pieces)]
    gradients = {}
    for parameter, first_gradient in first.gradients():
        gradient_samples, positions = gradient_rows[parameter]
        gradient_pieces = [
            _spread_columns(as_dask(b.gradient(parameter).values), c, width, fill)
            for b, c in zip(blocks, index_columns, strict=True)
        ]
        targets = zip(positions.targets, positions.counts.tolist(), strict=True)
        source = _source_rows([_as_index(t, n) for t, n in targets], len(gradient_samples))
        array = take_rows(da.concatenate(gradient_pieces), source)
        gradients[parameter] = (array, gradient_samples, first_gradient.components)
        limits.append(max(max_rows(p) for p in gradient_pieces))
    return _finish(values, gradients, samples, first.components, properties, limits)


@without_collector
def keys_to_samples(
    tensor: TensorMap,
    keys_to_move: str | Sequence[str] | Labels,
    *,
    fill_value: float = 0.0,
    sort_samples: bool = True,
) -> TensorMap:
    """Merge the blocks that differ only by ``keys_to_move`` along samples.

    Parameters
    ----------
    tensor
        The input map; it is not modified.
    keys_to_move
        Key dimension(s) to move: a name, names, or empty Labels (their names).
    fill_value
        Value of the entries of properties a merged block did not have (values and
        gradients, as metatensor does).
    sort_samples
        Sort the merged samples lexicographically; otherwise keep them in block order.

    Returns
    -------
    TensorMap
        The moved dimensions are the last sample dimensions; moving every key gives
        the single key ``_=0``. The ``info`` of ``tensor`` is kept.

    Notes
    -----
    Gradient rule: moving metadata does not change any value, so each gradient row
    follows its value row: ``"sample"`` is renumbered to the merged samples and rows
    are sorted (as metatensor does), which keeps them grouped by sample and
    co-partitioned with the values. Values are concatenated lazily and reordered
    only when sorting changes the order; blocks that are all tiny single chunks are
    merged by one numpy call per output array.
    """
    fill_value = _fill_value(tensor, fill_value)
    return _keys_moved(
        tensor,
        keys_to_move,
        "keys_to_samples",
        lambda blocks, moved, names, _: _merge_along_samples(
            blocks, moved, names, fill_value, sort_samples
        ),
    )


# -- keys to properties ---------------------------------------------------------------


def _placed(
    pieces: list[tuple[int, da.Array]], width: int, rows: int, like: da.Array, fill: float
) -> da.Array:
    """Concatenate ``(start, array)`` pieces along the last axis of a ``width``-wide
    array, with ``fill`` between them."""
    row_chunks = like.chunks[0]
    trailing = like.shape[1:-1]
    parts, position = [], 0
    for start, array in sorted(pieces, key=lambda p: p[0]):
        if start > position:
            parts.append(
                da.full(
                    (rows, *trailing, start - position),
                    fill,
                    dtype=like.dtype,
                    chunks=(row_chunks, *trailing, start - position),
                )
            )
        parts.append(rows_only(array).rechunk({0: row_chunks}))
        position = start + array.shape[-1]
    if position < width or not parts:
        parts.append(
            da.full(
                (rows, *trailing, width - position),
                fill,
                dtype=like.dtype,
                chunks=(row_chunks, *trailing, width - position),
            )
        )
    joined = da.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]
    return rows_only(joined)


def _template(rows: int, block: TensorBlock, rows_per_chunk: int) -> da.Array:
    """Zeros of ``rows`` rows shaped like ``block``'s other axes, in chunks of
    ``rows_per_chunk`` rows: the row chunks and dtype of a merged array that no block
    contributes columns to. (dask's automatic chunks divide by zero when an axis has
    length 0.)"""
    shape = (rows, *block.shape[1:])
    return da.zeros(shape, dtype=block.dtype, chunks=(rows_per_chunk, *shape[1:]))


def _merge_along_properties(
    blocks: list[TensorBlock],
    moved: Labels,
    names: list[str],
    selected: Labels | None,
    fill: float,
    sort: bool,
) -> TensorBlock:
    first = blocks[0]
    if selected is not None:
        for block in blocks:
            if block.properties != first.properties:
                raise invalid_parameter(
                    "can not provide values for the keys to move to properties if the "
                    "blocks have different property labels"
                )
        columns = [selected.names.index(n) for n in names]
        entries = selected.values[:, columns]
        n_props = len(first.properties)
        property_values = np.concatenate(
            [
                np.repeat(entries, n_props, axis=0),
                np.tile(first.properties.values, (len(entries), 1)),
            ],
            axis=1,
        )
        # the entry of each block's key (-1 for a block left out)
        where = moved._membership(Labels._trusted(names, entries.astype(np.int32)))
        starts = [int(w) * n_props if w >= 0 and n_props else None for w in where]
    else:
        counts = [len(block.properties) for block in blocks]
        property_values = np.hstack(
            [
                np.repeat(moved.values, counts, axis=0),
                np.concatenate([block.properties.values for block in blocks]),
            ]
        )
        offsets = np.cumsum([0, *counts[:-1]])
        starts = [int(o) if n else None for o, n in zip(offsets, counts, strict=True)]
    sources = (moved, *(block.properties for block in blocks))
    properties = Labels._made_from(
        names + first.properties.names,
        property_values.astype(np.int32),
        *(sources if selected is None else (selected, first.properties)),
    )
    width = len(properties)

    merged, mappings = _merge_samples([b.samples.values for b in blocks], sort)
    samples = Labels._made_from(first.samples.names, merged, *(b.samples for b in blocks))
    gradients_of = {p: _gradients_of(blocks, p) for p in first.gradients_list()}
    gradient_rows = {
        parameter: _merged_gradient_samples(gradients, mappings)
        for parameter, gradients in gradients_of.items()
    }
    rows: dict[str, tuple[Labels, _Rows]] = {"": (samples, mappings), **gradient_rows}
    grouped_block = _assembled_block(
        "keys-to-properties", blocks, gradients_of, rows, samples, properties, starts, fill
    )
    if grouped_block is not None:
        return grouped_block
    indices = [_as_index(m, len(b.samples)) for m, b in zip(mappings.targets, blocks, strict=True)]
    # the output's rows are cut so that no chunk outgrows the inputs' largest or the
    # configured size: blocks side by side make rows as wide as all of them
    budget = output_chunk_bytes(block_arrays(blocks))

    def expanded(array: da.Array, mapping: np.ndarray, count: int, limit: int) -> da.Array:
        # a tiny block spread over the rows of a large one: chunks of the output's
        # size (``limit`` rows), not of the tiny block's (a task per few rows)
        index = -np.ones(count, np.int64)
        index[mapping] = np.arange(len(mapping))
        return take_rows(array, index, fill, limit, merge_small_chunks=True)

    limits = [max(1, budget // max(1, row_bytes(first, width)))]
    value_pieces = [
        (start, expanded(as_dask(b.values), m, len(merged), limits[0]))
        for b, m, start in zip(blocks, indices, starts, strict=False)
        if start is not None
    ]
    pointers = _grouped_pointers(gradient_rows, len(merged))
    like = value_pieces[0][1] if value_pieces else _template(len(merged), first, limits[0])
    row_chunks = split_row_chunks(
        like.chunks[0],
        row_bytes(first, width),
        budget,
        tuple((pointers[p], row_bytes(g, width)) for p, g in first.gradients() if p in pointers),
    )
    values = _placed(value_pieces, width, len(merged), like.rechunk({0: row_chunks}), fill)
    gradients = {}
    for parameter, first_gradient in first.gradients():
        gradient_samples, positions = gradient_rows[parameter]
        count = len(gradient_samples)
        gradient_row_bytes = row_bytes(first_gradient, width)
        limits.append(max(1, budget // max(1, gradient_row_bytes)))
        pieces = [
            (
                start,
                expanded(as_dask(b.gradient(parameter).values), _as_index(p, n), count, limits[-1]),
            )
            for b, p, n, start in zip(
                blocks, positions.targets, positions.counts.tolist(), starts, strict=False
            )
            if start is not None
        ]
        like = pieces[0][1] if pieces else _template(count, first_gradient, limits[-1])
        if parameter in pointers:
            like = like.rechunk({0: gradient_row_chunks(pointers[parameter], row_chunks)})
        else:
            like = like.rechunk({0: split_row_chunks(like.chunks[0], gradient_row_bytes, budget)})
        gradients[parameter] = (
            _placed(pieces, width, count, like, fill),
            gradient_samples,
            first_gradient.components,
        )
    return _finish(values, gradients, samples, first.components, properties, limits)


def _grouped_pointers(
    gradient_rows: dict[str, tuple[Labels, Any]], n_samples: int
) -> dict[str, np.ndarray]:
    """The row pointers of the merged gradients whose rows are grouped by sample."""
    pointers = {}
    for parameter, (gradient_samples, _) in gradient_rows.items():
        pointer = row_pointer(gradient_samples.column("sample"), n_samples)
        if pointer is not None and len(gradient_samples):
            pointers[parameter] = pointer
    return pointers


@without_collector
def keys_to_properties(
    tensor: TensorMap,
    keys_to_move: str | Sequence[str] | Labels,
    *,
    fill_value: float = 0.0,
    sort_samples: bool = True,
) -> TensorMap:
    """Merge the blocks that differ only by ``keys_to_move`` along properties.

    Parameters
    ----------
    tensor
        The input map; it is not modified.
    keys_to_move
        Key dimension(s) to move: a name, names, or Labels. Non-empty Labels give the
        exact values of the moved dimensions: every entry gets the blocks' properties
        (which must then be the same in all merged blocks), missing blocks are filled
        with ``fill_value`` and blocks whose key is not listed are left out.
    fill_value
        Value of the entries a merged block does not have (values and gradients, as
        metatensor does).
    sort_samples
        Sort the merged samples lexicographically; otherwise keep them in order of
        first appearance.

    Returns
    -------
    TensorMap
        The moved dimensions are the first property dimensions; moving every key gives
        the single key ``_=0``. The ``info`` of ``tensor`` is kept.

    Notes
    -----
    Gradient rule: each block's gradient columns move with its value columns; the
    gradient samples are the sorted union of the blocks' (with ``"sample"``
    renumbered), each block filling its own columns. When all merged blocks have the
    same samples, values are only concatenated along properties (no row gather).
    """
    fill_value = _fill_value(tensor, fill_value)
    return _keys_moved(
        tensor,
        keys_to_move,
        "keys_to_properties",
        lambda blocks, moved, names, selected: _merge_along_properties(
            blocks, moved, names, selected, fill_value, sort_samples
        ),
    )


# -- components to properties -----------------------------------------------------------


def _merge_last_two(chunk: np.ndarray) -> np.ndarray:
    # the size is spelled out: ``reshape(..., -1)`` is ambiguous for zero-size chunks
    return chunk.reshape((*chunk.shape[:-2], chunk.shape[-2] * chunk.shape[-1]))


def _moved_chunk(chunk: np.ndarray, axis: int) -> np.ndarray:
    """``chunk`` with axis ``axis`` moved before the properties and merged with them."""
    return _merge_last_two(np.moveaxis(chunk, axis, -2))


def _move_component(array: Any, axis: int) -> Any:
    """``array`` with axis ``axis`` moved before the properties and merged with them.

    A tiny single chunk is moved by a call of the active groups (one task for many
    blocks). Otherwise every axis but the rows is one chunk, so each row chunk is
    reshaped on its own (dask's ``reshape`` refuses arrays of zero size, e.g. blocks
    without properties).
    """
    groups = tiny_groups([array])
    if groups is not None:
        shape = list(single_chunk_shape(array))
        moved_size = shape.pop(axis)
        shape[-1] *= moved_size
        return groups.record(
            "components-to-properties", _moved_chunk, [array], (axis,), tuple(shape), array.dtype
        )
    moved = da.moveaxis(rows_only(as_dask(array)), axis, -2)
    merged = moved.shape[-2] * moved.shape[-1]
    return moved.map_blocks(
        _merge_last_two,
        chunks=(*moved.chunks[:-2], (merged,)),
        drop_axis=moved.ndim - 1,
        dtype=moved.dtype,
        meta=np.empty((0,) * (moved.ndim - 1), moved.dtype),
    )


def _component_moved(block: TensorBlock, name: str) -> TensorBlock:
    position = next((i for i, c in enumerate(block.components) if c.names == [name]), None)
    if position is None:
        raise invalid_parameter(f"unable to find '{name}' in the components ")
    _check_not_taken([name], block.properties.names, "properties")
    component = block.components[position]
    props = block.properties.values
    properties = Labels._made_from(
        [name, *block.properties.names],
        np.concatenate(
            [np.repeat(component.values, len(props), 0), np.tile(props, (len(component), 1))], 1
        ).reshape(-1, 1 + props.shape[1]),
        component,
        block.properties,
    )
    return _with_component_moved(block, len(block.components) - position, properties)


def _with_component_moved(block: TensorBlock, from_end: int, properties: Labels) -> TensorBlock:
    """``block`` (values or a gradient, and its gradients in turn) with its component
    ``from_end`` places from the end of its components moved to ``properties``: a
    gradient's own components come first, so the moved one is as far from the end."""
    position = len(block.components) - from_end
    gradients = {
        parameter: _with_component_moved(gradient, from_end, properties)
        for parameter, gradient in block.gradients()
    }
    return TensorBlock._trusted(
        _move_component(block.values, 1 + position),
        block.samples,
        block.components[:position] + block.components[position + 1 :],
        properties,
        gradients,
        row_pointer=block.row_pointer,
    )


def _component_names(dimensions: Any) -> list[str]:
    names = _names_given(dimensions)
    if names is not None:
        return names
    raise TypeError(
        f"`dimensions` must be a string or a sequence of strings (component names), not "
        f"{type(dimensions)}{_set_hint(dimensions)}"
    )


def _all_moved(blocks: list[TensorBlock], name: str) -> list[TensorBlock]:
    return [_component_moved(block, name) for block in blocks]


def components_to_properties(tensor: TensorMap, dimensions: str | Sequence[str]) -> TensorMap:
    """Move component dimensions to the front of the properties, in every block.

    Parameters
    ----------
    tensor
        The input map; it is not modified.
    dimensions
        Name(s) of the component(s) to move. Each one is moved in turn and becomes
        the first property dimension (so the last one given ends up first, as in
        metatensor).

    Returns
    -------
    TensorMap
        The map with fewer components; property entries are (component, old
        property) pairs, component varying slowest. The ``info`` is kept.

    Notes
    -----
    Gradient rule: a reshape of each value row, applied identically to each gradient
    row (the gradient's own components stay first). Rows are untouched, so chunks
    and co-partitioning are unchanged.
    """
    check_tensor(tensor, "tensor")
    names = _component_names(dimensions)
    result = lazy_arrays(tensor)
    for name in names:
        # tiny blocks are moved by a few grouped tasks, one dimension after the other
        # (a group's results are items once the group is finished)
        moved = functools.partial(_all_moved, result.blocks(), name)
        result = grouped(tensor.keys, moved, tensor.info())
    return result
