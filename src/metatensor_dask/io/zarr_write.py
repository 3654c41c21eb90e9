"""``to_zarr``: write a tensor to a Zarr store, safely and resumably.

A write goes in three phases, so that a reader never takes a half-written store for a
whole one and an interrupted write can be finished:

1. **metadata**, in the client: the list of arrays this write fills
   (``.progress/plan.json``), the root document with ``complete: false`` and every
   node's metadata inline, then every node's own ``zarr.json`` (but those of the values
   arrays that record a chunk table, written by the completion task with it), all in
   bulk; then the Labels and row pointers (small next to the values);
2. **data**, in dask tasks, each storing chunks (or shards) of the values arrays (one
   large chunk, or one chunk of each of many small arrays), then recording the chunks
   it stored in one record under ``.progress/`` once they are
   stored (see :mod:`.zarr_progress`; chunk files can not show it: a chunk file may be
   half-written);
3. **completion**, in a final task: the root document with ``complete: true``, and the
   progress records deleted.

One writer at a time: the write holds the store's lock (:mod:`._lock`) from its start
until the completion task, which checks that it still holds it before marking the store
complete. The plan records a token of what is written (the dask arrays, the metadata and
the info), kept in the root document once complete; ``resume=True`` refuses a store whose
token is another one, checks that the stored metadata matches the tensor and runs only
the data tasks that are not recorded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.delayed import Delayed

from .. import _graph
from .._gc import collector_paused, without_collector
from .._member_checks import member_checks
from .._typing import ChunksLike, StoreLike, ZarrMode
from ..errors import DamagedStoreError, MetatensorDaskError, StoreLockedError, wrong_type
from ..labels import Labels
from . import _direct_writes, _page_cache, _task_batches
from . import chunks as chunking
from . import zarr_layout as layout
from ._file_writes import no_room
from ._lock import (
    LOCK_KEY,
    Holder,
    StoreLock,
    WriteId,
    append_command,
    raise_if_out_of_room,
)
from ._lock import timeout as lock_timeout
from ._names import check_gradient_names
from ._nothing import nothing_to_write
from ._repeated_entries import check_unrepeated
from ._zarr_internals import sync
from .zarr_append import (
    append,
    interrupted,
    read_root,
    refuse_foreign,
    refuse_nodes_of_documents,
    refuse_resume,
)
from .zarr_codecs import check_dtype, encode_chunks, stored_dtype
from .zarr_identity import (
    FIRST_FORMAT,
    STORE_ID,
    TABLE,
    content_id,
    has_table,
    last_crc,
    with_tables,
)
from .zarr_plan import Plan, plan_block, plan_keys, plan_whole, value_rows, with_planned_digest
from .zarr_progress import recorded_chunks
from .zarr_renumber import Renumber, check_dimension, parse_renumber
from .zarr_rows import write_regions
from .zarr_samples import is_entry
from .zarr_store import (
    ArrayRef,
    check_memory_owner,
    delete_prefix,
    describe,
    get_many,
    make_folders,
    memory_owner,
    new_folders,
    open_store,
    plain_chunks,
    refuse_metatensor_file,
    refuse_read_only_nodes,
    remove_if_empty,
    same_store,
    set_many,
)
from .zarr_store import _local_root as local_root
from .zarr_store import compute as compute_tasks
from .zarr_tiny import group_source

if TYPE_CHECKING:
    from zarr.abc.store import Store

    from ..block import TensorBlock
    from ..tensor import TensorMap

__all__ = ["to_zarr"]

_MODES = ("w-", "w", "a", "r+")
_PLAN = layout.PLAN_KEY
#: Labels and row pointers are written from the client in batches of about this size.
_BATCH_BYTES = 64 * 2**20
#: Labels and row pointers of at most this many bytes have their chunks encoded once per
#: write, however many blocks share them (see :func:`_small_chunks`).
_REUSED_BYTES = 64 * 2**10
#: Fields of an array document that describe its content (not its chunking/codecs).
#: Not ``dimension_names``: they follow from the paths and Labels names, and stores
#: written before every array carried them are still extended and rewritten.
_CONTENT = ("shape", "data_type", "attributes")
#: Root attribute (under ``metatensor_dask``) holding the token of the last write.
_TOKEN = "token"
#: The store id of a planned root (format 4), until the tasks stored what it is of.
_PENDING_ID = "pending"


def _content(document: dict[str, Any]) -> dict[str, Any]:
    """What describes the content of an array, but its chunk table: a plan does not
    know the checksums of the chunks it will store."""
    content = {name: document.get(name) for name in _CONTENT}
    if isinstance(content["attributes"], dict) and TABLE in content["attributes"]:
        content["attributes"] = {k: v for k, v in content["attributes"].items() if k != TABLE}
    return content


def _mismatch(path: str, stored: dict[str, Any], planned: dict[str, Any]) -> str | None:
    if stored.get("node_type") != planned.get("node_type"):
        return f"'{path}' is a {stored.get('node_type')} in the store"
    if planned.get("node_type") != "array":
        return None
    mine, theirs = _content(planned), _content(stored)
    for name in _CONTENT:
        if mine[name] != theirs[name]:
            return f"'{path}' has {name} {theirs[name]!r} in the store, {mine[name]!r} here"
    return None


def _check_matches(plan: Plan, stored: dict[str, Any], where: str, remedy: str) -> None:
    """Refuse when a planned node exists in the store with different content."""
    for path, document in plan.nodes.items():
        if path in stored:
            problem = _mismatch(path, with_planned_digest(plan, path, stored[path]), document)
            if problem is not None:
                raise MetatensorDaskError(
                    f"the metadata stored at {where} does not match this tensor: {problem}; "
                    f"{remedy}"
                )


def _write_documents(
    store: Store,
    plan: Plan,
    documents: list[str],
    small: list[str],
    nodes: dict[str, Any],
    encoded: dict[str, bytes],
    tabled: set[str],
) -> dict[str, int]:
    """Write node documents (``encoded``, see :func:`~.zarr_layout.encode_nodes`), then
    the Labels and row pointers, in batches; returns the crc32c ending each chunk file
    written of the arrays ``tabled`` (which record a chunk table), by key, which the
    completion lists without reading the files again (see
    :func:`~.zarr_identity.with_tables`)."""
    crcs: dict[str, int] = {}
    batch: dict[str, bytes | memoryview] = {}
    size = 0
    repeated: dict[tuple[int, int], Any] = {}
    items = [(path, None) for path in documents] + [(path, path) for path in small]
    for path, values_path in items:
        if values_path is None:
            batch[f"{path}/zarr.json"] = encoded[path]
        else:
            chunks = _small_chunks(plan, path, nodes[path], repeated)
            if path in tabled:
                crcs.update((key, last_crc(data)) for key, data in chunks.items())
            batch.update(chunks)
            size += sum(len(c) for c in chunks.values())
        if size > _BATCH_BYTES or len(batch) > 50_000:
            set_many(store, batch)
            batch, size = {}, 0
    set_many(store, batch)
    return crcs


def _small_chunks(
    plan: Plan, path: str, document: dict[str, Any], repeated: dict[tuple[int, int], Any]
) -> dict[str, memoryview]:
    """The encoded chunks of the Labels or row pointer ``path`` (see
    :func:`~.zarr_store.plain_chunks`), by store key. The chunks of an array already
    encoded in ``repeated`` in the same chunk format are reused: the blocks of a map
    often share their Labels (components and properties mostly, samples often), and a
    write of 100,000 tiny blocks encodes 700,000 Labels arrays. Only arrays of at most
    :data:`_REUSED_BYTES` are kept for reuse: the encoded Labels of big blocks would
    stay in memory until every document is written, where a batch of them is freed once
    stored."""
    values = plan.small[path]()
    encoding = plan.chunk_format(path, document)
    if encoding is None or np.asarray(values).nbytes > _REUSED_BYTES:
        return plain_chunks(path, document, np.asarray(values), 0, encoding)
    key = (id(values), id(encoding))  # (both kept alive in `repeated`: ids not reused)
    found = repeated.get(key)
    if found is None:
        found = repeated[key] = (values, encoding, encode_chunks(values, document, 0, encoding))
    return {f"{path}/{name}": data for name, data in found[2].items()}


def _store_locked(
    lock: WriteId,
    owner: tuple[int, int] | None,
    refs: list[ArrayRef],
    regions: list[tuple[slice, ...]],
    picks: list[int | None],
    markers: list[str],
    drop_behind: int | None,
    *inputs: Any,
) -> dict[str, int]:
    """A storing task (see :func:`write_regions`) of the write that holds ``lock``: a
    ``Delayed`` computed again once its write ended (and released the lock), or a
    writer whose lock was taken over, stores nothing over what came after it; nor does
    a task given a copy of a memory store (``owner``, see :func:`memory_owner`).

    Each of ``inputs`` is a chunk to store, or for an entry of ``picks`` that is not
    ``None`` the result of a group of tiny blocks, whose item at that position is."""
    check_memory_owner(lock.store, owner)
    lock.check(stored=False)
    chunks = _task_batches.picked(inputs, picks)
    return write_regions(refs, regions, chunks, markers, drop_behind)


@without_collector
def _finish(
    store: Store,
    root: Callable[[dict[str, int]], bytes],
    lock: WriteId,
    owner: tuple[int, int] | None,
    tasks: int,
    *results: Any,
) -> None:
    """The last task: check that this write still holds the lock (of the memory store
    ``owner`` itself, not a copy), mark the store complete (``root(crcs)``, see
    :class:`_FinalRoot`, given the crc32c of the chunk files that the first ``tasks``
    of ``results``, the storing tasks, report), forget the progress records and
    release the lock.

    The collector is paused (see :mod:`metatensor_dask._gc`): the documents of every
    array are alive, and the tables made here triggered a full pass over them."""
    check_memory_owner(store, owner)
    lock.check()
    crcs: dict[str, int] = {}
    for stored in results[:tasks]:
        crcs.update(stored)
    set_many(store, {"zarr.json": root(crcs)}, atomic=True)
    delete_prefix(store, layout.PROGRESS_PREFIX)
    lock.release()


class _FinalRoot:
    """The root document a write marks its store complete with, made once its chunks
    are stored: for a format 4 store, with the chunk table of each values array it
    wrote (see :mod:`.zarr_identity`), read from the chunk files then (those that the
    storing tasks report must end as they wrote them); those arrays' own documents
    are written first, with their table (a write leaves them to this)."""

    def __init__(
        self,
        store: Store,
        root: dict[str, Any],
        nodes: dict[str, Any],
        encoded: tuple[dict[str, bytes], layout.InlineMetadata],
        paths: list[str],
        kept: bool,
        known: dict[str, int],
    ):
        self.store = store
        #: the crc32c ending the chunk files (by key) that the write stored from its own
        #: process (Labels and row pointers with a table)
        self.known = known
        self.root = root
        self.nodes = nodes
        #: the nodes' documents encoded, and the root's inline metadata made of them
        self.encoded, self.metadata = encoded
        self.paths = paths
        #: the id of the store, kept by a write of some blocks (mode "a")
        self.kept_id = root["attributes"][layout.ATTRIBUTE].get(STORE_ID) if kept else None
        # a digest of the root without tables (they depend on what the tasks store; its
        # store id, format 4, is the kept one or a placeholder that the completion
        # replaces) and of the paths: dask's token of bytes or a list goes through their
        # text (the root of a map of many blocks is megabytes)
        digest = hashlib.blake2b(self.metadata.root(root), digest_size=16)
        digest.update(json.dumps(paths).encode())
        self.digest = digest.hexdigest()

    def __call__(self, written: dict[str, int]) -> bytes:
        """The root, ``written``: the crc32c ending each chunk file the storing tasks
        report (see :func:`~.zarr_identity.with_tables`)."""
        ours = self.root["attributes"][layout.ATTRIBUTE]
        if ours["format"] < FIRST_FORMAT:
            return self.metadata.root(self.root)
        where = describe(self.store)
        starts = dict.fromkeys(self.paths, 0)
        version = ours["format"]
        tables = with_tables(
            self.store, where, self.nodes, starts, version, self.known, written=written
        )
        planned = self.encoded
        own = {path: layout.encode_tabled(doc, planned[path]) for path, doc in tables.items()}
        set_many(self.store, {f"{path}/zarr.json": raw for path, raw in own.items()})
        if not self.kept_id:  # written whole: the id of what it stored
            ours[STORE_ID] = content_id({**self.nodes, **tables})
        return self.metadata.replaced(own).root(self.root)

    def __dask_tokenize__(self) -> Any:
        return ("_FinalRoot", self.digest)


def _write_graph(
    store: Store,
    plan: Plan,
    paths: list[str],
    nodes: dict[str, Any],
    recorded: set[str],
    root: _FinalRoot,
    lock: WriteId,
) -> Delayed:
    """One task per zarr chunk (or shard) not yet recorded, then the completion task."""
    token = tokenize(describe(store), root, sorted(recorded))  # (root: of its paths too)
    name = f"zarr-write-{token}"
    arrays = _aligned(store, plan, paths, nodes)
    tasks, renamed = _group_tasks(arrays, recorded)
    graph: dict[Any, Any] = {}
    sources = []
    batch: list[tuple[ArrayRef, tuple[slice, ...], Any, int | None, str]] = []
    size = 0
    limit = _task_batches.limit()
    drop_behind = _page_cache.budget()
    owner = memory_owner(store)
    places: dict[Any, tuple[str, float]] = {}  # where the first chunk of each task lies
    first = ("", 0.0)

    def flush() -> None:
        nonlocal batch, size
        if batch:
            columns = (list(column) for column in zip(*batch, strict=True))
            refs, regions, inputs, picks, markers = columns
            key = (name, len(graph))
            # built as a task (not a tuple that dask converts, looking into every list)
            graph[key] = _graph.task(
                key, _store_locked, lock, owner, refs, regions, picks, markers, drop_behind, *inputs
            )
            places[key] = first
        batch, size = [], 0

    sizes: dict[tuple[Any, ...], int] = {}  # bytes per row, by the shape of a row and dtype
    for path, array in arrays.items():
        ref = ArrayRef(store, path, nodes[path])
        kind = (array.shape[1:], array.dtype)
        row_bytes = sizes.get(kind)
        if row_bytes is None:
            row_bytes = sizes[kind] = chunking.row_bytes(array.shape, array.dtype)
        start = 0
        item = _graph.item_of(array)
        inputs: list[Any]
        if item is None:
            held = _graph.held_chunk(array)
            inputs = [held] if held is not None else list(map(_graph.ref, _graph.chunk_keys(array)))
            picks: list[int | None] = [None] * len(inputs)
            sources.append(array)
        else:  # the result of its group, which the storing task picks it out of
            key = renamed.get(item.group_key, item.group_key)
            inputs, picks = [_graph.ref(key)], [item.position]
        for i, rows in enumerate(array.chunks[0]):
            marker = layout.progress_marker(path, i)
            region = (slice(start, start + rows), *tuple(slice(0, n) for n in array.shape[1:]))
            start += rows
            if marker in recorded:
                continue
            if _task_batches.full(len(batch), size, rows * row_bytes, limit):
                flush()
            if not batch:
                first = _task_batches.place(path, region[0].start, array.shape[0])
            batch.append((ref, region, inputs[i], picks[i], marker))
            size += rows * row_bytes
    flush()
    final = f"zarr-complete-{token}"
    # one flat graph: dask culls a graph of one layer per array (thousands of blocks)
    # in time quadratic in the number of layers
    # the storing tasks block by block, each block's arrays from their first rows to
    # their last, side by side (see `_task_batches.place`)
    ordered, last = _graph.in_order(name, sorted(graph, key=places.__getitem__))
    every = {**_graph.flat_tasks(sources), **tasks, **graph, **ordered}
    # the store is complete only once the CRCs of the .mts members read match:
    # the checks this graph holds (not those of arrays it takes from their groups'
    # results instead of running their own tasks; dask took such keys for data)
    checks = [key for key in member_checks(plan.data[path] for path in paths) if key in every]
    needed = [*graph, *checks, *last]
    every[final] = _graph.task(
        final, _finish, store, root, lock, owner, len(graph), *map(_graph.ref, needed)
    )
    return _graph.flat_delayed(final, every, [])


def _aligned(
    store: Store, plan: Plan, paths: list[str], nodes: dict[str, Any]
) -> dict[str, da.Array]:
    """The values arrays at ``paths`` that hold data, each in chunks of its stored
    chunks (or shards)."""
    arrays = {}
    for path, info in zip(paths, layout.array_infos(nodes, paths, describe(store)), strict=True):
        array = chunking.aligned(plan.data[path], info.write_rows)
        chunking.check_aligned(array.chunks[0], info.write_rows, path)
        if array.size:
            arrays[path] = array
    return arrays


def _group_tasks(
    arrays: dict[str, da.Array], recorded: set[str]
) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """The tasks of the groups of tiny blocks whose items among ``arrays`` are not
    ``recorded`` as stored, and the new key of each task renamed for the write (see
    :func:`~metatensor_dask._graph.item_group_tasks`). An array rechunked for the write
    is not an item any more: its chunks come from its own task."""
    items = [
        array
        for path, array in arrays.items()
        if _graph.item_of(array) is not None and layout.progress_marker(path, 0) not in recorded
    ]
    return _graph.item_group_tasks(items, "to_zarr")


def _lazy(plan: Plan) -> Plan:
    """``plan`` with dask values arrays: a computed block's numpy values become one (as
    ``dask.array.asarray`` makes it, named by a hash of its content), which the write
    stores in its tasks and its token names."""
    for path, values in plan.data.items():
        if not isinstance(values, da.Array):
            plan.data[path] = da.asarray(values)
    return plan


def _plan_tensor(tensor: TensorMap, request: chunking.ChunkRequest) -> Plan:
    return _lazy(plan_whole(list(enumerate(tensor.blocks())), tensor.keys, request, growing=False))


def _plan_appended(
    blocks: Sequence[tuple[int, TensorBlock]], keys: Labels | None, request: chunking.ChunkRequest
) -> Plan:
    """The blocks an append writes whole (see :func:`~.zarr_plan.plan_whole`), stored by
    the tasks of the append."""
    return _lazy(plan_whole(blocks, keys, request))


def _plan_blocks_at(
    tensor: TensorMap, request: chunking.ChunkRequest, keys: Labels
) -> tuple[Plan, list[np.ndarray]]:
    """Each block planned at its position in ``keys``; unknown keys are appended."""
    plan = Plan()
    plan.group("blocks")
    new_keys: list[np.ndarray] = []
    for key, block in tensor.items():
        position = keys.position(key)
        if position is None:
            position = len(keys) + len(new_keys)
            new_keys.append(key.values)
        plan_block(plan, block, layout.block_prefix(position), value_rows(block, request), False)
    return _lazy(plan), new_keys


def _stored_keys(store: Store, nodes: dict[str, Any], where: str) -> Labels:
    from .zarr_read import read_labels

    return read_labels(store, [layout.array_info(nodes, "keys", where)])[0]


def _plan_addition(
    tensor: TensorMap,
    request: chunking.ChunkRequest,
    store: Store,
    stored: dict[str, Any],
    where: str,
) -> tuple[Plan, dict[str, Any], str]:
    """Mode "a": new keys get new blocks, known blocks their new gradients.

    Returns the plan (new nodes only), the nodes of the store once written and the
    write's token. A known key that brings no new gradient is refused: it would be a
    silent no-op; one that does must have the stored values, of the block and of its
    stored gradients (see :mod:`.zarr_kept_values`).
    """
    stored_keys = _stored_keys(store, stored, where)
    if stored_keys.names != tensor.keys.names:
        raise MetatensorDaskError(
            f"can not add blocks with keys {tensor.keys.names} to the store at {where}, whose "
            f"keys are {stored_keys.names}"
        )
    _check_addition_dtype(tensor, stored, where)
    plan, new_keys = _plan_blocks_at(tensor, request, stored_keys)
    token = _token(plan, tensor)
    remedy = (
        "mode='a' only adds blocks with new keys and new gradients of stored blocks; to "
        "add samples to stored blocks pass append_dim='samples', to rewrite the values of "
        "stored blocks use mode='r+', to replace the store use mode='w'"
    )
    _check_matches(plan, stored, where, remedy)
    for key in tensor.keys:
        position = stored_keys.position(key)
        prefix = layout.block_prefix(position) + "/" if position is not None else None
        if prefix is not None and all(p in stored for p in plan.nodes if p.startswith(prefix)):
            raise MetatensorDaskError(
                f"the key {tuple(int(v) for v in key.values)} is already stored in {where}, "
                f"with everything this tensor has for it: {remedy}"
            )
    from .zarr_kept_values import check_kept_values, kept_arrays

    kept = {path: plan.data[path] for path in kept_arrays(list(plan.data), stored)}
    for path in [p for p in plan.nodes if p in stored]:
        del plan.nodes[path]
        plan.data.pop(path, None)
        plan.small.pop(path, None)
    all_keys = stored_keys
    if new_keys:
        all_keys = Labels._trusted(
            stored_keys.names, np.concatenate([stored_keys.values, np.array(new_keys, np.int32)])
        )
        plan_keys(plan, all_keys)
    final = {**stored, **plan.nodes}
    _check_same_gradients(final, all_keys, where)
    try:
        layout.parse_layout({}, final, where)
    except MetatensorDaskError as error:
        raise MetatensorDaskError(
            f"mode='a' can not add this tensor to {where}: the result would not be a valid "
            f"TensorMap ({error}); every block needs the same gradients, names and dtype"
        ) from None
    # last: the comparison may compute the tensor's values
    check_kept_values(kept, list(kept), store, where, stored_keys)
    return plan, final, token


def _check_addition_dtype(tensor: TensorMap, stored: dict[str, Any], where: str) -> None:
    """Refuse, in mode "a", a tensor of another dtype than the stored blocks': the
    store would hold blocks of two dtypes, which a TensorMap can not."""
    document = stored.get(layout.block_prefix(0) + "/values")
    if document is None or tensor.dtype is None:
        return
    stored_as = stored_dtype(document["data_type"])
    if stored_dtype(tensor.dtype) != stored_as:
        raise MetatensorDaskError(
            f"mode='a' can not add this tensor to {where}: the tensor has the dtype "
            f"{tensor.dtype}, the store {stored_as} (convert it first: "
            f"tensor.to(dtype='{stored_as}')); nothing was written"
        )


def _check_same_gradients(nodes: dict[str, Any], keys: Labels, where: str) -> None:
    """Refuse a store of ``nodes`` (after a write in mode "a") whose blocks (of
    ``keys``) would not have the same gradients: those a tensor adds to some stored
    blocks only."""
    found: dict[int, set[str]] = {i: set() for i in range(len(keys))}
    for path in nodes:
        parts = path.split("/")
        if len(parts) > 4 and parts[0] == "blocks" and parts[-1] == "values":
            found[int(parts[1])].add("/".join(parts[3:-1:2]))
    every = set().union(*found.values())
    for index, gradients in found.items():
        missing = sorted(every - gradients)
        if missing:
            key = tuple(int(v) for v in keys.values[index])
            raise MetatensorDaskError(
                f"mode='a' can not add this tensor to {where}: the block {key} would not "
                f"have the gradient '{missing[0]}' that other blocks would, and every block "
                "of a TensorMap has the same gradients; give the tensor every stored key, "
                "each with its new gradients (open_zarr gives the stored blocks)"
            )


def _held(values: Any) -> Callable[[], np.ndarray]:
    array = np.asarray(values)
    return lambda: array


def _refuse_reading(plan: Plan, store: Store, where: str, why: str) -> None:
    """Refuse to write into ``store`` values whose tasks read it: ``mode="w"`` empties it
    before computing them, and ``mode="r+"`` rewrites chunks that other tasks may read
    afterwards (wrong values, without an error). ``why`` says which, for the message."""
    seen: dict[int, bool] = {}
    for task in _graph.flat_tasks(plan.data.values()).values():
        if type(task) is tuple:
            argument = task[1] if len(task) > 1 else None
        else:  # a task of dask's task spec
            arguments = getattr(task, "args", ())
            argument = arguments[0] if arguments else None
        read: tuple[Store, str] | None = None
        if isinstance(argument, ArrayRef):
            read = (argument.store, argument.path)
        else:  # a group of tiny blocks read at once
            read = group_source(argument)
        if read is None:
            continue
        if id(read[0]) not in seen:
            seen[id(read[0])] = same_store(read[0], store)
        if seen[id(read[0])]:
            raise MetatensorDaskError(
                f"this tensor reads the store it would overwrite ({where}, array "
                f"'{read[1]}'), and {why}: write it to another store, or compute() (or "
                "persist()) it first"
            )


def _check_rewrite(plan: Plan, stored: dict[str, Any], where: str, remedy: str) -> None:
    """The tensor must have exactly the stored arrays, with the same content."""
    stored_arrays = {p for p, d in stored.items() if d.get("node_type") == "array"}
    planned_arrays = {p for p, d in plan.nodes.items() if d.get("node_type") == "array"}
    if stored_arrays != planned_arrays:
        different = sorted(stored_arrays ^ planned_arrays)[0]
        raise MetatensorDaskError(
            f"the metadata stored at {where} does not match this tensor: '{different}' is "
            f"only in {'the store' if different in stored_arrays else 'the tensor'}; {remedy}"
        )
    _check_matches(plan, stored, where, remedy)


def _token(plan: Plan, tensor: TensorMap) -> str:
    """A deterministic token of what ``plan`` stores: dask's token of each values array
    (its name: a token of its graph and inputs), the content of each array document
    (with the Labels digests), the row pointers and the tensor's info."""
    with collector_paused():
        return _tokenize_plan(plan, tensor)


def _tokenize_plan(plan: Plan, tensor: TensorMap) -> str:
    nodes = plan.nodes
    documents = [  # (sorted by path alone: sorting the items compares tuples)
        (path, _content(nodes[path]))
        for path in sorted(nodes)
        if nodes[path].get("node_type") == "array"
    ]
    return tokenize(
        [(path, plan.data[path].name) for path in sorted(plan.data)],
        json.dumps(documents, sort_keys=True),  # one string: tokenized in one pass
        [
            (path, np.asarray(plan.small[path]()))
            for path in sorted(plan.small)
            if path.endswith(layout.ROW_POINTER)
        ],
        sorted(tensor.info().items()),
    )


def _execute(
    store: Store,
    plan: Plan,
    nodes: dict[str, Any],
    documents: list[str],
    data: list[str],
    small: list[str],
    info: dict[str, str],
    compute: bool,
    write: tuple[WriteId, str],
    recorded: set[str] | None = None,
    kept: dict[str, Any] | None = None,
) -> Delayed | None:
    """Run the three phases (or, with ``recorded``, resume them) of the write ``write``
    (its lock and its token); ``kept``: root attributes of the store that the write
    keeps (see :func:`_kept`), recorded with its plan for a resume."""
    lock, token = write
    kept = kept or {}
    # the metadata of thousands of blocks: many long-lived objects, no garbage cycles
    with collector_paused():
        # planning may be long: a writer stalled meanwhile may have lost the lock
        lock.check(stored=False)
        if recorded is None:
            delete_prefix(store, layout.PROGRESS_PREFIX)
            record = {"data": data, "small": small, "token": token, "kept": kept}
            if "keys" in small:
                record["keys"] = np.asarray(plan.small["keys"]()).tolist()
            set_many(store, {_PLAN: json.dumps(record).encode()})
            recorded = set()
        encoded = layout.encode_nodes(nodes)
        metadata = layout.InlineMetadata(encoded)  # the same in both roots
        version = kept.get("format", layout.FORMAT)
        root = layout.root_document(False, info, nodes, version, kept.get(STORE_ID), False)
        set_many(store, {"zarr.json": metadata.root(root)}, atomic=True)
        make_folders(store, documents)
        # the documents of arrays with a chunk table are written once, with it, by the
        # completion task (see _FinalRoot); the root lists them meanwhile
        tabled = _tabled([*data, *small], nodes, version)
        now = [path for path in documents if path not in tabled]
        known = _write_documents(store, plan, now, small, nodes, encoded, tabled)
        # the id of a store written whole is that of what the tasks store: not worked out
        # here (see _FinalRoot)
        final_root = layout.root_document(True, info, nodes, version, _PENDING_ID, False)
        final_root["attributes"][layout.ATTRIBUTE].update({**kept, _TOKEN: token})
        final_paths = [*data, *(path for path in small if path in tabled)]
        final = _FinalRoot(
            store, final_root, nodes, (encoded, metadata), final_paths, STORE_ID in kept, known
        )
        delayed = _write_graph(store, plan, data, nodes, recorded, final, lock)
    if compute:
        compute_tasks(delayed)
        return None
    return delayed


def _tabled(paths: list[str], nodes: dict[str, Any], version: int) -> set[str]:
    """The arrays of ``paths`` that record a chunk table in a store of format
    ``version`` (see :func:`~.zarr_identity.has_table`): a table depends on the codecs,
    which the documents of a kind of array share (see :meth:`~.zarr_plan.Plan.array`),
    and on the kind of array (values, samples, row pointer, others: the end of its
    path)."""
    by_kind: dict[tuple[int, str], bool] = {}
    found = set()
    for path in paths:
        document = nodes[path]
        kind = (id(document.get("codecs")), path.rpartition("/")[2])
        has = by_kind.get(kind)
        if has is None:
            has = by_kind[kind] = has_table(path, document, version)
        if has:
            found.add(path)
    return found


def _done(compute: bool, lock: WriteId) -> Delayed | None:
    """Nothing to write: the lock is released now, or when the Delayed runs."""
    return None if compute else nothing_to_write(lock.release)


def _plan_record(raw: bytes, key_dims: int) -> dict[str, Any] | None:
    """The plan recorded by a write in ``raw`` (``None`` for a damaged record): the
    paths of its ``data`` and ``small`` arrays, and the ``keys`` it adds (rows of
    ``key_dims`` ints) if any."""
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    paths = [record.get("data"), record.get("small")]
    if not all(type(p) is list and all(type(path) is str for path in p) for p in paths):
        return None
    keys = record.get("keys", [])
    if type(keys) is not list or not all(is_entry(row, key_dims) for row in keys):
        return None
    return record


def _resumed(
    tensor: TensorMap,
    mode: str,
    request: chunking.ChunkRequest,
    store: Store,
    nodes: dict[str, Any],
    where: str,
) -> tuple[Plan, str, dict[str, Any]]:
    """The plan, token and record of the interrupted write (in ``mode``) of ``tensor``
    to ``store`` (of ``nodes``); refuse a write that is not the one interrupted."""
    (raw,) = get_many(store, [_PLAN])
    if raw is None:
        raise MetatensorDaskError(
            f"the interrupted write at {where} left no record of its plan, so it can not be "
            "resumed; use mode='w' to overwrite it"
        )
    record = _plan_record(raw, len(tensor.keys.names))
    if record is None:
        raise MetatensorDaskError(
            f"the interrupted write at {where} left a damaged record of its plan "
            f"('{_PLAN}', cut short while it was written), so it can not be resumed; use "
            "mode='w' to overwrite it"
        )
    remedy = "resume with the same tensor and mode, or use mode='w' to overwrite"
    if mode == "a":
        keys = (
            Labels._trusted(
                tensor.keys.names,
                np.array(record["keys"] or [], np.int32).reshape(-1, len(tensor.keys.names)),
            )
            if "keys" in record
            else _stored_keys(store, nodes, where)
        )
        plan, new_keys = _plan_blocks_at(tensor, request, keys)
        if new_keys:
            raise MetatensorDaskError(
                f"the interrupted write at {where} does not know the key "
                f"{tuple(int(v) for v in new_keys[0])}: {remedy}"
            )
        token = _token(plan, tensor)
        if "keys" in record:
            plan.small["keys"] = lambda: keys.values
        _check_matches(plan, nodes, where, remedy)
    else:
        plan = _plan_tensor(tensor, request)
        token = _token(plan, tensor)
        _check_rewrite(plan, nodes, where, remedy)
    missing = [p for p in record["data"] if p not in plan.data]
    missing += [p for p in record["small"] if p not in plan.small]
    if missing:
        raise MetatensorDaskError(
            f"the interrupted write at {where} was storing '{missing[0]}', which this tensor "
            f"does not have: {remedy}"
        )
    if record.get("token") != token:
        raise MetatensorDaskError(
            f"the interrupted write at {where} was storing another computation: the same "
            "shapes and labels, but other values, another graph or other inputs (e.g. "
            "other arguments of an operation), or another info; resume=True only "
            "finishes the same write: use mode='w' to overwrite it with this one"
        )
    return plan, token, record


def _starts_over(
    tensor: TensorMap, mode: str, request: chunking.ChunkRequest, store: Store
) -> bool:
    """Whether ``resume=True`` in ``mode`` writes an interrupted store anew: with
    ``mode="w"``, when the write stored no data to keep: it left no readable record of
    its plan (killed before it, as it emptied the store, or while it wrote it), or the
    plan of this very write with no chunk recorded (killed before it wrote its root
    over the one that still lists the store it emptied). The overwrite that the error
    of other modes names as the remedy is the one asked for."""
    if mode != "w":
        return False
    (raw,) = get_many(store, [_PLAN])
    record = None if raw is None else _plan_record(raw, len(tensor.keys.names))
    if record is None:
        return True
    if recorded_chunks(store) - {_PLAN}:
        return False
    return record.get("token") == _token(_plan_tensor(tensor, request), tensor)


def _resume(
    tensor: TensorMap,
    mode: str,
    request: chunking.ChunkRequest,
    store: Store,
    existing: tuple[dict[str, Any], dict[str, Any]],
    where: str,
    compute: bool,
    lock: WriteId,
) -> Delayed | None:
    attributes, nodes = existing
    plan, token, record = _resumed(tensor, mode, request, store, nodes, where)
    recorded = recorded_chunks(store)
    info = layout.stored_info(attributes, where)
    return _execute(
        store,
        plan,
        nodes,
        sorted(nodes),
        record["data"],
        record["small"],
        info,
        compute,
        (lock, token),
        recorded,
        record.get("kept") if isinstance(record.get("kept"), dict) else None,
    )


def _stored_token(
    tensor: TensorMap,
    mode: str,
    request: chunking.ChunkRequest,
    store: Store,
    existing: tuple[dict[str, Any], dict[str, Any]],
    where: str,
) -> bool:
    """Whether a complete store was written by the write of this tensor in this mode
    (the token in its root document is this write's, or the appends since kept it)."""
    ours = existing[0][layout.ATTRIBUTE]
    stored = {ours.get(_TOKEN), ours.get(layout.WRITTEN)} - {None}
    if not stored:
        return False
    if mode == "a":
        keys = _stored_keys(store, existing[1], where)
        if keys.names != tensor.keys.names:
            return False
        if _adds_nothing(tensor, existing[0], where):
            return True
        plan, new_keys = _plan_blocks_at(tensor, request, keys)
        if new_keys:
            return False
    else:
        plan = _plan_tensor(tensor, request)
    return _token(plan, tensor) in stored


def _adds_nothing(tensor: TensorMap, attributes: dict[str, Any], where: str) -> bool:
    """Whether a write in mode "a" of ``tensor`` to the store at ``where``, of root
    ``attributes``, writes nothing: a map of no block, whose info the store holds
    already."""
    info = layout.stored_info(attributes, where)
    return len(tensor.keys) == 0 and {**info, **tensor.info()} == info


def _clear(store: Store) -> None:
    """Delete everything in the store but its lock, the lock files of other writers
    (``.lock.<id>.tmp``: a writer trying to take the lock writes one and removes it
    when it finds the store taken; an overwrite racing it removed it first, or failed
    on it once gone) and its root document, which marks it incomplete: a clear
    interrupted (``KeyboardInterrupt``, a kill) leaves an incomplete store, which
    ``mode="w"`` writes again, not a folder of arrays without a root, which no mode
    writes. What another process removes meanwhile is gone, as wanted."""
    root = local_root(store)
    if root is not None:
        # listed whole first: an interrupt leaves no listing open
        for entry in list(os.scandir(root)):
            if _kept_by_clear(entry.name):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
            except FileNotFoundError:
                pass
        return

    async def clear() -> None:
        for name in [name async for name in store.list_dir("")]:
            if not _kept_by_clear(name):
                await store.delete_dir(name)
                await store.delete(name)

    sync(clear())


def _kept_by_clear(name: str) -> bool:
    """Whether :func:`_clear` keeps the entry ``name`` of the store's root."""
    return name.startswith(LOCK_KEY) or name == "zarr.json"


@overload
def to_zarr(
    tensor: TensorMap,
    store: StoreLike,
    mode: ZarrMode | None = ...,
    *,
    compute: Literal[True] = ...,
    resume: bool = ...,
    chunks: ChunksLike = ...,
    storage_options: dict[str, Any] | None = ...,
    append_dim: str | None = ...,
    renumber: dict[str, int | str] | None = ...,
) -> None: ...


@overload
def to_zarr(
    tensor: TensorMap,
    store: StoreLike,
    mode: ZarrMode | None = ...,
    *,
    compute: Literal[False],
    resume: bool = ...,
    chunks: ChunksLike = ...,
    storage_options: dict[str, Any] | None = ...,
    append_dim: str | None = ...,
    renumber: dict[str, int | str] | None = ...,
) -> Delayed: ...


@overload
def to_zarr(
    tensor: TensorMap,
    store: StoreLike,
    mode: ZarrMode | None = ...,
    *,
    compute: bool = ...,
    resume: bool = ...,
    chunks: ChunksLike = ...,
    storage_options: dict[str, Any] | None = ...,
    append_dim: str | None = ...,
    renumber: dict[str, int | str] | None = ...,
) -> Delayed | None: ...


def to_zarr(
    tensor: TensorMap,
    store: StoreLike,
    mode: ZarrMode | None = None,
    *,
    compute: bool = True,
    resume: bool = False,
    chunks: ChunksLike = None,
    storage_options: dict[str, Any] | None = None,
    append_dim: str | None = None,
    renumber: dict[str, int | str] | None = None,
) -> Delayed | None:
    """Write ``tensor`` to a Zarr v3 store (layout: ``docs/zarr-format.md``).

    Parameters
    ----------
    tensor
        The tensor to write; its dask arrays are computed chunk by chunk as they are
        stored, never all at once.
    store
        Any zarr ``StoreLike``: a directory path, an fsspec URL (with
        ``storage_options``), or a zarr store object. Memory stores are refused when
        tasks run in other processes (or, for a zarr ``MemoryStore``, on a copy of it),
        by the call or, with ``compute=False``, by the tasks when they run.
    mode
        As xarray: ``None`` (the default) means ``"a"`` with ``append_dim`` and ``"w-"``
        without; ``"w-"`` creates and fails if a store exists; ``"w"`` overwrites;
        ``"a"`` adds blocks (new keys) and gradients to a complete store (or creates
        one), and refuses a key that is already stored and brings no new gradient; the
        stored values of a key that does (its block's and its stored gradients') are
        kept, and must be the tensor's (compared before anything is written, but for
        values read from this store as it is);
        ``"r+"`` rewrites the values of an existing store whose metadata (keys,
        labels, shapes, dtypes, gradients) is identical.
    compute
        Write now (``True``), or write the metadata now and return a
        :class:`dask.delayed.Delayed` that writes the data and marks the store
        complete when computed. The store stays locked until the ``Delayed`` has run.
    resume
        Finish an interrupted write of the same computation (same mode): check that
        its recorded token (of the dask graphs, metadata and info) and the stored
        metadata match, and store only the chunks not recorded as written. A
        complete store written by the same computation is left as it is, and so is
        a store that holds the append of the same tensor (any append since the
        store was last written whole). Takes over the lock of a writer that is gone.
    chunks
        Rows per stored chunk of each block's values: ``None`` keeps the values'
        regular dask chunking along samples (a single chunk larger than the
        ``chunk-size`` setting is split to it), an int gives value rows per chunk, a
        size string such as ``"64MiB"`` a target for the largest co-partitioned array
        (usually a gradient). Gradients get as many chunks as their values. Arrays
        that already exist (``"r+"``, ``resume``) keep their stored chunks.
    storage_options
        Options of the fsspec filesystem, for URLs.
    append_dim
        ``"samples"``: append each block's samples after the stored ones (gradient rows
        follow, their ``"sample"`` shifted); keys not stored become new blocks after
        the stored ones, and a store that does not exist is created. Components,
        properties, gradients and dtype must be the stored ones. The cost is
        proportional to the appended data (stores of format 3 or later; older ones are
        refused, ``metatensor-dask convert`` upgrades them). See ``docs/ingestion.md``.
    renumber
        With ``append_dim``: ``{dimension: offset}`` adds ``offset`` (an int, or
        ``"next"``: one past the largest stored value) to that sample dimension of the
        blocks and of their gradients, so that per-batch ids (featomic numbers systems
        from 0 in every call) become global.

    Returns
    -------
    None, or a ``Delayed`` when ``compute=False``.

    Raises
    ------
    StoreLockedError
        Another writer holds the store (the message names it), its lock is stale and
        neither ``resume`` nor ``mode="w"`` is given, or this write lost its lock.
    UnsafeNameError
        A gradient name is not a single safe path component; nothing is written.
    MetatensorDaskError
        The store does not fit the mode, or ``resume`` finds another computation.

    Notes
    -----
    Settings (``dask.config``): ``metatensor_dask.chunk-size``, ``shard-chunks`` (zarr
    chunks per shard along samples; dask chunks are aligned to shards), ``compressor``,
    ``checksum``, ``lock-timeout`` (after which a lock without heartbeat is stale) and
    ``drop-behind`` (uncompressed chunk files leave the page cache once on disk, but for
    the newest of each process; see ``docs/configuration.md``). Dask chunks are always
    rechunked to the stored chunks (or shards) before writing, so that no two tasks
    write into the same one. One writer at a time: see "Writers: locking and resume" in
    ``docs/zarr-format.md``.
    """
    from ..tensor import TensorMap

    if not isinstance(tensor, TensorMap):
        raise wrong_type(
            f"`tensor` must be a metatensor_dask TensorMap, got {type(tensor)}", tensor
        )
    if mode is None:
        mode = "w-" if append_dim is None else "a"
    if mode not in _MODES:
        raise MetatensorDaskError(f"`mode` must be one of {list(_MODES)}, got {mode!r}")
    if append_dim is not None and (append_dim != "samples" or mode != "a"):
        raise MetatensorDaskError(
            f"`append_dim` can only be 'samples', with mode 'a' (or None), got "
            f"append_dim={append_dim!r} and mode={mode!r}"
        )
    renumbering = parse_renumber(renumber)
    if renumbering is not None:
        if append_dim is None:
            raise MetatensorDaskError("`renumber` is only used with append_dim='samples'")
        check_dimension(
            renumbering.dimension,
            tensor.sample_names,
            len(tensor) > 0,
            key_names=tensor.keys.names,
        )
    for block in tensor.blocks():
        check_gradient_names(block, zarr=True)
    check_unrepeated(tensor)
    if len(tensor.keys):
        check_dtype(tensor.block(0).dtype)  # the blocks of a map share their dtype
    request = chunking.parse_chunks(chunks)
    refuse_metatensor_file(store)
    folders = new_folders(store)
    try:
        return _locked_write(
            tensor, store, mode, request, compute, resume, storage_options, append_dim, renumbering
        )
    except BaseException:
        remove_if_empty(folders)  # a refusal leaves the location as it was
        raise


def _locked_write(
    tensor: TensorMap,
    location: StoreLike,
    mode: str,
    request: chunking.ChunkRequest,
    compute: bool,
    resume: bool,
    storage_options: dict[str, Any] | None,
    append_dim: str | None,
    renumbering: Renumber | None,
) -> Delayed | None:
    """:func:`to_zarr` once its arguments are checked: take the store's lock, write or
    append, and hand the lock over to the ``Delayed`` (or release it)."""
    limit = lock_timeout()
    drop_behind = _page_cache.budget()
    _direct_writes.setting()  # a wrong value refused here, before the store is touched
    store = open_store(location, storage_options, writable=True)
    command = None if append_dim is None else append_command()
    lock = StoreLock(store, describe(store), limit, command)
    found = get_many(store, [LOCK_KEY])[0] if resume or mode == "w" else None
    if found is not None:
        holder = Holder.parse(found)
        live = holder is not None and holder.stale_reason(limit) is None
        if _refuse_before_takeover(
            tensor, store, live, mode, request, resume, append_dim, renumbering
        ):
            # done already: the lock stays with the writer that holds it, if it runs
            if not live:
                _release_left_lock(lock, store)
            return None if compute else nothing_to_write(_nothing)
    lock.acquire(takeover=resume or mode == "w")
    try:
        if append_dim is None:
            delayed = _write(tensor, store, mode, request, compute, resume, lock.ref)
        else:
            existing = read_root(store, lock.ref.where)
            if existing is None:
                refuse_foreign(store, lock.ref.where)
            delayed = append(
                tensor,
                store,
                lock.ref,
                request,
                renumbering,
                resume,
                compute,
                existing,
                _plan_appended,
                drop_behind,
            )
    except BaseException as error:
        lock.release()
        if no_room(error) is not None:
            then = lock.remedy()
            if append_dim is None and _complete(store, lock.ref.where):
                then = "the store is as it was: run it again"
            raise_if_out_of_room(error, lock.ref.where, then)
        raise
    if delayed is None:
        lock.release()
    else:
        lock.hand_over()
    return delayed


def _release_left_lock(lock: StoreLock, store: Store) -> None:
    """Take over and release the lock that a writer gone left on a store that
    ``resume=True`` finds holding its write already (that write, or a resume of it,
    killed before it deleted its lock): kept, it would refuse the next write, naming as
    the remedy the ``resume=True`` that just ran. The lock of an interrupted append
    stays: it names the append to finish or discard."""
    if get_many(store, [layout.APPEND_KEY])[0] is not None:
        return
    with contextlib.suppress(StoreLockedError):  # another writer took it meanwhile
        lock.acquire(takeover=True)
        _forget_finished_write(store)
        lock.release()


def _forget_finished_write(store: Store) -> None:
    """Delete the progress records that a write stopped once its store was complete
    left (its root written, ``.progress/`` not deleted yet): they name nothing left to
    write. The record of an interrupted append is kept, for its resume or discard."""
    if get_many(store, [layout.APPEND_KEY])[0] is None:
        delete_prefix(store, layout.PROGRESS_PREFIX)


def _refuse_before_takeover(
    tensor: TensorMap,
    store: Store,
    live: bool,
    mode: str,
    request: chunking.ChunkRequest,
    resume: bool,
    append_dim: str | None,
    renumbering: Renumber | None,
) -> bool:
    """The refusals that need no lock of a write that finds a lock it may take over
    (``resume``, ``mode="w"``; ``live``: its holder looks alive), made before it takes
    it: taken over, then released by the refusal, it would be lost to the writer that
    holds it (a ``Delayed`` of this process then fails, and the store no longer names
    the command that left it). They are made again under the lock. Returns whether
    the write is done already: ``resume`` finds the complete store that it wrote, which
    another writer now appends to, or the append stored while another append is under
    way. An incomplete store that a live writer is writing is left to the lock, which
    refuses the write saying so (its record names another write than this one, not
    one that was interrupted)."""
    where = describe(store)
    if resume and live and not _complete(store, where):
        return False
    if append_dim is not None:
        return resume and refuse_resume(tensor, store, where, renumbering)
    try:
        existing = read_root(store, where)
    except MetatensorDaskError:
        if mode != "w":
            raise
        return False  # a damaged root: mode='w' replaces it
    if existing is None:
        return False
    if resume:
        if _refuse_other_write(tensor, mode, request, store, existing, where):
            return True
        if existing[0][layout.ATTRIBUTE].get("complete") is not True:
            return False
    if mode == "w":
        plan = _plan_tensor(tensor, request)
        _refuse_reading(plan, store, where, "mode='w' empties the store before computing it")
    return False


def _nothing() -> None:
    """The ``Delayed`` of a write found done without taking the lock."""


def _refuse_other_write(
    tensor: TensorMap,
    mode: str,
    request: chunking.ChunkRequest,
    store: Store,
    existing: tuple[dict[str, Any], dict[str, Any]],
    where: str,
) -> bool:
    """Refuse ``resume=True`` of ``tensor`` in ``mode`` when the store (of root
    ``existing``) holds another write than this one: an interrupted write of another
    computation, or, unless ``mode="w"`` overwrites it, a complete store written by
    another. Returns whether the store is complete and written by this write."""
    attributes, nodes = existing
    if attributes[layout.ATTRIBUTE].get("complete") is not True:
        if not _starts_over(tensor, mode, request, store):
            _resumed(tensor, mode, request, store, nodes, where)
        return False
    if _stored_token(tensor, mode, request, store, existing, where):
        return True
    if mode != "w":
        raise MetatensorDaskError(
            f"{where} is complete, but holds another computation than this one: "
            "resume=True only finishes the same write; use mode='w' to overwrite it"
        )
    return False


def _stored_root(
    store: Store, where: str, mode: str
) -> tuple[tuple[dict[str, Any], dict[str, Any]] | None, bool]:
    """The stored root (:func:`read_root`) and whether it is damaged: only
    ``mode="w"`` writes over a damaged root (the whole store is written again, so no
    damaged part is kept); the other modes raise its :class:`DamagedStoreError`."""
    try:
        return read_root(store, where), False
    except DamagedStoreError:
        if mode != "w":
            raise
        return None, True


def _complete(store: Store, where: str) -> bool:
    """Whether ``store`` holds a complete tensor (a write that failed before marking it
    incomplete left it so)."""
    try:
        existing = read_root(store, where)
    except (OSError, MetatensorDaskError):
        return False
    return existing is not None and existing[0][layout.ATTRIBUTE].get("complete") is True


def _write(
    tensor: TensorMap,
    store: Store,
    mode: str,
    request: chunking.ChunkRequest,
    compute: bool,
    resume: bool,
    lock: WriteId,
) -> Delayed | None:
    """:func:`to_zarr` once the lock is taken."""
    where = lock.where
    existing, damaged = _stored_root(store, where, mode)
    if existing is None and not damaged:
        refuse_foreign(store, where)
    complete = existing is not None and existing[0][layout.ATTRIBUTE].get("complete") is True

    if existing is not None and not complete:
        if resume and not _starts_over(tensor, mode, request, store):
            return _resume(tensor, mode, request, store, existing, where, compute, lock)
        if mode != "w":
            raise MetatensorDaskError(
                f"{where} holds an incomplete write (interrupted?): call to_zarr(..., "
                "resume=True) with the same tensor and mode to finish it, or use mode='w' "
                "to overwrite it"
            )
    if complete and mode in ("a", "r+"):
        refuse_nodes_of_documents(existing, where)
    if existing is not None and complete and resume:
        if _refuse_other_write(tensor, mode, request, store, existing, where):
            _forget_finished_write(store)
            return _done(compute, lock)
    plan = None
    if (existing is not None or damaged) and mode == "w":
        # what the tensor reads from the store is read before the store is emptied
        plan = _plan_tensor(tensor, request)
        _refuse_reading(plan, store, where, "mode='w' empties the store before computing it")
        plan.small = {path: _held(load()) for path, load in plan.small.items()}
        # incomplete first, so that a reader opening it from now on is refused
        stored = existing[1] if existing is not None else {}
        # the info of the tensor written: the stored one may be what made the store
        # damaged, which mode='w' replaces
        incomplete = layout.root_document(False, tensor.info(), stored)
        # reading the tensor's labels may be long: a writer stalled meanwhile (on
        # another host, past the lock-timeout) may have lost the lock to another one,
        # whose store it must not empty
        lock.check(stored=False)
        set_many(store, {"zarr.json": layout.encode(incomplete)}, atomic=True)
        _clear(store)
        existing = None

    if existing is None:
        if mode == "r+":
            raise MetatensorDaskError(
                f"mode='r+' rewrites an existing store, but there is none at {where}; use "
                "mode='w-' to create one"
            )
        plan = plan or _plan_tensor(tensor, request)
        everything = sorted(plan.nodes)
        return _execute(
            store,
            plan,
            plan.nodes,
            everything,
            sorted(plan.data),
            sorted(plan.small),
            tensor.info(),
            compute,
            (lock, _token(plan, tensor)),
        )
    attributes, stored = existing
    _refuse_interrupted_append(store, attributes, where, mode)
    if mode == "w-":
        raise MetatensorDaskError(
            f"a store already exists at {where}: use mode='w' to overwrite it, mode='a' to "
            "add blocks or gradients, or mode='r+' to rewrite its values"
        )
    info = {**layout.stored_info(attributes, where), **tensor.info()}
    if mode == "a":
        plan, final, token = _plan_addition(tensor, request, store, stored, where)
        if _adds_nothing(tensor, attributes, where):
            return _done(compute, lock)
        refuse_read_only_nodes(store, where, [*plan.nodes, *plan.data, *plan.small])
        return _execute(
            store,
            plan,
            final,
            sorted(plan.nodes),
            sorted(plan.data),
            sorted(plan.small),
            info,
            compute,
            (lock, token),
            kept=_kept(attributes, whole=False),
        )
    plan = _plan_tensor(tensor, request)
    _check_rewrite(
        plan, stored, where, "mode='r+' only rewrites values; use mode='w' to change metadata"
    )
    _refuse_reading(
        plan,
        store,
        where,
        "mode='r+' would rewrite chunks that its tasks may still have to read",
    )
    refuse_read_only_nodes(store, where, plan.data)
    return _execute(
        store,
        plan,
        stored,
        [],
        sorted(plan.data),
        [],
        info,
        compute,
        (lock, _token(plan, tensor)),
        kept=_kept(attributes, whole=True),
    )


def _refuse_interrupted_append(
    store: Store, attributes: dict[str, Any], where: str, mode: str
) -> None:
    """Refuse a write in ``mode`` (``"w-"``, ``"a"``, ``"r+"``) of the complete store
    ``where`` (of root ``attributes``) that holds an interrupted append: ``mode="a"``
    would drop its record while the partial last chunks it rewrote stay, which the
    chunk tables do not list (read as damage), ``"r+"`` would drop the append unsaid."""
    if interrupted(store, attributes):
        raise MetatensorDaskError(
            f"mode={mode!r} refuses the store at {where}: an append to it was interrupted "
            f"(its record '{layout.APPEND_KEY}' is left; the store reads as before it): "
            "finish the append with to_zarr(..., append_dim='samples', resume=True) and "
            "the same tensor and renumber (`metatensor-dask convert --append --resume` and "
            "the same sources), or give it up with metatensor_dask.discard_append(store), "
            "then write again; to replace the store use mode='w'"
        )


def _kept(attributes: dict[str, Any], whole: bool) -> dict[str, Any]:
    """What a write of some blocks (``mode="a"``, ``"r+"``) keeps of the root attributes
    ``attributes`` of the store: the record of the run of ``write_batches`` and the
    list of appends that wrote it, so that a requeued script resuming them finds them
    done; the store's format (the tables of format 4 are only for stores that have
    them throughout); and unless it rewrites ``whole`` values (``mode="r+"``, which
    gives the store a new id: a tensor opened before would read other values), the
    store's id."""
    ours = attributes[layout.ATTRIBUTE]
    names = [layout.RUN, layout.APPENDED, "format"] + ([] if whole else [STORE_ID])
    return {name: ours[name] for name in names if name in ours}
