"""Appending samples to a stored tensor: ``to_zarr(store, append_dim="samples")``.

Each block's rows go after the stored ones, its gradients' rows after theirs (their
``"sample"`` column shifted by the rows stored before); a key that is not stored becomes
a new block after the stored ones. The cost is proportional to the appended data: the
format 3 records of the stored samples (:mod:`.zarr_samples`) give the extended digest,
the uniqueness check and ``renumber={dim: "next"}`` without reading the store, and every
array is extended at its end, rewriting at most its last, partial chunk (or shard).

An append never changes what a reader of the store sees until its last step, and
first checks the partial last chunk of each stored array it extends (see
:func:`_read_heads`): one missing or damaged is refused with nothing written. Then:

1. the append is recorded (``.progress/append.json``, with its token);
2. the data: rows beyond the stored shapes (invisible to readers, whose metadata ends
   there) and the partial last chunk of each array, rewritten with its stored rows
   unchanged and written atomically (temporary file and rename on local disks), a
   compressed one noted first (see :class:`_Noting`); each values chunk records itself
   under ``.progress/`` when stored;
3. the node documents, then the root document (atomically), which makes the appended
   rows visible; then the records are deleted.

Killed at any point, the store reads as before the append (until step 3's root write)
or as after it; ``resume=True`` with the same tensor finishes it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import dask
import numpy as np
from dask.base import is_dask_collection, tokenize
from dask.delayed import Delayed
from zarr.storage import WrapperStore

from .. import config
from .._gc import without_collector
from .._partition import block_row_pointer
from ..errors import DamagedStoreError, MetatensorDaskError
from ..labels import Labels, entry_items
from . import _task_batches
from . import chunks as chunking
from . import zarr_layout as layout
from . import zarr_root_cache as root_cache
from ._file_writes import overwrite
from ._lock import LOCK_KEY, WriteId
from ._nothing import nothing_to_write
from .zarr_codecs import CHECKSUM_CODECS, is_plain, stored_dtype
from .zarr_identity import (
    FIRST_FORMAT,
    STORE_ID,
    check_listed,
    chunk_end_crc,
    chunk_file_key,
    chunk_rows,
    content_id,
    has_table,
    note,
    noted,
    records_table,
    rewritten_key,
    with_tables,
)
from .zarr_in_place import kept_rows
from .zarr_integrity import damaged
from .zarr_renumber import Renumber, renumber_hint, renumbered
from .zarr_rows import Parts, chunk_parts, extend_files, row_bytes, trailing_crcs, write_parts
from .zarr_samples import TAILS, extend_attributes, records_below
from .zarr_store import (
    ArrayRef,
    _local_root,
    check_memory_owner,
    delete_prefix,
    describe,
    get_many,
    list_prefix,
    list_root,
    memory_owner,
    outer_store,
    read_arrays,
    read_labels,
    read_nodes,
    read_plain_region,
    read_plain_regions,
    refuse_read_only_nodes,
    set_many,
    write_files,
)
from .zarr_store import compute as compute_tasks

if TYPE_CHECKING:
    from zarr.abc.store import Store

    from ..block import TensorBlock
    from ..tensor import TensorMap
    from .zarr_plan import Plan

__all__ = [
    "AppendPlan",
    "RepeatedSampleError",
    "append",
    "interrupted",
    "plan_append",
    "read_root",
    "recorded_token",
    "refuse_foreign",
    "refuse_nodes_of_documents",
    "reordering",
    "store_now",
]

#: The record of an append in progress.
RECORD = layout.APPEND_KEY
#: Root attribute (under ``metatensor_dask``) holding the token of the last write.
_TOKEN = "token"


@dataclass
class _Rows:
    """Rows appended to one stored array, starting at row ``offset``."""

    path: str
    offset: int
    document: dict[str, Any]
    data: Any  # numpy or dask array
    #: The stored rows of the partial chunk that row ``offset`` starts in, when the plan
    #: has them checked already (sample Labels: see :meth:`_Planner.extend_block`);
    #: ``None`` to read them from the chunk.
    head: np.ndarray | None = None


@dataclass
class AppendPlan:
    """What an append stores: the nodes once done, the documents it changes, the rows."""

    nodes: dict[str, dict[str, Any]]
    changed: list[str] = field(default_factory=list)
    rows: list[_Rows] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)
    #: The format of the store (kept by appends) and its id (``None``: a new store).
    version: int = layout.FORMAT
    store_id: str | None = None
    #: The root the plan appends to, as read (see :class:`.zarr_root_cache.Stored`).
    stored: Any = None
    #: The crc32c ending each chunk file of a values array with a chunk table that
    #: :func:`store_now` wrote (by key), which the commit lists without reading the
    #: files again (see :func:`~.zarr_identity.with_tables`).
    crcs: dict[str, int] = field(default_factory=dict)

    def root(self, complete: bool) -> dict[str, Any]:
        """The root document once the plan is stored (see
        :func:`~.zarr_layout.root_document`)."""
        return layout.root_document(complete, self.info, self.nodes, self.version, self.store_id)

    def starts(self) -> dict[str, int]:
        """The first row of each array that the plan stores (those that record a chunk
        table are listed anew from it, see :func:`~.zarr_identity.with_tables`)."""
        found: dict[str, int] = {}
        for rows in self.rows:
            found[rows.path] = min(found.get(rows.path, rows.offset), rows.offset)
        return found

    def extend(
        self,
        path: str,
        offset: int,
        data: Any,
        attributes: dict | None = None,
        head: np.ndarray | None = None,
    ) -> None:
        """Append ``data`` to the stored array ``path`` of ``offset`` rows (``head``: see
        :class:`_Rows`)."""
        document = dict(self.nodes[path])
        document["shape"] = [offset + int(data.shape[0]), *document["shape"][1:]]
        if attributes is not None:
            document["attributes"] = attributes
        if document != self.nodes[path]:
            self.nodes[path] = document
            self.changed.append(path)
        if data.shape[0]:
            self.rows.append(_Rows(path, offset, document, data, head))


class RepeatedSampleError(MetatensorDaskError):
    """An append of a sample that the store holds already. ``problem`` names it and
    ``names`` are the stored sample names, from which the message words the remedy of
    an append not renumbered (number the batches apart); a caller that renumbers its
    batches already words its own remedy after ``problem``."""

    def __init__(self, problem: str, names: list[str]) -> None:
        self.problem, self.names = problem, names
        super().__init__(f"{problem}. {_number_apart(names)}")

    def __reduce__(self) -> tuple[type, tuple]:
        # the arguments, not the message: a worker's error is sent to the client
        return (type(self), (self.problem, self.names))


def _number_apart(names: list[str]) -> str:
    """The remedy of a repeated sample of the sample dimensions ``names``: renumber."""
    dimension = renumber_hint(names)
    which = "" if dimension == "system" else f" (on the dimension of {names} that numbers them)"
    return (
        f"Number the batches apart{which}: --renumber {dimension} (convert --append), "
        f"renumber={{{dimension!r}: 'next'}} (to_zarr), renumber={dimension!r} "
        "(write_batches, in a new run: resume keeps the run's renumber)"
    )


def reordering(names: list[str], wanted: list[str]) -> list[int] | None:
    """The order in which ``names`` become ``wanted`` (the positions of ``wanted`` in
    ``names``, as ``permute_dimensions`` takes them); ``None`` when they are not the
    same names."""
    if sorted(names) != sorted(wanted) or len(set(names)) != len(names):
        return None
    return [names.index(name) for name in wanted]


def _key_text(key: Any) -> str:
    return (
        "(" + ", ".join(f"{n}={int(v)}" for n, v in zip(key.names, key.values, strict=True)) + ")"
    )


def _entries_difference(mine: Labels, stored: Labels) -> str | None:
    """How the entries of ``mine`` differ from ``stored`` (same names): their count, or
    the first entry that differs (``None``: they are the same)."""
    if len(mine) != len(stored):
        return f"{len(mine)} entries, the store's {len(stored)}"
    differing = np.flatnonzero(np.any(np.asarray(mine.values) != np.asarray(stored.values), 1))
    if len(differing) == 0:
        return None
    row = int(differing[0])
    entry = tuple(int(v) for v in mine.values[row])
    stored_entry = tuple(int(v) for v in stored.values[row])
    return f"entry {row} is {entry}, the store's {stored_entry}"


class _Planner:
    """Builds the :class:`AppendPlan` of a tensor against a stored layout."""

    def __init__(self, store: Store, where: str, stored: layout.TensorLayout):
        self.store = store
        self.where = where
        self.plan = AppendPlan(dict(stored.nodes), info=dict(stored.info))
        self.labels: dict[str, Labels] = {}

    def refuse(self, what: str, problem: str, remedy: str = "") -> MetatensorDaskError:
        remedy = remedy or (
            "Only samples can be appended: components, properties, gradients and dtype "
            "must be the stored ones"
        )
        return MetatensorDaskError(
            f"can not append to {self.where}: {what} {problem}; nothing was written. {remedy}"
        )

    def check(
        self, block: TensorBlock, stored: layout.BlockLayout, what: str, labels: bool
    ) -> None:
        """The metadata of ``block`` against a stored block, before anything is written:
        names, dtype and gradients, and with ``labels`` (a stored key) the component and
        property entries too."""
        if block.samples.names != stored.samples.names:
            mine, theirs = list(block.samples.names), list(stored.samples.names)
            order = reordering(mine, theirs)
            remedy = (
                f"Put its sample dimensions in the stored order first: "
                f"permute_dimensions(tensor, 'samples', {order})"
                if order is not None
                else "Give it the stored sample names first (rename_dimension, "
                "append_dimension or remove_dimension on 'samples')"
            )
            raise self.refuse(what, f"has the samples {mine}, the store {theirs}", remedy)
        dtype = stored_dtype(block.values.dtype)
        if dtype != stored_dtype(stored.values.dtype):
            raise self.refuse(
                what,
                f"has the dtype {dtype}, the store {stored.values.dtype} (convert it first: "
                f"tensor.to(dtype='{stored.values.dtype}'))",
            )
        difference = self._components_difference(block, stored, labels)
        if difference is not None:
            raise self.refuse(what, f"has other components than the stored ones: {difference}")
        difference = self._properties_difference(block, stored, labels)
        if difference is not None:
            raise self.refuse(what, f"has other properties than the stored ones: {difference}")
        gradients = sorted(block.gradients_list())
        if gradients != sorted(stored.gradients):
            raise self.refuse(
                what, f"has the gradients {gradients}, the store {sorted(stored.gradients)}"
            )
        for parameter, gradient in block.gradients():
            self.check(
                gradient, stored.gradients[parameter], f"{what}, gradient '{parameter}'", labels
            )

    def _components_difference(
        self, block: TensorBlock, stored: layout.BlockLayout, labels: bool
    ) -> str | None:
        """How the components of ``block`` differ from the stored ones (``None``: they
        do not), entries compared with ``labels`` only."""
        names = [", ".join(c.names) for c in block.components]
        stored_names = [", ".join(info.names) for info in stored.components]
        if names != stored_names:
            return f"its components are {names}, the store's {stored_names}"
        if not labels:
            return None
        for position, (mine, info) in enumerate(
            zip(block.components, stored.components, strict=True)
        ):
            difference = _entries_difference(mine, self.labels[info.path])
            if difference is not None:
                return f"its component {position} ({names[position]}): {difference}"
        return None

    def _properties_difference(
        self, block: TensorBlock, stored: layout.BlockLayout, labels: bool
    ) -> str | None:
        """How the properties of ``block`` differ from the stored ones (``None``: they
        do not, or the store has none to compare), entries compared with ``labels``
        only."""
        if stored.properties is None:
            return None
        if block.properties.names != stored.properties.names:
            return (
                f"its properties are named {block.properties.names}, the store's "
                f"{stored.properties.names}"
            )
        if not labels:
            return None
        difference = _entries_difference(block.properties, self.labels[stored.properties.path])
        return None if difference is None else f"its properties: {difference}"

    def unique(self, samples: np.ndarray, stored: layout.BlockLayout, what: str) -> None:
        """Refuse samples already stored: without reading them when the appended ones
        all sort after the largest stored one, or all exceed the largest stored value
        of one dimension (renumbered past the store, whichever its position), else by
        reading the stored samples."""
        attributes = stored.samples.attributes
        largest = attributes.get("max")
        if len(samples) == 0 or largest is None:
            return
        smallest = samples[np.lexsort(samples.T[::-1])[0]]
        if [int(v) for v in smallest] > list(largest):
            return
        if any(
            int(low) > int(high)
            for low, high in zip(samples.min(axis=0), attributes["column_max"], strict=True)
        ):
            return
        (old,) = read_arrays([ArrayRef(self.store, stored.samples.path, stored.samples.document)])
        repeated = np.isin(entry_items(samples), entry_items(old))
        if np.any(repeated):
            entry = [int(v) for v in samples[np.argmax(repeated)]]
            names = stored.samples.names
            raise RepeatedSampleError(
                f"can not append to {self.where}: {what} has the sample "
                f"{dict(zip(names, entry, strict=True))}, which is already stored; nothing "
                "was written",
                names,
            )

    def extend_block(
        self, block: TensorBlock, stored: layout.BlockLayout, shift: int | None, what: str
    ) -> None:
        """Append the rows of ``block`` (a gradient when ``shift``, the rows its
        ``"sample"`` column is shifted by) to the stored block."""
        n_old = stored.values.shape[0]
        samples = np.array(block.samples.values, dtype=np.int32)
        if shift is not None:
            if len(samples) and int(samples[:, 0].max()) + shift > np.iinfo(np.int32).max:
                raise self.refuse(what, "would have more than 2**31 rows")
            samples[:, 0] += shift
        info = stored.samples
        ref = ArrayRef(self.store, info.path, info.document)

        def read(start: int, stop: int) -> np.ndarray:
            if stop <= start:
                return np.empty((0, samples.shape[1]), np.int32)
            found = read_plain_region(ref, (slice(start, stop), slice(0, samples.shape[1])))
            return np.asarray(found, np.int32)

        key = (self.where, info.path)
        tail = TAILS.stored_tail(key, info.attributes, n_old, read)
        if tail.chain.digest() != info.attributes.get("digest"):
            raise damaged(
                self.where,
                f"the Labels '{info.path}' do not match the digest recorded when written "
                f"(its rows after the first {info.attributes['chain']['rows']}, which an "
                "append extends)",
            )
        below = records_below(info.attributes, tail.maxima)
        if below is not None:
            raise damaged(
                self.where,
                f"the records of '{info.path}' disagree with its entries ({below}), which "
                "an append would trust; nothing was written",
            )
        if shift is None:
            self.unique(samples, stored, what)
        attributes = extend_attributes(info.attributes, tail.rows, samples, tail.chain)
        TAILS.remember(key, attributes, tail, samples)
        self.plan.extend(stored.values.path, n_old, block.values)
        head = _head(tail.rows, info.document, n_old)
        self.plan.extend(info.path, n_old, samples, attributes, head)
        for parameter, gradient in block.gradients():
            child = stored.gradients[parameter]
            if child.row_pointer is not None:
                pointer = block_row_pointer(block, parameter)
                if pointer is None:
                    raise MetatensorDaskError(
                        f"can not append to {self.where}: {what}, gradient '{parameter}' has "
                        "rows not grouped by 'sample', but the stored rows are (they have a row "
                        "pointer, which the first rows stored gave); nothing was written. Group "
                        "the gradient rows of every tensor appended by their 'sample', e.g. "
                        "with metatensor.sort(tensor, axes='samples') (metatensor_dask.sort for "
                        "its maps)"
                    )
                self.plan.extend(
                    child.row_pointer.path,
                    n_old + 1,
                    pointer[1:] + np.int64(child.values.shape[0]),
                )
            self.extend_block(gradient, child, n_old, f"{what}, gradient '{parameter}'")


def _head(rest: np.ndarray, document: dict[str, Any], n_old: int) -> np.ndarray | None:
    """The stored rows of the partial chunk that row ``n_old`` of a samples array starts
    in, from ``rest``, its last stored rows as :meth:`.ChainTails.stored_tail` gives
    them (checked: hashed to the stored digest, or read through the chunks' checksums);
    ``None`` when row ``n_old`` starts a chunk or ``rest`` does not hold them all."""
    count = n_old % int(document["chunk_grid"]["configuration"]["chunk_shape"][0])
    if count == 0 or len(rest) < count:
        return None
    return rest[len(rest) - count :]


def _add_whole(plan: AppendPlan, new: Plan) -> None:
    """Add the nodes of blocks planned whole (:func:`~.zarr_plan.plan_whole`): the
    values arrays as they are (dask or numpy), the Labels and row pointers as numpy."""
    for path, document in new.nodes.items():
        plan.nodes[path] = document
        plan.changed.append(path)
    for path, data in new.data.items():
        plan.rows.append(_Rows(path, 0, new.nodes[path], data))
    for path, values in new.small.items():
        plan.rows.append(_Rows(path, 0, new.nodes[path], np.asarray(values())))


@without_collector
def read_root(store: Store, where: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The stored root attributes and node documents, ``None`` without a root document
    (read with the collector paused: the documents of every node of a store, many
    long-lived objects and no garbage cycles)."""
    (raw,) = get_many(store, ["zarr.json"])
    if raw is None:
        return None
    stored = root_cache.parse_root(raw, where)
    if stored[1] is None:
        return root_cache.Stored(stored[0], read_nodes(store), from_documents=True)
    return stored


def refuse_nodes_of_documents(existing: tuple[dict[str, Any], Any] | None, where: str) -> None:
    """Refuse to write into a complete format 4 store whose root has no inline metadata
    (``existing``, as :func:`read_root` gives it): its nodes' own documents can not tell
    its blocks from blocks copied from another store, and the root the write stores
    would list them, consolidated, as this store's (see
    :func:`~.zarr_layout.refuse_without_inline_metadata`)."""
    if isinstance(existing, root_cache.Stored) and existing.from_documents:
        layout.refuse_without_inline_metadata(existing[0], where)


def refuse_foreign(store: Store, where: str) -> None:
    """Refuse to create a store at a location without root document that holds anything
    but what a writer leaves there: its lock, temporary files of atomic writes and, for
    a write or append interrupted before its root, ``.progress/`` with what it stored."""
    names = list_root(store)
    if layout.PROGRESS_PREFIX.rstrip("/") in names:
        return
    outer = outer_store(store)
    if outer is not None:
        raise MetatensorDaskError(
            f"{where} is inside the Zarr store {outer}, which would hold the new store's "
            "files as unknown nodes (and delete them when overwritten): write the tensor "
            "outside of it"
        )
    foreign = sorted(name for name in names if not _left_by_a_writer(name))
    if foreign:
        shown = ", ".join(repr(name) for name in foreign[:5])
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        raise MetatensorDaskError(
            f"{where} is not empty and holds no Zarr store (it holds {shown}{more}): "
            "metatensor-dask never writes among or deletes other data; write the tensor "
            "to a new or empty location"
        )


def _left_by_a_writer(name: str) -> bool:
    """Whether a root entry is what a writer killed before writing the root leaves
    there: its lock, or a temporary file of an atomic write (``*.partial``: ours and
    zarr's, renamed over their key once whole)."""
    return name.startswith(LOCK_KEY) or name.endswith(".partial")


def _stored_layout(
    store: Store, where: str, existing: tuple[dict[str, Any], dict[str, Any]]
) -> layout.TensorLayout:
    attributes, nodes = existing
    version = attributes[layout.ATTRIBUTE].get("format")
    if isinstance(version, int) and version < 3:
        raise MetatensorDaskError(
            f"can not append to {where}: it uses the storage format {version}, whose labels "
            "records can not be extended without rewriting the store; `metatensor-dask "
            f"convert` it to a new store (format {layout.FORMAT}) and append to that one"
        )
    return layout.parse_layout(attributes, nodes, where, getattr(existing, "known", None))


def _codec_settings(document: dict[str, Any]) -> dict[str, Any]:
    """The settings (compressor, checksum, shard-chunks) giving the codecs of the stored
    values array ``document``, with which new keys are written: a store keeps its
    codecs whatever the settings of an append (given for the append's thread only, see
    :func:`~metatensor_dask.config.overridden`). ``{}`` (the current settings) when
    they can not give them (several compressors, or a checksum as compressor, which the
    settings refuse)."""
    codecs, shards = document["codecs"], None
    if codecs[0]["name"] == "sharding_indexed":
        configuration = codecs[0]["configuration"]
        outer = document["chunk_grid"]["configuration"]["chunk_shape"][0]
        shards = outer // configuration["chunk_shape"][0]
        codecs = configuration["codecs"]
    after = codecs[1:]  # after "bytes"
    checksum = bool(after) and after[-1]["name"] == "crc32c"
    compressors = after[:-1] if checksum else after
    if len(compressors) > 1 or any(c["name"] in CHECKSUM_CODECS for c in compressors):
        return {}
    return {
        "compressor": compressors[0] if compressors else None,
        "checksum": checksum,
        "shard-chunks": shards,
    }


#: Plans blocks (at their indices) written whole, and the keys when given
#: (:func:`~.zarr_plan.plan_whole`): ``to_zarr`` stores the values in dask tasks, a batch
#: of ``write_batches`` from its own arrays.
PlanWhole = Callable[
    [list[tuple[int, "TensorBlock"]], "Labels | None", chunking.ChunkRequest], "Plan"
]


@without_collector
def plan_append(
    tensor: TensorMap,
    store: Store,
    where: str,
    existing: tuple[dict[str, Any], dict[str, Any]] | None,
    chunks: chunking.ChunkRequest,
    plan_whole: PlanWhole,
) -> AppendPlan:
    """What appending ``tensor`` (already renumbered) to the store stores.

    ``existing`` is the stored root attributes and nodes, ``None`` (or nodes without
    ``keys``) for a new store, which is then planned as a plain write of ``tensor``.
    Every check is made here, before anything is written (with the collector paused:
    the layout of every stored block, many objects and no garbage cycles).
    """
    if existing is not None and "keys" not in existing[1]:
        if existing[0][layout.ATTRIBUTE].get("complete") is True:
            # every complete store has its keys: planned as new, its blocks would be
            # written over
            raise damaged(where, "the array 'keys' is missing")
    if existing is None or "keys" not in existing[1]:
        plan = AppendPlan({}, info=tensor.info(), **_identity(existing))
        _add_whole(plan, plan_whole(list(enumerate(tensor.blocks())), tensor.keys, chunks))
        return plan
    stored = _stored_layout(store, where, existing)
    (keys,) = read_labels(store, [stored.keys])
    if keys.names != tensor.keys.names:
        raise MetatensorDaskError(
            f"can not append to {where}: the tensor's keys are {tensor.keys.names}, the "
            f"store's {keys.names}; nothing was written"
        )
    planner = _Planner(store, where, stored)
    touched: list[Any] = []
    new_blocks: list[Any] = []
    new_keys: list[np.ndarray] = []
    for key, block in tensor.items():
        position = keys.position(key)
        if position is None:
            position = len(keys) + len(new_keys)
            new_keys.append(key.values)
            new_blocks.append((position, block))
            if stored.blocks:
                planner.check(block, stored.blocks[0], f"the block {_key_text(key)}", False)
        else:
            touched.append((key, block, stored.blocks[position]))
    infos = [info for _, _, s in touched for info in s.small_labels()]
    planner.labels = dict(zip([i.path for i in infos], read_labels(store, infos), strict=True))
    for key, block, stored_block in touched:
        planner.check(block, stored_block, f"the block {_key_text(key)}", True)
    for key, block, stored_block in touched:
        planner.extend_block(block, stored_block, None, f"the block {_key_text(key)}")
    plan = planner.plan
    plan.info.update(tensor.info())
    identity = _identity(existing)
    plan.version, plan.store_id = identity["version"], identity["store_id"]
    plan.stored = existing
    if new_blocks:
        settings = _codec_settings(stored.blocks[0].values.document) if stored.blocks else {}
        with config.overridden(settings):
            _add_whole(plan, plan_whole(new_blocks, None, chunks))
        values = np.concatenate([keys.values, np.array(new_keys, np.int32)])
        full = Labels._trusted(keys.names, values)
        attributes = layout.labels_attributes(keys.names, full.digest())
        plan.extend("keys", len(keys), values[len(keys) :], attributes)
    return plan


# -- storing ---------------------------------------------------------------------------


def store_rows(
    store: Store,
    path: str,
    document: dict[str, Any],
    offset: int,
    values: Any,
    drop_behind: int | None = None,
    store_id: str | None = None,
    strict: bool = False,
    head: np.ndarray | None = None,
) -> None:
    """Store ``values`` at row ``offset`` of an array whose document is ``document``; a
    partial first chunk keeps its stored rows and is replaced atomically. The files
    leave the page cache once on disk with ``drop_behind`` (see
    :func:`~.zarr_rows.write_parts`). In a format 4 store (of id ``store_id``), the
    stored rows are read from the chunks its table lists (see :mod:`.zarr_identity`;
    ``strict`` unless the append finishes an interrupted one, which may have rewritten
    the partial chunk already), unless they are ``head``, read and checked already (see
    :func:`_read_heads`)."""
    values = np.asarray(values)
    if values.size == 0:
        return
    if not is_plain(document):
        if head is None:
            _check_encoded_head(store, path, document, offset, store_id, strict)
        _write_encoded(store, path, document, offset, values)
        return
    whole, partial = _plain_chunks(store, path, document, offset, values, store_id, strict, head)
    write_parts(store, whole, drop_behind=drop_behind)
    _replace(store, partial, drop_behind=drop_behind)


def _head_region(document: dict[str, Any], offset: int) -> tuple[slice, ...] | None:
    """The stored rows of the partial chunk (or shard) that row ``offset`` of an array
    starts in (``None`` when it starts one)."""
    head = offset % int(document["chunk_grid"]["configuration"]["chunk_shape"][0])
    if not head:
        return None
    return (slice(offset - head, offset), *(slice(0, n) for n in document["shape"][1:]))


def _check_encoded_head(
    store: Store,
    path: str,
    document: dict[str, Any],
    offset: int,
    store_id: str | None,
    strict: bool,
) -> None:
    """Read, with a reader's checks, the stored rows of the partial chunk (or shard) of
    an encoded array (compressed, sharded) that an append at row ``offset`` rewrites,
    before zarr merges them with the new rows (see :func:`_stored_ref`)."""
    region = _head_region(document, offset)
    if region is not None:
        _stored_ref(store, path, document, offset, store_id, strict).read(region)


def _write_encoded(
    store: Store, path: str, document: dict[str, Any], offset: int, values: np.ndarray
) -> None:
    """Store ``values`` at row ``offset`` of an array whose chunks are encoded, through
    zarr, which reads the partial chunk, merges it and writes it (atomically on local
    disks); a compressed chunk listed in a table is noted first (see :class:`_Noting`)."""
    region = (slice(offset, offset + values.shape[0]), *(slice(0, n) for n in values.shape[1:]))
    inner = chunk_rows(document)
    if offset % inner and noted(document):
        store = _Noting(store, path, document, offset // inner)
    ArrayRef(store, path, document).array()[region] = values


class _Noting(WrapperStore):
    """The store through which zarr rewrites the partial last chunk ``index`` of a
    compressed array listed in a table: before the file holding it (its shard) is
    written, the crc32c ending that chunk in it is noted under ``.progress/`` (see
    :func:`~.zarr_identity.rewritten_key`), from which readers tell the chunk the append
    wrote from any other while it is in progress or interrupted."""

    def __init__(self, store: Store, path: str, document: dict[str, Any], index: int):
        super().__init__(store)
        self._path, self._document, self._index = path, document, index
        self._file = chunk_file_key(path, document, index)

    def _with_store(self, store: Store) -> _Noting:
        return type(self)(store, self._path, self._document, self._index)

    async def set(self, key: str, value: Any) -> None:
        if key == self._file:
            crc = chunk_end_crc(self._document, value.to_bytes(), self._index)
            if crc is not None:
                found = value.from_bytes(note(crc))
                await self._store.set(rewritten_key(self._path, self._index), found)
        await self._store.set(key, value)


def _plain_chunks(
    store: Store,
    path: str,
    document: dict[str, Any],
    offset: int,
    values: np.ndarray,
    store_id: str | None,
    strict: bool,
    known: np.ndarray | None = None,
) -> tuple[dict[str, Parts], dict[str, Parts]]:
    """The chunks of a plain array holding ``values`` at row ``offset``, by key: those
    written whole, and the partial first one with its stored rows (read and checked
    here, unless they are ``known``, checked already), to be replaced atomically (empty
    when ``offset`` starts a chunk)."""
    rows = int(document["chunk_grid"]["configuration"]["chunk_shape"][0])
    head = offset % rows
    stored = None
    if known is not None:
        assert len(known) == head, "the rows known are those of the partial chunk"
        stored = row_bytes(known, document)
    elif head:
        # only the partial chunk is merged with its stored rows, not the whole values
        stored = row_bytes(
            read_plain_region(
                _stored_ref(store, path, document, offset, store_id, strict),
                (slice(offset - head, offset), *(slice(0, n) for n in values.shape[1:])),
            ),
            document,
        )
    chunks = chunk_parts(path, document, values, offset // rows, stored)
    partial = {key: chunks.pop(key) for key in list(chunks)[:1]} if head else {}
    return chunks, partial


def _extended_chunks(
    root: str, where: str, path: str, document: dict[str, Any], offset: int, values: np.ndarray
) -> tuple[dict[str, Parts], dict[str, tuple[Parts, int]]] | None:
    """As :func:`_plain_chunks`, the partial first chunk to be extended in place (see
    :mod:`.zarr_in_place`): the parts written after its stored rows, kept in its file,
    and the size of those; ``None`` when it can not be (no partial chunk, or no table
    listing it)."""
    found = kept_rows(root, where, path, document, offset)
    if found is None:
        return None
    key, kept = found
    rows = int(document["chunk_grid"]["configuration"]["chunk_shape"][0])
    chunks = chunk_parts(path, document, values, offset // rows, kept=kept)
    return chunks, {key: (chunks.pop(key), kept.size)}


def _stored_ref(
    store: Store,
    path: str,
    document: dict[str, Any],
    offset: int,
    store_id: str | None,
    strict: bool,
) -> ArrayRef:
    """The array ``path`` as stored before an append at row ``offset``, to read the
    stored rows of the partial chunk (or shard) the append starts in through the checks
    of a reader, before they are merged with the new rows: zarr itself reads a missing
    chunk as its fill value and raises its codecs' own errors, so that a lost chunk
    would be stored again as zeros, and a damaged one refused without naming the store
    and the remedy; in a format 4 store (of id ``store_id``), a chunk that is not the
    one its table lists (see :mod:`.zarr_identity`) would be listed from then on.

    Reading raises :class:`~metatensor_dask.errors.DamagedStoreError` when the chunk is
    missing, does not decode, or is not the one listed.
    """
    stored = {**document, "shape": [offset, *document["shape"][1:]]}
    listed = store_id if records_table(document) else None
    return ArrayRef(store, path, stored, store_id=listed, strict=strict)


def _replace(store: Store, items: dict[str, Parts], drop_behind: int | None = None) -> None:
    """Store each item (given by its parts) atomically: on local disks written to a
    temporary file renamed over the key."""
    write_parts(store, items, atomic=True, drop_behind=drop_behind)


def _store_task(
    lock: WriteId,
    store: Store,
    places: list[tuple[str, dict[str, Any], int, str]],
    inputs: list[Any],
    picks: list[int | None],
    drop_behind: int | None,
    store_id: str | None,
    strict: bool,
):
    """Store rows of an append, unless its lock is gone: a task left running by an
    append that failed (dask's schedulers do not wait for the tasks running when one
    raises) stores nothing over the rows of the next writer, after a
    :func:`~metatensor_dask.io.zarr_discard.discard_append`.

    Each place ``(path, document, offset, marker)`` is stored the rows of its input (a
    chunk, or for a pick that is not ``None`` the item at that position of a group's
    result, see :func:`~metatensor_dask.io._task_batches.picked`), then recorded by its
    marker."""
    lock.check(stored=False)
    values = _task_batches.picked(inputs, picks)
    for (path, document, offset, marker), rows in zip(places, values, strict=True):
        store_rows(store, path, document, offset, rows, drop_behind, store_id, strict)
        set_many(store, {marker: b""})


def _aligned(offset: int, count: int, step: int) -> tuple[int, ...]:
    """Chunk sizes of ``count`` rows from row ``offset`` that end on multiples of ``step``."""
    sizes, position = [], offset
    while position < offset + count:
        end = min((position // step + 1) * step, offset + count)
        sizes.append(end - position)
        position = end
    return tuple(sizes)


def store_now(
    store: Store, plan: AppendPlan, drop_behind: int | None = None, in_place: bool = False
) -> None:
    """Store every row of ``plan`` from this process (dask arrays computed here).

    The chunks of plain arrays are written together, from a few threads, and so are
    the partial chunks replaced: an append of few rows to many blocks writes a few
    small files per array, and on some file systems each costs milliseconds of waiting
    (creating a file, freeing the blocks of the one replaced) that threads overlap.
    With ``in_place`` (a store without readers: a run of ``write_batches``), partial
    chunks of values arrays are extended in place (see :mod:`.zarr_in_place`)."""
    root = _local_root(store) if in_place else None
    where = describe(store)
    whole: dict[str, Parts] = {}
    partial: dict[str, Parts] = {}
    extended: dict[str, tuple[Parts, int]] = {}
    encoded: list[tuple[str, dict[str, Any], int, np.ndarray]] = []
    crcs: dict[str, int] = {}
    for rows in plan.rows:
        data = rows.data
        if is_dask_collection(data):
            (data,) = dask.compute(data, scheduler="synchronous")
        data = np.asarray(data)
        if data.size == 0:
            continue
        document, path, offset = rows.document, rows.path, rows.offset
        if not is_plain(document):
            _check_encoded_head(store, path, document, offset, plan.store_id, False)
            encoded.append((path, document, offset, data))
            continue
        found = None
        if root is not None:
            found = _extended_chunks(str(root), where, path, document, offset, data)
        if found is not None:
            chunks, first = found[0], {key: parts for key, (parts, _) in found[1].items()}
            extended.update(found[1])
        else:
            chunks, first = _plain_chunks(
                store, path, document, offset, data, plan.store_id, False, rows.head
            )
            partial.update(first)
        whole.update(chunks)
        if has_table(path, document, plan.version):
            crcs.update(trailing_crcs({**chunks, **first}))
    # written once every partial chunk is read and checked: one damaged is refused
    # with nothing written
    write_parts(store, whole, drop_behind=drop_behind)
    _replace(store, partial, drop_behind=drop_behind)
    if extended:
        extend_files(store, extended, drop_behind)
    for item in encoded:
        _write_encoded(store, *item)
    plan.crcs.update(crcs)


def _read_heads(store: Store, where: str, plan: AppendPlan, strict: bool) -> None:
    """Check, before an append writes anything (its record first), the partial chunk
    (or shard) that the rows of each stored array start in, which the append rewrites
    with its stored rows: missing or damaged, the append refuses it with nothing
    written, rather than stopping once its record and other rows are written.

    The stored rows of the arrays stored from this process (Labels, row pointers) are
    read with a reader's checks and kept as the rows' ``head``, which storing them
    reads no more. Those of the arrays stored by dask tasks (values) are read, and
    checked whole, by the task merging them with its rows; here (``strict``: the append
    is not a resume, whose partial chunks may be rewritten already), the crc32c ending
    each is compared with the one its table lists (see
    :func:`~.zarr_identity.check_listed`): a chunk missing, cut short, or not the one
    listed is refused, and one whose bytes are damaged in their middle, by the task.
    """
    reads: list[tuple[_Rows, ArrayRef, tuple[slice, ...]]] = []
    listed: list[tuple[str, dict[str, Any], int]] = []
    for rows in plan.rows:
        region = _head_region(rows.document, rows.offset)
        if region is None or rows.head is not None or rows.data.size == 0:
            continue
        if not is_dask_collection(rows.data):
            ref = _stored_ref(store, rows.path, rows.document, rows.offset, plan.store_id, strict)
            reads.append((rows, ref, region))
        elif (
            strict
            and plan.store_id is not None
            and has_table(rows.path, rows.document, plan.version)
        ):
            index = (rows.offset - 1) // chunk_rows(rows.document)
            listed.append((rows.path, rows.document, index))
    plain = [(ref, region) for _, ref, region in reads if is_plain(ref.document)]
    found = iter(read_plain_regions(plain))
    for rows, ref, region in reads:
        rows.head = next(found) if is_plain(ref.document) else ref.read(region)
    check_listed(store, where, listed)


def _identity(existing: tuple[dict[str, Any], dict[str, Any]] | None) -> dict[str, Any]:
    """The format and the id of a store (its root attributes and nodes ``existing``),
    which an append keeps; ``None`` for a new store."""
    ours = existing[0][layout.ATTRIBUTE] if existing is not None else {}
    return {"version": ours.get("format", layout.FORMAT), "store_id": ours.get(STORE_ID)}


class Commit:
    """What an append commits once its rows are stored: the documents it changes and
    the root (a format 4 store's values arrays with their chunk tables, see
    :mod:`.zarr_identity`, read from the chunk files then)."""

    def __init__(self, plan: AppendPlan, root: dict[str, Any]):
        self.nodes = plan.nodes
        self.changed = plan.changed
        self.starts = plan.starts()
        self.root = root
        #: whether the append creates the store (whose id is then what it stored)
        self.new = plan.store_id is None
        self.stored = plan.stored
        self.crcs = plan.crcs

    @cached_property
    def token(self) -> str:
        """What tells this commit from others: a digest of the root's attributes and of
        the documents the plan changes (not the root's metadata: that of every node of
        the store, whose digest would cost every append in proportion to the store).
        These are JSON documents, digested as their JSON text with sorted keys: dask's
        ``tokenize`` walks them object by object, 20 times slower (0.6-0.8 s for the
        7,000 documents of 500 new tiny blocks)."""
        changed = {path: self.nodes[path] for path in self.changed}
        text = json.dumps(
            [self.root["attributes"], changed, self.starts], sort_keys=True, separators=(",", ":")
        )
        return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()

    def documents(self, store: Store) -> dict[str, bytes]:
        """The node documents the plan changes, and the root document, by key."""
        nodes, changed = self.nodes, list(self.changed)
        if self.root["attributes"][layout.ATTRIBUTE]["format"] >= FIRST_FORMAT:
            version = self.root["attributes"][layout.ATTRIBUTE]["format"]
            tables = with_tables(store, describe(store), nodes, self.starts, version, self.crcs)
            nodes = {**nodes, **tables}
            changed += [path for path in tables if path not in self.changed]
            self.root["consolidated_metadata"]["metadata"].update(tables)
            ours = self.root["attributes"][layout.ATTRIBUTE]
            if self.new and ours.get("complete"):
                ours[STORE_ID] = content_id(nodes)
        encoded = {path: (nodes[path], layout.encode(nodes[path])) for path in changed}
        found = {f"{path}/zarr.json": raw for path, (_, raw) in encoded.items()}
        found["zarr.json"] = root_cache.encode_root(self.root, self.stored, encoded)
        return found

    def __dask_tokenize__(self) -> Any:
        return ("append-commit", self.token)


def documents(store: Store, plan: AppendPlan, root: dict[str, Any]) -> dict[str, bytes]:
    """The node documents the plan changes, and the root document, by key, once the
    plan is stored (see :class:`Commit`)."""
    return Commit(plan, root).documents(store)


def _store_documents(store: Store, documents: dict[str, bytes | memoryview]) -> None:
    """Store node documents; local files are overwritten in place (see
    :func:`~._file_writes.overwrite`): an append writes again the document of every array
    it extends."""
    root = _local_root(store)
    if root is None or store.read_only:
        set_many(store, documents)
    else:
        write_files(root, documents, overwrite)


def commit(store: Store, found: dict[str, bytes]) -> None:
    """Store the node documents, then the root document (atomically): the appended rows
    are visible from then on."""
    _store_documents(store, {key: value for key, value in found.items() if key != "zarr.json"})
    _replace(store, {"zarr.json": [np.frombuffer(found["zarr.json"], np.uint8)]})


def _finish(
    store: Store,
    metadata: Commit,
    lock: WriteId,
    owner: tuple[int, int] | None,
    *written: Any,
) -> None:
    """The last task: check the lock (of the memory store ``owner`` itself, see
    :func:`check_memory_owner`), commit the metadata, forget the records, unlock."""
    check_memory_owner(store, owner)
    lock.check()
    commit(store, metadata.documents(store))
    delete_prefix(store, layout.PROGRESS_PREFIX)
    lock.release()


def _graph_of(
    store: Store,
    plan: AppendPlan,
    root: dict,
    lock: WriteId,
    recorded: set[str],
    drop_behind: int | None,
    strict: bool,
) -> Delayed:
    """Client-side rows now; the stored chunks of the dask rows not ``recorded``, a few
    small ones a task; the commit (``strict``: see :func:`store_rows`)."""
    # (both import dask.array: not on a worker appending core maps)
    from .. import _graph
    from .._member_checks import member_checks

    metadata = Commit(plan, root)
    token = tokenize(describe(store), metadata.token, sorted(recorded))
    name = f"zarr-append-{token}"
    arrays = []
    for rows in plan.rows:
        if rows.data.size == 0:
            continue  # no chunk holds it
        if is_dask_collection(rows.data):
            arrays.append((rows, _stored_chunks(rows)))
        else:
            store_rows(
                store,
                rows.path,
                rows.document,
                rows.offset,
                rows.data,
                drop_behind,
                plan.store_id,
                strict,
                rows.head,
            )
    places = [(rows, array, _places(rows, array, recorded)) for rows, array in arrays]
    items = [array for _, array, found in places if found and _graph.item_of(array) is not None]
    tasks, renamed = _graph.item_group_tasks(items, "append")
    sources = [array for _, array, _ in places if _graph.item_of(array) is None]
    graph: dict[Any, Any] = {}
    batch: list[tuple[tuple[str, dict[str, Any], int, str], Any, int | None]] = []
    size, limit = 0, _task_batches.limit()
    spots: dict[Any, tuple[str, float]] = {}  # where the first chunk of each task lies
    first = ("", 0.0)

    def flush() -> None:
        nonlocal batch, size
        if batch:
            where, inputs, picks = (list(column) for column in zip(*batch, strict=True))
            arguments = (drop_behind, plan.store_id, strict)
            key = (name, len(graph))
            graph[key] = (_store_task, lock, store, where, inputs, picks, *arguments)
            spots[key] = first
        batch, size = [], 0

    for rows, array, found in places:
        width = chunking.row_bytes(array.shape, array.dtype)
        inputs, picks = _inputs(array, renamed)
        for i, start, count, marker in found:
            if _task_batches.full(len(batch), size, count * width, limit):
                flush()
            if not batch:
                first = _task_batches.place(rows.path, start - rows.offset, array.shape[0])
            batch.append(((rows.path, rows.document, start, marker), inputs[i], picks[i]))
            size += count * width
    flush()
    final = f"zarr-append-commit-{token}"
    # the storing tasks run in the order of the rows, as a whole write's (see
    # `_graph.in_order`): scattered, they held the pieces rechunking shares
    ordered, last = _graph.in_order(name, sorted(graph, key=spots.__getitem__))
    every = {**_graph.flat_tasks(sources), **tasks, **graph, **ordered}
    # committed only once the CRCs of the .mts members read match, as a whole
    # write (those this graph holds: a group's task checks its members itself)
    checks = [key for key in member_checks(rows.data for rows, _ in arrays) if key in every]
    needed = [*graph, *checks, *last]
    every[final] = (_finish, store, metadata, lock, memory_owner(store), *needed)
    # one flat graph, as for whole writes: culling one layer per array is quadratic
    return _graph.flat_delayed(final, every, [])


def _stored_chunks(rows: _Rows) -> Any:
    """The dask rows of ``rows`` in chunks that end where the stored chunks do (an item
    of a group of tiny blocks stays one when they already do)."""
    step = int(rows.document["chunk_grid"]["configuration"]["chunk_shape"][0])
    sizes = _aligned(rows.offset, rows.data.shape[0], step)
    return rows.data.rechunk((sizes, *((n,) for n in rows.data.shape[1:])))


def _places(rows: _Rows, array: Any, recorded: set[str]) -> list[tuple[int, int, int, str]]:
    """The chunks of ``array`` (appended as ``rows``) that are not ``recorded`` as
    stored: their index in ``array``, first row in the store, rows and marker."""
    step = int(rows.document["chunk_grid"]["configuration"]["chunk_shape"][0])
    found, start = [], rows.offset
    for i, count in enumerate(array.chunks[0]):
        marker = layout.progress_marker(rows.path, start // step)
        if marker not in recorded:
            found.append((i, start, count, marker))
        start += count
    return found


def _inputs(array: Any, renamed: dict[Any, Any]) -> tuple[list[Any], list[int | None]]:
    """What a storing task takes for each chunk of ``array``, and what it picks out of
    it (see :func:`~metatensor_dask.io._task_batches.picked`): the result of its
    group, under its key ``renamed`` for the append, for an item of a group of tiny
    blocks."""
    from .. import _graph

    item = _graph.item_of(array)
    if item is None:
        inputs = _graph.chunk_inputs(array)
        return inputs, [None] * len(inputs)
    return [renamed.get(item.group_key, item.group_key)], [item.position]


def recorded_token(raw: bytes) -> str | None:
    """The token of the append recorded in ``raw`` (``None`` for a damaged record)."""
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    token = record.get("token") if isinstance(record, dict) else None
    return token if isinstance(token, str) else None


def interrupted(store: Store, attributes: dict[str, Any]) -> bool:
    """Whether an append to the store whose root attributes are ``attributes`` was
    interrupted: its record is left, and the root does not hold its token (the records
    of an append killed once committed are left too)."""
    (raw,) = get_many(store, [RECORD])
    ours = attributes[layout.ATTRIBUTE]
    return raw is not None and recorded_token(raw) != ours.get(_TOKEN)


def _incomplete(where: str, ours: dict[str, Any]) -> MetatensorDaskError:
    """The refusal to append to a store whose write (a run of ``write_batches`` when
    ``ours``, its root attributes, record one) did not finish."""
    if layout.RUN in ours:
        return MetatensorDaskError(
            f"can not append to {where}: the run of write_batches writing it was "
            "interrupted; finish it first with write_batches(..., resume=True) and the same "
            "arguments, then append; nothing was written"
        )
    return MetatensorDaskError(
        f"can not append to {where}: it holds an incomplete write (interrupted?); finish "
        "it with to_zarr(..., resume=True) and the same tensor and mode, or overwrite it "
        "with mode='w'"
    )


def _other_append(where: str, resume: bool) -> MetatensorDaskError:
    """The refusal of an append (``resume``: of a resume) that is not the interrupted
    append of ``where``."""
    other = "; this is another tensor or renumber" if resume else ""
    return MetatensorDaskError(
        f"an append to {where} was interrupted (the store still reads as before it): "
        f"finish it with resume=True and the same tensor and renumber{other}, or "
        "discard it with metatensor_dask.discard_append(store) to append another"
    )


def refuse_resume(tensor: TensorMap, store: Store, where: str, renumber: Renumber | None) -> bool:
    """Refuse, before it takes the lock over, a resume that :func:`append` would refuse
    under the lock: the store holds an incomplete write, or another append was
    interrupted. The lock taken over and released by the refusal would be lost to the
    writer that holds it (its ``Delayed`` fails, and its record names no command).

    Returns whether this append is stored already while another one is under way (its
    record is there): the lock is then left to that one."""
    existing = read_root(store, where)
    ours = existing[0][layout.ATTRIBUTE] if existing is not None else {}
    if existing is not None and ours.get("complete") is not True:
        raise _incomplete(where, ours)
    (raw,) = get_many(store, [RECORD])
    interrupted = None if raw is None else recorded_token(raw)
    if interrupted is None or ours.get(_TOKEN) == interrupted:
        return False
    token = _token(tensor, renumber)
    if interrupted == token:
        return False
    if token not in _appended(ours):
        raise _other_append(where, True)
    return True


def _appended(ours: dict[str, Any]) -> list[str]:
    """The tokens of the appends stored since the last whole write, by the root
    attributes ``ours`` (a store whose appends were not listed gives its last token)."""
    found = ours.get(layout.APPENDED)
    if isinstance(found, list):
        return [token for token in found if isinstance(token, str)]
    last = ours.get(_TOKEN)
    return [last] if isinstance(last, str) else []


def _written(ours: dict[str, Any]) -> str | None:
    """The token of the write (not an append) that last wrote the store of root
    attributes ``ours``, kept by an append: the store's token unless its appends list
    it (a store whose appends were not listed may give an append's, which no write
    has)."""
    last, listed = ours.get(_TOKEN), ours.get(layout.APPENDED)
    if isinstance(last, str) and not (isinstance(listed, list) and last in listed):
        return last
    kept = ours.get(layout.WRITTEN)
    return kept if isinstance(kept, str) else None


def _nothing_to_do(compute: bool, lock: WriteId) -> Delayed | None:
    """A resume of an append the store holds: the lock released now, or when the
    ``Delayed`` runs."""
    return None if compute else nothing_to_write(lock.release)


def _token(tensor: TensorMap, renumber: Renumber | None) -> str:
    """What identifies an append, for ``resume=True``: the tensor, its gradients in the
    order of their names (metatensor gives those of a map it loads in an order that
    changes from one process to the next), and ``renumber``."""
    from ..tensor import TensorMap

    blocks = tensor.blocks()
    if not all(_names_sorted(block) for block in blocks):
        tensor = TensorMap._trusted(
            tensor.keys, [_in_name_order(block) for block in blocks], tensor.info()
        )
    return tokenize("append", tensor, None if renumber is None else renumber.spec())


def _names_sorted(block: TensorBlock) -> bool:
    """Whether the gradients of ``block``, and theirs, are in the order of their names."""
    names = block.gradients_list()
    return names == sorted(names) and all(_names_sorted(g) for _, g in block.gradients())


def _in_name_order(block: TensorBlock) -> TensorBlock:
    """``block`` with its gradients, and theirs, in the order of their names."""
    from ..block import TensorBlock

    ordered = sorted(block.gradients(), key=lambda item: item[0])
    gradients = {parameter: _in_name_order(gradient) for parameter, gradient in ordered}
    return TensorBlock._trusted(
        block._held_values(),
        block.samples,
        block.components,
        block.properties,
        gradients,
        row_pointer=block.row_pointer,
    )


def append(
    tensor: TensorMap,
    store: Store,
    lock: WriteId,
    chunks: chunking.ChunkRequest,
    renumber: Renumber | None,
    resume: bool,
    compute: bool,
    existing: tuple[dict[str, Any], dict[str, Any]] | None,
    plan_whole: PlanWhole,
    drop_behind: int | None = None,
) -> Delayed | None:
    """:func:`~metatensor_dask.io.zarr_write.to_zarr` with ``append_dim="samples"``,
    once the lock is taken and the root read (``existing``, ``None`` without store);
    ``drop_behind`` as in :func:`store_rows`."""
    where = lock.where
    token = _token(tensor, renumber)
    ours = existing[0][layout.ATTRIBUTE] if existing is not None else {}
    if existing is not None and ours.get("complete") is not True:
        raise _incomplete(where, ours)
    refuse_nodes_of_documents(existing, where)
    appended = _appended(ours)
    (raw,) = get_many(store, [RECORD])
    recorded: set[str] = set()
    if raw is not None:
        interrupted = recorded_token(raw)
        if interrupted is None and not resume:
            raise MetatensorDaskError(
                f"an append to {where} was interrupted and its record '{RECORD}' is damaged "
                "(cut short while it was written): append again with resume=True, which "
                "starts that append over"
            )
        if interrupted is None or ours.get(_TOKEN) == interrupted:
            # cut short: the append stopped before it stored anything a reader sees (its
            # rows beyond the stored shapes are written again); or committed, with its
            # records left (deleted below)
            raw = None
        elif resume and interrupted != token and token in appended:
            # stored by an earlier append (a requeued loop of appends): the interrupted
            # one is left to its own resume
            return _nothing_to_do(compute, lock)
        elif not resume or interrupted != token:
            raise _other_append(where, resume)
        else:
            recorded = set(list_prefix(store, layout.PROGRESS_PREFIX))
    if raw is None:
        # no append to finish: records left are of a committed append killed while it
        # deleted them (its own record first), and name chunks this append stores too
        lock.check(stored=False)
        delete_prefix(store, layout.PROGRESS_PREFIX)
    if raw is None and resume and token in appended:
        return _nothing_to_do(compute, lock)
    if renumber is not None:
        tensor = renumbered(tensor, renumber, existing, where)
    plan = plan_append(tensor, store, where, existing, chunks, plan_whole)
    refuse_read_only_nodes(store, where, [*(rows.path for rows in plan.rows), *plan.changed])
    try:
        _read_heads(store, where, plan, raw is None)
    except DamagedStoreError:
        # chunks changed by a writer that took the lock over: the lost lock is the cause
        lock.check(stored=False)
        raise
    # planning may be long: a writer stalled meanwhile (on another host, past the
    # lock-timeout) may have lost the lock to another one, over whose rows it would
    # store its record, labels and row pointers (its tasks check the lock themselves)
    lock.check(stored=False)
    if raw is None:
        set_many(store, {RECORD: json.dumps({"token": token}).encode()})
    root = plan.root(True)
    root["attributes"][layout.ATTRIBUTE][_TOKEN] = token
    root["attributes"][layout.ATTRIBUTE][layout.APPENDED] = [*appended, token]
    written = _written(ours)
    if written is not None:
        root["attributes"][layout.ATTRIBUTE][layout.WRITTEN] = written
    if layout.RUN in ours:
        # the finished run of write_batches that wrote the store stays recorded: run
        # again with resume=True (a requeued script), it finds itself finished
        root["attributes"][layout.ATTRIBUTE][layout.RUN] = ours[layout.RUN]
    delayed = _graph_of(store, plan, root, lock, recorded, drop_behind, raw is None)
    if compute:
        compute_tasks(delayed)
        return None
    return delayed
