"""The plan of blocks written whole: their node documents, chunking and arrays.

What :func:`~metatensor_dask.io.zarr_write.to_zarr` stores for a tensor, and what an
append stores for the blocks it creates (a new store, a new key): the documents of the
groups and arrays, the rows per chunk of each block's values and gradients, the Labels
and row pointers (written from the client) and the values arrays.

A block is planned from what it has in common with
:class:`~metatensor_dask.block.TensorBlock`: values with a shape and dtype, Labels,
gradients. A metatensor-core batch of
:func:`~metatensor_dask.io.ingest.write_batches`, seen through
:class:`~metatensor_dask.io.ingest_core.CoreBlock`, is planned with its numpy arrays as
they are: this module imports neither ``dask.array`` nor the dask graphs, so that the
worker writing the first batch of a run does not import them either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import config
from .._gc import collector_paused
from .._partition import block_row_pointer, gradient_row_chunks
from ..errors import MetatensorDaskError
from ..labels import entries_digest
from . import chunks as chunking
from . import zarr_layout as layout
from .ingest_core import CoreBlock
from .zarr_codecs import ChunkFormat, small_template, template
from .zarr_samples import chained_digest, is_chained, sample_attributes

if TYPE_CHECKING:
    from ..block import TensorBlock
    from ..labels import Labels

__all__ = [
    "Plan",
    "gradient_rows",
    "plan_block",
    "plan_keys",
    "plan_whole",
    "sharding",
    "value_rows",
]


#: What the codecs of an array document follow from: ``(dtype, ndim, sharded)`` for
#: values (see :func:`~.zarr_codecs.template`), ``(dtype, ndim, None)`` for Labels and
#: row pointers (see :func:`~.zarr_codecs.small_template`).
Codecs = tuple[np.dtype, int, bool | None]

_LABELS: Codecs = (np.dtype(np.int32), 2, None)
_ROW_POINTER: Codecs = (np.dtype(np.int64), 1, None)


@dataclass
class Plan:
    """What a write stores: node documents, client-side arrays, and values arrays.

    A plan reads the codec and ``shard-chunks`` settings once, when it first needs
    them: it is made and used by one write."""

    #: Documents of the groups and arrays, by path.
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Labels and row pointers, written from the client: path -> callable giving values.
    small: dict[str, Any] = field(default_factory=dict)
    #: Values arrays by path: the blocks' own, dask or numpy arrays.
    data: dict[str, Any] = field(default_factory=dict)
    #: Array documents without attributes, by what they follow from (see :meth:`array`).
    _kinds: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict, repr=False)
    #: The ``shard-chunks`` setting, once read (see :func:`shard_chunks`).
    _shards: list[int | None] = field(default_factory=list, repr=False)
    #: The kind of each array document planned (see :meth:`array`), by path.
    _kind_of: dict[str, tuple[Any, ...]] = field(default_factory=dict, repr=False)
    #: The chunk format of each kind of plain array (see :meth:`chunk_format`).
    _formats: dict[tuple[Any, ...], ChunkFormat | None] = field(default_factory=dict, repr=False)

    def group(self, path: str) -> None:
        """Plan a group at ``path``."""
        self.nodes[path] = layout.group_document()

    def array(
        self,
        path: str,
        codecs: Codecs,
        shape: tuple[int, ...],
        rows: int,
        shards: int | None,
        attributes: dict[str, Any],
        components: tuple[str, ...] = (),
    ) -> None:
        """Plan the document of an array at ``path`` (see
        :func:`~.zarr_layout.array_document`; ``components``: the names of the
        components of a values array).

        The arrays at the same place in blocks of the same shape share their documents
        but for the attributes: each kind is made once, then copied (its nested values
        shared, as every document shares those of its template)."""
        parts = path.split("/", 2)
        place = parts[2] if parts[0] == "blocks" and len(parts) == 3 else path
        kind = (place, codecs, shape, rows, shards, components)
        document = self._kinds.get(kind)
        if document is None:
            dtype, ndim, sharded = codecs
            made = (
                small_template(dtype, ndim) if sharded is None else template(dtype, ndim, sharded)
            )
            names = layout.dimension_names(path, list(components) if components else None)
            document = layout.array_document(made, shape, rows, shards, {}, names)
            self._kinds[kind] = document
        document = dict(document)
        document["attributes"] = attributes
        self.nodes[path] = document
        self._kind_of[path] = kind

    def chunk_format(self, path: str, document: dict[str, Any]) -> ChunkFormat | None:
        """:meth:`~.zarr_codecs.ChunkFormat.of` the array ``document`` at ``path``, worked
        out once per kind of array when ``document`` is the one this plan made (not one
        read from a store: a resumed write stores the chunks the store describes)."""
        if self.nodes.get(path) is not document:
            return ChunkFormat.of(document)
        kind = self._kind_of[path]
        if kind not in self._formats:
            self._formats[kind] = ChunkFormat.of(document)
        return self._formats[kind]

    def labels(self, path: str, labels: Labels, chunk_rows: int | None) -> None:
        """Plan ``labels`` at ``path``, in chunks of ``chunk_rows`` rows (samples, which
        appends extend) or in one chunk (``None``)."""
        shape = (len(labels), len(labels.names))
        rows = chunk_rows if chunk_rows is not None else max(shape[0], 1)
        # samples (chunked) carry the records that appends extend (format 3)
        attributes = (
            sample_attributes(labels.names, labels.values)
            if chunk_rows is not None
            else layout.labels_attributes(labels.names, _unchained_digest(labels))
        )
        # Labels are never sharded: their chunks are written from the client
        self.array(path, _LABELS, shape, rows, None, attributes)
        self.small[path] = lambda: labels.values

    def sharding(self, rows: int) -> int | None:
        """:func:`sharding` of ``rows``, the setting read once."""
        if not self._shards:
            self._shards.append(shard_chunks())
        shards = self._shards[0]
        return None if shards is None else rows * shards


def _unchained_digest(labels: Labels) -> str:
    """The digest recorded beside Labels that are not samples. Samples read from a store
    carry the chained digest of their records, which only a samples array holds: for
    such Labels made properties, components or keys (the samples of ``dot``'s second
    map become the properties of its result), the digest of their entries."""
    digest = labels.digest()
    return entries_digest(labels.names, labels.values) if is_chained(digest) else digest


def with_planned_digest(plan: Plan, path: str, stored: dict[str, Any]) -> dict[str, Any]:
    """The stored document of the array ``path``, compared with the one planned there.
    Writers recorded the chained digest of Labels other than samples made from samples
    read from a store (before :func:`_unchained_digest`): when the stored digest is the
    chained digest of the planned entries, the planned digest stands for it (any other
    stays, and differs from the planned one)."""
    attributes = stored.get("attributes")
    planned = plan.nodes[path].get("attributes")
    if not isinstance(attributes, dict) or not isinstance(planned, dict) or path not in plan.small:
        return stored
    digest, names = attributes.get("digest"), attributes.get("names")
    if not is_chained(digest) or is_chained(planned.get("digest")) or not isinstance(names, list):
        return stored
    if chained_digest(names, np.asarray(plan.small[path]())) != digest:
        return stored
    return {**stored, "attributes": {**attributes, "digest": planned.get("digest")}}


def shard_chunks() -> int | None:
    """The ``shard-chunks`` setting: zarr chunks per shard, ``None`` when not sharded."""
    shards = config.get("shard-chunks")
    if shards is None:
        return None
    if not isinstance(shards, int) or isinstance(shards, bool) or not 1 <= shards <= 2**16:
        raise MetatensorDaskError(
            f"invalid setting metatensor_dask.shard-chunks={shards!r}: use null (no "
            "sharding) or a number of chunks per shard from 1 to 65536 (each shard file "
            "holds an index of 16 bytes per chunk)"
        )
    return shards


def sharding(rows: int) -> int | None:
    """Rows per shard of an array stored in chunks of ``rows`` rows, by the
    ``shard-chunks`` setting; ``None`` when not sharded."""
    shards = shard_chunks()
    return None if shards is None else rows * shards


#: At most this many times a block's rows per chunk, when appends may fill them.
GROWTH = 16


def value_rows(
    block: TensorBlock | CoreBlock, request: chunking.ChunkRequest, growing: bool = False
) -> int:
    """Rows per stored chunk of a block's values; a number of rows asked for is kept
    when ``growing`` (appends fill the chunks), else capped to the block's rows; a
    number of bytes, capped to :data:`GROWTH` times the block's rows when ``growing``
    (so that a block appended to in small batches is not stored in chunks of one
    batch's rows, while a block written once pads its chunk with few rows). Values
    without dask chunks (numpy) count as one chunk."""
    values = block.values
    n = values.shape[0]
    if request.kind == "rows":
        return request.amount if growing else min(request.amount, max(n, 1))
    if request.kind == "bytes":
        sizes = chunking.data_sizes(block)
        if growing:
            most = GROWTH * max(n, 1)
            return chunking.target_rows(max(n, 1), sizes, request.amount, most)
        return chunking.target_rows(n, sizes, request.amount)
    sizes = chunking.data_sizes(block)
    target = chunking.default_target()
    chunks = getattr(values, "chunks", None) or ((n,),)
    if all(len(c) == 1 for c in chunks[1:]) and chunking.is_regular(chunks[0]):
        if len(chunks[0]) > 1:
            return chunks[0][0]
        if max(rows * size for rows, size in sizes) <= target:
            return max(n, 1)
    return chunking.target_rows(n, sizes, target)


def _row_pointer(block: TensorBlock | CoreBlock, parameter: str) -> np.ndarray | None:
    """The row pointer of a gradient of ``block``: a metatensor-core block's gradients
    have theirs (``None`` when their rows are not grouped by sample); a
    :class:`~metatensor_dask.block.TensorBlock` builds it when not attached."""
    if isinstance(block, CoreBlock):
        return block.gradient(parameter).row_pointer
    return block_row_pointer(block, parameter)


def plan_block(
    plan: Plan,
    block: TensorBlock | CoreBlock,
    prefix: str,
    rows: int,
    is_gradient: bool,
    growing: bool = False,
) -> None:
    """Plan ``block`` (a gradient when ``is_gradient``: no properties of its own) and
    its gradients at ``prefix``, its values in chunks of ``rows`` rows; the values
    arrays are planned as they are (dask or numpy). When ``growing`` (appends fill the
    chunks), a gradient grouped by sample has room for at least as many rows per chunk
    as the values (within the ``chunk-size`` setting), however few rows it has now."""
    values = block.values
    shards = plan.sharding(rows)
    plan.group(prefix)
    plan.array(
        f"{prefix}/values",
        (values.dtype, values.ndim, shards is not None),
        values.shape,
        rows,
        shards,
        {},
        tuple(c.names[0] for c in block.components),
    )
    plan.data[f"{prefix}/values"] = values
    plan.labels(f"{prefix}/samples", block.samples, rows)
    if block.components:
        plan.group(f"{prefix}/components")
    for j, component in enumerate(block.components):
        plan.labels(f"{prefix}/components/{j}", component, None)
    if not is_gradient:
        plan.labels(f"{prefix}/properties", block.properties, None)
    if block.gradients_list():
        plan.group(f"{prefix}/gradients")
    n_chunks = chunking.count(values.shape[0], rows)
    for parameter, gradient in block.gradients():
        path = layout.gradient_prefix(prefix, parameter)
        pointer = _row_pointer(block, parameter)
        m = gradient.values.shape[0]
        if pointer is not None:
            chunk_rows = gradient_rows(pointer, values.shape[0], rows, m, n_chunks)
            if m == 0:  # its rows per chunk are the values': not beyond the chunk size
                chunk_rows = _within_chunk_size(chunk_rows, gradient)
            elif growing:  # room for the rows appends bring: at least the values'
                chunk_rows = max(chunk_rows, _within_chunk_size(rows, gradient))
            plan.array(
                f"{path}/{layout.ROW_POINTER}",
                _ROW_POINTER,
                pointer.shape,
                rows,  # chunked as the values (format 3): an append rewrites one chunk
                None,
                {},
            )
            plan.small[f"{path}/{layout.ROW_POINTER}"] = lambda p=pointer: p
        else:
            # not co-partitioned: as many chunks as the values, never larger than the
            # ``chunk-size`` setting
            chunk_rows = min(
                max(-(-m // n_chunks), 1),
                chunking.target_rows(m, chunking.data_sizes(gradient), chunking.default_target()),
            )
        plan_block(plan, gradient, path, chunk_rows, True, growing)


def _within_chunk_size(rows: int, gradient: TensorBlock | CoreBlock) -> int:
    """``rows``, at most the rows of ``gradient`` that fill the ``chunk-size`` setting
    (at least one; rows of no bytes fill nothing)."""
    size = chunking.row_bytes(gradient.values.shape, gradient.values.dtype)
    return min(rows, max(chunking.default_target() // size, 1)) if size else rows


def gradient_rows(pointer: np.ndarray, n: int, rows: int, m: int, n_chunks: int) -> int:
    """Rows per stored chunk of a gradient whose values have ``n`` rows in chunks of
    ``rows``: the co-partitioned chunking when it is a regular grid (the same number of
    gradient rows per sample), so that operations read each gradient chunk with its
    values chunk and no rechunking; otherwise an even split in ``n_chunks``. Values
    chunks with room for more rows than ``n`` (appends fill them) give the gradient
    as much room, at its rows per value row. A gradient without rows gets the rows per
    chunk of its values, so that the rows appended later are not one chunk each."""
    if m == 0:
        return rows
    if rows > n:
        return -(-rows * m // n)
    if rows == n:  # one values chunk: the gradient's rows in one chunk too
        return m
    co_partitioned = gradient_row_chunks(pointer, chunking.regular(n, rows))
    if co_partitioned[0] > 0 and chunking.regular(m, co_partitioned[0]) == co_partitioned:
        return co_partitioned[0]
    return -(-m // n_chunks)


def plan_keys(plan: Plan, keys: Labels) -> None:
    """Plan the keys of the tensor."""
    plan.labels("keys", keys, None)


def plan_whole(
    blocks: Sequence[tuple[int, TensorBlock | CoreBlock]],
    keys: Labels | None,
    request: chunking.ChunkRequest,
    growing: bool = True,
) -> Plan:
    """Blocks planned whole at their indices (and the keys, when given): what an append
    writes for a new store or new keys (``growing``: ``chunks=`` rows are kept, not
    capped to the block's rows, since appends fill them), and with ``growing=False``
    what a plain write stores."""
    plan = Plan()
    if keys is not None:
        plan_keys(plan, keys)
        plan.group("blocks")
    chosen = [value_rows(block, request, growing) for _, block in blocks]
    if growing and request.kind != "rows":
        target = request.amount if request.kind == "bytes" else chunking.default_target()
        chosen = _rows_of_empty_blocks([block for _, block in blocks], chosen, target)
    with collector_paused():
        for (index, block), rows in zip(blocks, chosen, strict=True):
            plan_block(plan, block, layout.block_prefix(index), rows, False, growing)
    return plan


def _rows_of_empty_blocks(
    blocks: Sequence[TensorBlock | CoreBlock], chosen: list[int], target: int
) -> list[int]:
    """``chosen`` rows per chunk, those of blocks without rows replaced: a block created
    empty for appends to fill (a key the first batch has no samples for) is given the
    median rows per chunk of the blocks created with rows beside it (:data:`GROWTH`
    when there are none), at most ``target`` bytes of its values a chunk. Sized from
    its own rows, it would be stored in chunks of one row: a file per row appended."""
    filled = sorted(
        rows for block, rows in zip(blocks, chosen, strict=True) if block.values.shape[0] > 0
    )
    typical = filled[len(filled) // 2] if filled else GROWTH
    found = []
    for block, rows in zip(blocks, chosen, strict=True):
        if block.values.shape[0] == 0:
            values = block.values
            per_row = chunking.row_bytes(values.shape, values.dtype)
            rows = max(min(typical, target // max(per_row, 1)), 1)
        found.append(rows)
    return found
