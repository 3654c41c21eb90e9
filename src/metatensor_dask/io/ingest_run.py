"""The store side of :func:`~metatensor_dask.io.ingest.write_batches`: the store locked,
created or checked for the run to resume, the batches run (:mod:`.ingest_threads`, or
:mod:`.ingest_cluster`), and the store marked complete.

Everything that can refuse the store is checked before the first batch is computed: a
refusal leaves the location as it was (the folders created for the lock removed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import DamagedStoreError, MetatensorDaskError
from . import zarr_layout as layout
from ._lock import StoreLock, WriteId
from ._lock import timeout as lock_timeout
from .chunks import ChunkRequest
from .ingest_batch import RUN, Target, store_settings
from .ingest_cluster import on_cluster
from .ingest_progress import BatchProgress
from .ingest_schedule import Batches
from .ingest_threads import on_threads
from .zarr_append import read_root, refuse_foreign
from .zarr_store import (
    delete_prefix,
    describe,
    new_folders,
    open_store,
    refuse_metatensor_file,
    refuse_read_only_nodes,
    remove_if_empty,
    set_many,
)

__all__ = ["Run", "complete", "run_batches"]


@dataclass(frozen=True)
class Run:
    """What ``write_batches`` was asked, checked."""

    function: Callable[[list[Any]], Any]
    items: list[Any]
    #: The run record (``run_id``, ``batch_size``, ``n_items``, ``renumber``).
    record: dict[str, Any]
    request: ChunkRequest
    window: int | None
    shown: bool
    drop_behind: int | None

    @property
    def total(self) -> int:
        """The number of batches."""
        return -(-len(self.items) // self.record["batch_size"])


def _check_run(stored: dict[str, Any] | None, run: dict[str, Any], where: str) -> int:
    """Batches committed by the interrupted run recorded in ``stored``, which must be
    this run once it has committed a batch (before, nothing depends on its arguments: a
    run whose first batch was refused resumes with corrected ones)."""
    if stored is None:
        raise MetatensorDaskError(
            f"{where} was not written by write_batches: there is no run to resume; write to "
            "another store"
        )
    committed = int(stored.get("committed", 0))
    if committed == 0:
        return 0
    for name in ("run_id", "batch_size", "n_items", "renumber"):
        if stored.get(name) != run[name]:
            raise MetatensorDaskError(
                f"can not resume the run that wrote {where}: its {name} was "
                f"{stored.get(name)!r}, here it is {run[name]!r}; resume with the same items, "
                "batch_size, renumber and run_id, or write to another store"
            )
    return committed


def run_batches(
    spec: Run,
    store: Any,
    storage_options: dict[str, Any] | None,
    resume: bool,
    client: Any,
    function: bytes | None,
) -> None:
    """Run ``spec`` into ``store``, locked for the run: on the workers of ``client``
    (``function``: the user's function pickled), else on threads. A refusal (the store
    exists, another writer holds it, a setting is wrong, a node can not be written)
    comes before any batch is computed and leaves the location as it was."""
    refuse_metatensor_file(store)
    settings = store_settings()
    limit = lock_timeout()
    folders = new_folders(store)
    try:
        resolved = open_store(store, storage_options, writable=True)
        lock = StoreLock(resolved, describe(resolved), limit, "write_batches")
        lock.acquire(takeover=resume)
        try:
            _run(spec, resolved, lock.ref, resume, settings, client, function)
        finally:
            lock.release()
    except BaseException:
        remove_if_empty(folders)  # only those left empty: a store written stays
        raise


def _prepare(spec: Run, store: Any, where: str, resume: bool) -> int | None:
    """The batches committed by the run to resume in ``store``, ``None`` when it is
    complete; a new run's store created. Refuses a store that exists (unless
    ``resume``), of another run, or holding a node that can not be written."""
    run = spec.record
    existing = read_root(store, where)
    if existing is None:
        refuse_foreign(store, where)
        # with its (empty) nodes inline: the node documents of a first batch killed
        # before its root was written are then not taken for stored blocks
        root = layout.root_document(False, {}, {})
        root["attributes"][layout.ATTRIBUTE][RUN] = {**run, "committed": 0}
        set_many(store, {"zarr.json": layout.encode(root)}, atomic=True)
        return 0
    ours = existing[0][layout.ATTRIBUTE]
    if not resume:
        ours_run = ours.get(RUN) is not None
        origin = "" if ours_run else ", not written by write_batches"
        remedy = (
            "pass resume=True to continue the run that wrote it, or write to another store"
            if ours_run
            else "write to another store (or delete it)"
        )
        raise MetatensorDaskError(
            f"a store already exists at {where}{origin}: write_batches creates a new "
            f"store; {remedy}"
        )
    committed = _check_run(ours.get(RUN), run, where)
    if ours.get("complete") is True:
        return None
    # the batches left may append to any block
    refuse_read_only_nodes(store, where, ["", *existing[1]])
    return committed


def _run(
    spec: Run,
    store: Any,
    lock: WriteId,
    resume: bool,
    settings: dict[str, Any],
    client: Any,
    function: bytes | None,
) -> None:
    where = lock.where
    committed = _prepare(spec, store, where, resume)
    if committed is None:
        return
    run = spec.record
    progress = BatchProgress(spec.total, spec.shown)
    batches = Batches(spec.function, spec.items, run["batch_size"], committed, spec.window)
    target = Target(store, lock, spec.request, run, spec.drop_behind, settings)
    try:
        if client is None or function is None:
            on_threads(batches, target, progress)
        else:
            on_cluster(client, batches, target, progress, function)
    finally:
        batches.cancel()
        progress.close()
    lock.check()
    complete(store, where, run, spec.total)


def complete(store: Any, where: str, run: dict[str, Any], total: int) -> None:
    """Mark the store of a run whose ``total`` batches were all seen committed complete,
    once its root records them all: a root that records fewer was written over by an
    older commit (one of a worker thought lost, which ran on), and its rows would be
    lost without a word. Then the store stays incomplete, for ``resume=True``."""
    attributes, nodes = read_root(store, where) or ({}, {})
    recorded = (attributes.get(layout.ATTRIBUTE) or {}).get(RUN) or {}
    committed = int(recorded.get("committed", 0))
    if committed != total:
        raise DamagedStoreError(
            f"{where} is left incomplete: write_batches saw its {total} batches committed, "
            f"but the store's root document records {committed} (a commit of another "
            "process, or of a worker thought lost, wrote an older root over it); run "
            "write_batches again with resume=True to write the batches from there"
        )
    root = layout.root_document(True, attributes.get("info") or {}, nodes)
    root["attributes"][layout.ATTRIBUTE][RUN] = {**run, "committed": total}
    set_many(store, {"zarr.json": layout.encode(root)}, atomic=True)
    # the crc32c of the compressed partial chunks its batches rewrote, noted for
    # readers of the run's store until then (see zarr_identity.rewritten_key)
    delete_prefix(store, layout.PROGRESS_PREFIX)
