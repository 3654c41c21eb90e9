"""``open_zarr``: a lazy TensorMap over a store written by :func:`to_zarr`.

Opening reads the root document (which holds every node's metadata), the keys, the
component and property Labels (each distinct digest once) and the row pointers of the
gradients of blocks cut into several chunks, all concurrently. It reads no values, no
sample labels and no other row pointer: samples are :meth:`Labels.lazy`, with the
digest recorded at write time, the other row pointers are read on first use (see
:mod:`.zarr_pointers`), and values are dask arrays whose tasks read their region of
the store, or for tiny blocks, items of groups whose task reads the chunks of many
blocks (see :mod:`.zarr_tiny`).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from itertools import accumulate
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np

from .. import _graph
from .._collection import GroupItem
from .._gc import collector_paused
from .._partition import gradient_row_chunks
from .._typing import ChunksLike, StoreLike
from ..block import TensorBlock
from ..errors import (
    MetatensorDaskError,
    StoreFormatWarning,
)
from ..labels import Labels
from . import chunks as chunking
from . import zarr_layout as layout
from . import zarr_tiny
from ._lock import LOCK_KEY, incomplete
from .zarr_columns import StoredSampleColumn
from .zarr_identity import overwrite_told
from .zarr_integrity import checked_labels
from .zarr_pointers import PointedSamples, StoredPointers
from .zarr_store import (
    ArrayRef,
    describe,
    get_many,
    open_store,
    read_arrays,
    read_labels,
    read_nodes,
    read_plain_region,
    read_region,
)

if TYPE_CHECKING:
    from zarr.abc.store import Store

    from ..tensor import TensorMap

__all__ = ["open_zarr"]


def _lazy_samples(
    store: Store,
    info: layout.ArrayInfo,
    parent_rows: int | None = None,
    pointer: np.ndarray | Callable[[], np.ndarray] | None = None,
    store_id: str | None = None,
) -> Labels:
    """Sample Labels read on first use, and checked then (see :func:`checked_labels`;
    Labels that do not match their digest in a store overwritten since it was opened,
    of id ``store_id`` then, are refused as such, see :mod:`.zarr_identity`);
    those of a gradient with a row ``pointer`` (the checked pointer, or the function
    reading it on first use, see :mod:`.zarr_pointers`) also carry their stored
    ``"sample"`` column, which chunk-wise operations read and check chunk by chunk (see
    :class:`~metatensor_dask.io.zarr_columns.StoredSampleColumn`)."""
    ref = ArrayRef(store, info.path, info.document, store_id=info.store_id)
    where = describe(store)

    def load() -> np.ndarray:
        with overwrite_told(store, where, store_id, f"the Labels '{info.path}'"):
            (values,) = read_arrays([ref])
            return checked_labels(
                where,
                info.path,
                info.names,
                values,
                info.digest,
                parent_rows,
                pointer if pointer is None or isinstance(pointer, np.ndarray) else pointer(),
                info.chunk_rows,
            ).values

    stored = None
    if pointer is not None and "sample" in info.names:
        read = read_plain_region if info.plain else read_region
        stored = StoredSampleColumn(ref, info.names.index("sample"), read, where, store_id)
    if pointer is None or isinstance(pointer, np.ndarray):
        return Labels.lazy(info.names, info.shape[0], load, info.digest, stored)
    assert parent_rows is not None, "a row pointer is over the rows of a parent"
    return PointedSamples.stored(
        info.names, info.shape[0], load, info.digest, stored, pointer, parent_rows
    )


def stored_array(
    store: Store, info: layout.ArrayInfo, rows: tuple[int, ...], metadata: str
) -> da.Array:
    """A dask array over a stored array, one task per chunk of ``rows`` rows;
    ``metadata`` is a digest of the store's metadata (see :func:`read_layout`), which
    names the array's content with its path (dask's tokenize of each array's document
    costs ~0.3 ms)."""
    ref = ArrayRef(store, info.path, info.document, info.missing_ok, info.store_id)
    described = f"{describe(store)}\0{metadata}\0{info.path}\0{info.missing_ok}\0{rows}"
    name = "open_zarr-" + hashlib.blake2b(described.encode(), digest_size=16).hexdigest()
    tail = tuple(slice(0, n) for n in info.shape[1:])
    zeros = (0,) * (len(info.shape) - 1)
    read = read_plain_region if info.plain else read_region
    graph = {}
    start = 0
    for i, size in enumerate(rows):
        graph[(name, i, *zeros)] = (read, ref, (slice(start, start + size), *tail))
        start += size
    chunks = (rows, *((n,) for n in info.shape[1:]))
    return _graph.array_from_tasks(name, graph, (), chunks, info.dtype)


def _value_rows(block: layout.BlockLayout, request: chunking.ChunkRequest) -> tuple[int, ...]:
    n = block.values.shape[0]
    if request.kind == "rows":
        return chunking.regular(n, request.amount)
    if request.kind == "bytes":
        return chunking.regular(
            n, chunking.target_rows(n, chunking.data_sizes(block), request.amount)
        )
    return chunking.regular(n, block.values.chunk_rows)


def read_array(
    store: Store, info: layout.ArrayInfo, rows: tuple[int, ...], metadata: str
) -> da.Array:
    """A dask array over a stored array with row chunks ``rows``, reading each stored
    chunk once.

    A task reads whole chunks (a chunk's checksum covers all of it), so chunks of
    ``rows`` that cut stored chunks (co-partitioned gradients: a regular grid on disk,
    the rows of each values chunk in dask) would read the chunks they share twice,
    doubling the bytes read. Then one task reads each stored chunk and dask's rechunk
    cuts and joins them (views, and one copy of the rows that span two chunks); the
    array of stored chunks is kept as ``rechunked_from``, for selections of rows (see
    :func:`~metatensor_dask.operations._slice.gathered_chunks`).
    """
    stored = chunking.regular(info.shape[0], info.chunk_rows)
    if _aligned(rows, stored):
        return stored_array(store, info, rows, metadata)
    source = stored_array(store, info, stored, metadata)
    array = _graph.block_values(source.rechunk({0: rows}))
    # a selection of a few rows reads the stored chunks holding them, not the
    # stored chunks of the chunks of ``rows`` holding them
    array.rechunked_from = source
    return array


def _aligned(rows: tuple[int, ...], stored: tuple[int, ...]) -> bool:
    """Whether every boundary of ``rows`` is a boundary of the ``stored`` chunks."""
    return rows == stored or set(accumulate(rows)) <= set(accumulate(stored))


class _Reader:
    """Builds blocks from a parsed layout, with the small arrays already read.

    ``rows`` are the values chunks of each block: the row pointers of the gradients
    cut into several chunks are read now, together; the others when first used (see
    :mod:`.zarr_pointers`). The values arrays of tiny blocks are items of groups (see
    :mod:`.zarr_tiny`), the others dask arrays of their own.
    """

    def __init__(
        self,
        store: Store,
        tensor: layout.TensorLayout,
        metadata: str,
        where: str,
        rows: list[tuple[int, ...]],
    ):
        self.store = store
        self.where = where
        self.metadata = metadata
        self.store_id = tensor.store_id
        infos = []
        for block in tensor.blocks:
            infos.extend(block.small_labels())
        labels = read_labels(store, [tensor.keys, *infos])
        self.keys = labels[0]
        self.labels = {info.path: value for info, value in zip(infos, labels[1:], strict=True)}
        self.pointers = StoredPointers(store, where, self.store_id)
        needed = [
            found
            for block, block_rows in zip(tensor.blocks, rows, strict=True)
            for found in _needed_pointers(block, len(block_rows))
        ]
        self.needed = {
            info.path: pointer
            for (info, _, _), pointer in zip(needed, self.pointers.read_now(needed), strict=True)
        }
        self.items = _tiny_items(store, tensor, metadata, where, rows)

    def block(
        self,
        stored: layout.BlockLayout,
        rows: tuple[int, ...],
        properties: Labels | None,
        pointer: np.ndarray | Callable[[], np.ndarray] | None,
        parent_rows: int | None = None,
    ) -> TensorBlock:
        values: da.Array | GroupItem | None = self.items.pop(stored.values.path, None)
        if values is None:
            values = read_array(self.store, stored.values, rows, self.metadata)
        properties = (
            properties if stored.properties is None else self.labels[stored.properties.path]
        )
        assert properties is not None, "a gradient has its parent's properties"
        gradients = {}
        for parameter, gradient in stored.gradients.items():
            gradient_pointer: np.ndarray | Callable[[], np.ndarray] | None = None
            if gradient.row_pointer is None:
                gradient_rows = chunking.unpointed_gradient_rows(
                    gradient.values.shape, gradient.values.chunk_rows
                )
            elif len(rows) == 1:
                # the pointer ends there (checked when read)
                gradient_rows = (gradient.values.shape[0],)
                gradient_pointer = self.pointers.add(
                    gradient.row_pointer, stored.values.shape[0], gradient.values.shape[0]
                )
            else:
                gradient_pointer = self.needed[gradient.row_pointer.path]
                gradient_rows = gradient_row_chunks(gradient_pointer, rows)
            gradients[parameter] = self.block(
                gradient, gradient_rows, properties, gradient_pointer, stored.values.shape[0]
            )
        return TensorBlock._trusted(
            values,
            _lazy_samples(self.store, stored.samples, parent_rows, pointer, self.store_id),
            [self.labels[c.path] for c in stored.components],
            properties,
            gradients,
            row_pointer=pointer if isinstance(pointer, np.ndarray) else None,
        )


def _tiny_items(
    store: Store,
    tensor: layout.TensorLayout,
    metadata: str,
    where: str,
    rows: list[tuple[int, ...]],
) -> dict[str, GroupItem]:
    """The group item of each values array of the tiny blocks of ``tensor`` (opened
    with values chunks ``rows``), by path."""
    infos = [
        info
        for block, block_rows in zip(tensor.blocks, rows, strict=True)
        for info in zarr_tiny.tiny_values(block, block_rows)
    ]
    items = zarr_tiny.group_items(store, metadata, where, infos)
    return {info.path: item for info, item in zip(infos, items, strict=True)}


def _needed_pointers(
    block: layout.BlockLayout, chunks: int
) -> list[tuple[layout.ArrayInfo, int, int]]:
    """The row pointers (array, value rows, gradient rows) that cut the gradients of
    ``block``, of ``chunks`` values chunks, and of its gradients, into chunks."""
    found = []
    for gradient in block.gradients.values():
        rows = gradient.values.shape[0]
        if gradient.row_pointer is None:
            gradient_chunks = len(chunking.regular(rows, gradient.values.chunk_rows))
        else:
            gradient_chunks = chunks
            if chunks > 1:
                found.append((gradient.row_pointer, block.values.shape[0], rows))
        found.extend(_needed_pointers(gradient, gradient_chunks))
    return found


def check_started(store: Store, where: str) -> None:
    """Refuse a store without root document as incomplete when a write to it started:
    its lock, the plan of a write or the record of an append are stored before the
    root (and left by a writer killed before it); and by name a Zarr version 2 store,
    whose root document is ``.zgroup`` or ``.zarray``."""
    keys = [LOCK_KEY, layout.PLAN_KEY, layout.APPEND_KEY, ".zgroup", ".zarray"]
    *started, group, array = get_many(store, keys)
    if any(raw is not None for raw in started):
        raise incomplete(store, where)
    if group is not None or array is not None:
        raise MetatensorDaskError(
            f"{where} is a Zarr version 2 store (written by zarr-python 2, or with "
            "zarr_format=2), not a metatensor-dask store: open it with xarray.open_zarr "
            "or zarr.open_group"
        )


def read_layout(store: Store, where: str) -> tuple[layout.TensorLayout, str]:
    """The checked layout of a complete store, and a digest of its metadata (of the
    root document, which holds every node's metadata, or of every node's document)."""
    (raw,) = get_many(store, ["zarr.json"])
    if raw is None:
        check_started(store, where)
    attributes, nodes = layout.parse_root(raw, where)
    if attributes[layout.ATTRIBUTE].get("complete") is not True:
        raise incomplete(store, where)
    if nodes is None:
        layout.refuse_without_inline_metadata(attributes, where)
        nodes = read_nodes(store)
        metadata = metadata_digest(raw, nodes)
    else:
        metadata = metadata_digest(raw, None)
    tensor = layout.parse_layout(attributes, nodes, where)
    if any(info.missing_ok for block in tensor.blocks for info in block.arrays()):
        warnings.warn(
            f"{where} is a format {tensor.format} store with a compressor or sharding: its "
            "writer did not store all-zero chunks, so a lost chunk there reads as zeros "
            f"instead of raising an error; `metatensor-dask convert` it to a new store of "
            f"format {layout.FORMAT}, which stores every chunk",
            StoreFormatWarning,
            stacklevel=3,
        )
    return tensor, metadata


def metadata_digest(raw: bytes | None, nodes: dict[str, Any] | None) -> str:
    """A digest of a store's metadata: of its root document ``raw``, and of every node's
    document ``nodes`` when the root does not hold them (``None`` when it does)."""
    digest = hashlib.blake2b(raw or b"", digest_size=16)
    if nodes is not None:
        digest.update(json.dumps(nodes, sort_keys=True).encode())
    return digest.hexdigest()


def open_zarr(
    store: StoreLike,
    chunks: ChunksLike = None,
    storage_options: dict[str, Any] | None = None,
) -> TensorMap:
    """Open a tensor stored by :func:`to_zarr`, lazily.

    Parameters
    ----------
    store
        Any zarr ``StoreLike``: a directory path, an fsspec URL (with
        ``storage_options``), or a zarr store object. A relative path is taken from
        the working directory of this call (tasks read the same folder after a
        change of directory, and on workers started elsewhere), ``~`` is expanded,
        and symbolic links are followed (messages name the folder they lead to). A
        store in a folder that can not be written (a read-only mount) is read
        without writing anything.
    chunks
        Chunking of each block's values along samples: ``None`` for the stored
        chunks, an int for value rows per chunk, a size string such as ``"64MiB"``
        for a target size of the largest co-partitioned array (``"auto"``: the
        ``metatensor_dask.chunk-size`` setting, not dask's ``array.chunk-size``).
        Gradients whose rows are grouped by sample are chunked to match (gradient
        chunk *i* holds the rows of values chunk *i*); other gradients keep their
        stored chunks.
    storage_options
        Options of the fsspec filesystem, for URLs.

    Returns
    -------
    TensorMap
        Values and gradients are dask arrays; sample labels are read on first use.

    Raises
    ------
    MetatensorDaskError
        When the store is missing, incomplete (finish it with ``resume=True``), not
        written by metatensor-dask, of a newer format, or damaged.
    """
    from ..tensor import TensorMap

    request = chunking.parse_chunks(chunks)
    resolved = open_store(store, storage_options, writable=False)
    where = describe(resolved)
    with collector_paused():
        tensor, metadata = read_layout(resolved, where)
        rows = [_value_rows(b, request) for b in tensor.blocks]
        reader = _Reader(resolved, tensor, metadata, where, rows)
        blocks = [
            reader.block(b, block_rows, None, None)
            for b, block_rows in zip(tensor.blocks, rows, strict=True)
        ]
        return TensorMap._trusted(reader.keys, blocks, tensor.info)
