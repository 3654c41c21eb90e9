"""Giving up an interrupted append: ``discard_append(store)``.

An append that failed (a task raised, the job was killed) and can not be finished (its
tensor can not be computed again, or another one should be appended instead) leaves the
store reading as before it, with its record under ``.progress/``, which refuses every
other append. Until its last step an append only writes what readers do not see (rows
beyond the stored shapes, the partial last chunk with its stored rows unchanged, blocks
of new keys that the root does not list); its last step writes the node documents, then
the root document. So discarding it is:

1. the node documents made again from the root's consolidated copies, where they
   differ (an append killed between its node documents and its root);
2. the blocks of new keys that the root does not list removed;
3. the chunk files of the stored arrays that lie wholly past their shapes (the
   append's new rows) removed;
4. in a format 4 store, the chunk tables (see :mod:`.zarr_identity`) listing the
   partial last chunks as the append left them (their stored rows unchanged, other
   bytes after them), once each is checked to be the one listed or the one the append
   wrote;
5. the records removed, the append's own last: killed at any moment, the discard can be
   run again.

The rows it wrote past the stored ones in the partial last chunk of an array stay in
that chunk file, unread; the next append writes over them. An append that creates the
store, killed before its root was written, is discarded whole: its nodes are removed,
and the location is as before it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .._typing import StoreLike
from ..errors import MetatensorDaskError
from . import zarr_layout as layout
from ._lock import StoreLock
from ._lock import timeout as lock_timeout
from ._zarr_internals import sync
from .zarr_append import RECORD, read_root, recorded_token
from .zarr_identity import (
    FIRST_FORMAT,
    check_partial_chunks,
    chunk_rows,
    has_table,
    with_tables,
)
from .zarr_store import delete_prefix, describe, get_many, list_prefix, open_store, set_many

__all__ = ["chunks_beyond_shapes", "discard_append"]


def discard_append(store: StoreLike, storage_options: dict[str, Any] | None = None) -> bool:
    """Discard the interrupted append of ``store``, which then reads as before it and
    takes other appends.

    The chunk files the append wrote wholly past the stored shapes are removed (no
    reader needs them); the rows it wrote in the partial last chunk of an array stay
    in that chunk file, unread, until the next append writes over them.

    Parameters
    ----------
    store
        A store written by :func:`~metatensor_dask.to_zarr` (a path or any zarr
        ``StoreLike``).
    storage_options
        Options of the fsspec filesystem, for URLs.

    Returns
    -------
    bool
        Whether an append was discarded (``False``: no append was interrupted).

    Raises
    ------
    StoreLockedError
        A live writer holds the store (the lock of a writer that is gone is taken over).
    MetatensorDaskError
        There is no store, or it holds an incomplete write rather than an append
        (``to_zarr(..., resume=True)`` finishes it, ``mode="w"`` overwrites it).
    DamagedStoreError
        The partial last chunk of an array is neither the one listed nor the one the
        append wrote (an older copy put back while the append was interrupted): listed,
        the rows stored since that copy would read as zeros.

    Notes
    -----
    ``to_zarr(..., append_dim="samples", resume=True)`` with the same tensor finishes an
    interrupted append instead. See ``docs/ingestion.md``.
    """
    resolved = open_store(store, storage_options, writable=True)
    where = describe(resolved)
    lock = StoreLock(resolved, where, lock_timeout(), "discard_append")
    lock.acquire(takeover=True)
    try:
        existing = read_root(resolved, where)
        (raw,) = get_many(resolved, [RECORD])
        if existing is None:
            if raw is None:
                raise MetatensorDaskError(f"there is no store at {where}: nothing to discard")
            # the append that creates the store, killed before its root: nothing of it
            # is read, all of it goes
            _remove_first_nodes(resolved)
        else:
            attributes, nodes = existing
            ours = attributes[layout.ATTRIBUTE]
            if ours.get("complete") is not True:
                raise MetatensorDaskError(
                    f"{where} holds an incomplete write, not an interrupted append: finish "
                    "it with to_zarr(..., resume=True) and the same tensor (write_batches("
                    "..., resume=True) for a run of batches), or overwrite it with mode='w'"
                )
            if raw is None:
                return False
            token = recorded_token(raw)
            if token is None or token != ours.get("token"):
                _restore_nodes(resolved, nodes)
                _remove_new_blocks(resolved, nodes)
                for key in chunks_beyond_shapes(list_prefix(resolved, ""), nodes):
                    sync(resolved.delete(key))
                _list_partial_chunks(resolved, attributes, nodes)
        # the append's own record last: a discard killed before it is run again
        for key in list_prefix(resolved, layout.PROGRESS_PREFIX):
            if key != RECORD:
                sync(resolved.delete(key))
        delete_prefix(resolved, layout.PROGRESS_PREFIX)
        return True
    finally:
        lock.release()


def _remove_first_nodes(store: Any) -> None:
    """Remove the nodes (``keys``, ``blocks``) that the append creating ``store`` wrote
    before it was killed; the location then holds what it held before the append (its
    lock and the append's records aside, which the caller removes)."""
    for name in ("keys", "blocks"):
        sync(store.delete(name))  # a local folder is removed whole
        delete_prefix(store, name + "/")


def _restore_nodes(store: Any, nodes: dict[str, dict[str, Any]]) -> None:
    """Write again the node documents that differ from the root's consolidated copy."""
    paths = sorted(nodes)
    stored = get_many(store, [f"{path}/zarr.json" for path in paths])
    changed: dict[str, bytes | memoryview] = {}
    for path, raw in zip(paths, stored, strict=True):
        try:
            same = raw is not None and json.loads(raw) == nodes[path]
        except ValueError:
            same = False
        if not same:
            changed[f"{path}/zarr.json"] = layout.encode(nodes[path])
    if changed:
        set_many(store, changed)


def _remove_new_blocks(store: Any, nodes: dict[str, dict[str, Any]]) -> None:
    """Remove the blocks after the stored ones (new keys of the discarded append, which
    the root does not list): they come one after the other."""
    index = sum(1 for path in nodes if re.fullmatch(r"blocks/[0-9]+", path))
    while list_prefix(store, f"blocks/{index}/"):
        delete_prefix(store, f"blocks/{index}/")
        index += 1


def _list_partial_chunks(
    store: Any, attributes: dict[str, Any], nodes: dict[str, dict[str, Any]]
) -> None:
    """In a format 4 store, list in the chunk tables the partial last chunk of each
    array with a table (values; sample Labels and row pointers since format 5) as it is
    stored: the discarded append may have replaced it, keeping
    its stored rows (readers accept it while the append's record is there; so is it
    checked here first, see :func:`~.zarr_identity.check_partial_chunks`)."""
    version = attributes[layout.ATTRIBUTE].get("format", layout.FORMAT)
    if version < FIRST_FORMAT:
        return
    starts = {}
    for path, document in nodes.items():
        if document.get("node_type") == "array" and has_table(path, document, version):
            rows = int(document["shape"][0])
            if rows and rows % chunk_rows(document):
                starts[path] = rows - 1  # the partial last chunk (its shard)
    tables = with_tables(store, describe(store), nodes, starts, version)
    changed = {path: table for path, table in tables.items() if table != nodes[path]}
    if not changed:
        return
    check_partial_chunks(store, describe(store), nodes, changed)
    set_many(store, {f"{path}/zarr.json": layout.encode(doc) for path, doc in changed.items()})
    root = layout.group_document(attributes)
    root["consolidated_metadata"] = {
        "kind": "inline",
        "must_understand": False,
        "metadata": dict(sorted({**nodes, **changed}.items())),
    }
    set_many(store, {"zarr.json": layout.encode(root)}, atomic=True)


def chunks_beyond_shapes(keys: list[str], nodes: dict[str, Any]) -> list[str]:
    """The chunk (or shard) files among ``keys`` that lie wholly past the shape of
    their array (one of ``nodes``, node path: document): zarr never reads them, and no
    array of that shape needs them."""
    counts = {
        path: found for path, document in nodes.items() if (found := _grid(document)) is not None
    }
    beyond = []
    for key in keys:
        path, _, name = key.rpartition("/")
        while path and path not in counts:
            path, _, head = path.rpartition("/")
            name = f"{head}/{name}"
        if not path:
            continue
        indices = _chunk_indices(nodes[path], name)
        grid = counts[path]
        if indices is not None and len(indices) == len(grid):
            if any(index >= count for index, count in zip(indices, grid, strict=True)):
                beyond.append(key)
    return beyond


def _grid(document: Any) -> list[int] | None:
    """The number of chunks (shards) along each axis of an array ``document`` with a
    regular grid; None for another node or grid, or a document that does not give one
    (an edited document: not ours to read here)."""
    if not isinstance(document, dict) or document.get("node_type") != "array":
        return None
    grid = document.get("chunk_grid")
    if not isinstance(grid, dict) or grid.get("name") != "regular":
        return None
    configuration = grid.get("configuration")
    if not isinstance(configuration, dict):
        return None
    shape, chunks = document.get("shape"), configuration.get("chunk_shape")
    if not isinstance(shape, list) or not isinstance(chunks, list) or len(shape) != len(chunks):
        return None
    if not all(type(n) is int for n in shape + chunks):
        return None
    return [-(-size // max(chunk, 1)) for size, chunk in zip(shape, chunks, strict=True)]


def _chunk_indices(document: dict[str, Any], name: str) -> list[int] | None:
    """The grid indices of the chunk file ``name`` (its key under its array's path)
    of an array ``document``; None for a file that is not one of its chunks, or a
    document without a valid chunk key encoding."""
    encoding = document.get("chunk_key_encoding", {})
    if not isinstance(encoding, dict):
        return None
    kind = encoding.get("name")
    configuration = encoding.get("configuration", {})
    if not isinstance(configuration, dict):
        return None
    separator = configuration.get("separator", "/" if kind == "default" else ".")
    if separator not in ("/", "."):
        return None
    if kind == "default":
        if not name.startswith("c" + separator):
            return None
        name = name[len(separator) + 1 :]
    elif kind != "v2":
        return None
    parts = name.split(separator)
    if not all(part.isdigit() for part in parts):
        return None
    return [int(part) for part in parts]
