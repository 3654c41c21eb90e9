"""``write_batches``: one store from many batches computed in parallel, resumably.

``function(items[i:i + batch_size])`` runs for every batch on the active scheduler (a
``distributed`` client — a ``LocalCluster``, or SLURM through dask-jobqueue —, else a
pool of threads). Batches are *committed* (appended to the store, see
:mod:`metatensor_dask.io.zarr_append`) one at a time and in item order, through a window
of at most ``window`` batches computed ahead: a batch done before its turn waits in
(worker) memory. Where they run and in which order is the job of :mod:`.ingest_schedule`
(threads) and :mod:`.ingest_cluster` (a cluster); what is done with each batch (planned,
stored, committed, by the worker holding it on a cluster: batches never travel)
:mod:`.ingest_batch`'s. The store is the same, byte for byte, whatever the scheduling.

The run is recorded in the root document (``metatensor_dask.batches``: run id, batch
size, number of items, renumbered dimension, batches committed), written atomically
with each batch's metadata, so that a killed run resumes after its last committed batch.
The store stays incomplete (readers refuse it) until the last batch is committed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from .. import config
from .._typing import ChunksLike, StoreLike
from ..errors import MetatensorDaskError
from . import _page_cache
from . import zarr_layout as layout
from ._lock import StoreLock, WriteId
from ._lock import timeout as lock_timeout
from .chunks import ChunkRequest, parse_chunks
from .ingest_batch import RUN, Target, store_settings
from .ingest_cluster import check_sendable, on_cluster, shipped
from .ingest_progress import BatchProgress
from .ingest_schedule import Batches, active_client, on_threads
from .zarr_append import read_root, refuse_foreign
from .zarr_store import describe, new_folders, open_store, remove_if_empty, set_many

__all__ = ["write_batches"]


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


def write_batches(
    function: Callable[[list[Any]], Any],
    items: Sequence[Any],
    store: StoreLike,
    batch_size: int = 1,
    renumber: str | None = "system",
    resume: bool = False,
    run_id: str | None = None,
    *,
    chunks: ChunksLike = None,
    window: int | None = None,
    quiet: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> None:
    """Write ``function`` of every batch of ``items`` to one new store, in parallel.

    Parameters
    ----------
    function
        Called with a list of items (``items[i:i + batch_size]``), returns a metatensor
        or metatensor-dask ``TensorMap``. It runs on the scheduler dask would use: the
        workers of a ``distributed`` client when one is active, else threads, or this
        thread, one batch at a time, under ``dask.config.set(scheduler="synchronous")``
        (a ``scheduler`` setting comes first, as in dask).
    items
        The items: a sequence (a list, tuple, range, numpy array...), whose length and
        order define the batches. Iterators (generators, ``map``...) are refused, as
        ``distributed``'s ``Client.map`` refuses them, and so are sets: a resume
        continues by position in the items, which a set may order otherwise in
        another process. Pass ``list(items)``. A str is refused too (an item per
        character).
    store
        Where to write (a path or any zarr ``StoreLike``); it must not exist, unless
        ``resume``.
    batch_size
        Items per batch (the last batch may have fewer).
    renumber
        A sample dimension (``"system"`` by default, ``None`` for none) to which the
        index of a batch's first item in ``items`` is added, in the blocks' samples and
        in the gradients' samples (not their ``"sample"`` column): per-batch ids
        (featomic numbers the systems of each call from 0) become indices in ``items``.
    resume
        Continue the interrupted run that wrote ``store``, after its last committed
        batch; refused when ``batch_size``, the number of items, ``renumber`` or
        ``run_id`` differ, once a batch is committed (a run that committed none resumes
        with other arguments). A finished run is left as it is.
    run_id
        A name of the run (a str), recorded and checked by ``resume``.
    chunks
        Chunks of the store (as :func:`~metatensor_dask.to_zarr`), chosen for each
        block from the batch that creates it. By default, the ``chunk-size`` setting,
        but at most a quarter of that batch's largest array (at least 4 MiB): each batch
        rewrites the partial chunk it starts in, so this bounds what is written twice.
    window
        At most this many batches computed and not yet committed (default: twice the
        threads of the workers, or dask's ``num_workers`` threads); bounds the memory
        whatever the number of batches.
    quiet
        Show no progress (batches computed and committed, on standard error: one line
        redrawn in place on a terminal, a line per tenth of the batches otherwise; the
        ``progress`` setting turns it off too).
    storage_options
        Options of the fsspec filesystem, for URLs.

    Raises
    ------
    MetatensorDaskError
        A batch failed (the message names it and its first item; the batches committed
        before it stay, and ``resume=True`` continues), the store exists, or ``resume``
        finds another run.
    StoreLockedError
        Another writer holds the store.

    Notes
    -----
    The result equals metatensor's ``join(batches, axis="samples",
    different_keys="union")`` of the renumbered batches: keys in order of first
    appearance, samples in item order. Chunk files leave the page cache once on disk,
    but for the newest ones, up to the ``drop-behind`` setting per process (256 MiB by
    default). See ``docs/ingestion.md``.
    """
    if not _positive_int(batch_size):
        raise MetatensorDaskError(f"`batch_size` must be a positive int, got {batch_size!r}")
    if window is not None and not _positive_int(window):
        raise MetatensorDaskError(
            f"`window` must be a positive int (batches computed ahead) or None, got {window!r}"
        )
    if renumber is not None and not isinstance(renumber, str):
        raise MetatensorDaskError(
            f"`renumber` must be a sample dimension name or None, got {renumber!r}"
        )
    if run_id is not None and not isinstance(run_id, str):
        raise MetatensorDaskError(f"`run_id` must be a str or None, got {run_id!r}")
    # numpy's ints as Python's: the run record is JSON
    batch_size = int(batch_size)
    window = None if window is None else int(window)
    items = _listed(items)
    if not items:
        raise MetatensorDaskError("`items` is empty: there is nothing to write")
    total = -(-len(items) // batch_size)
    run = {"run_id": run_id, "batch_size": batch_size, "n_items": len(items), "renumber": renumber}
    request = parse_chunks(chunks)
    drop_behind = _page_cache.budget()
    settings = store_settings()
    limit = lock_timeout()
    shown = not quiet and bool(config.get("progress"))
    client = active_client()
    # the client and the function as its workers get it (None: computed here)
    cluster = (client, shipped(function)) if client is not None else None
    if client is not None:  # the first batch's items, before anything is written
        check_sendable(items, batch_size, 0, None)
    folders = new_folders(store)
    resolved = open_store(store, storage_options, writable=True)
    lock = StoreLock(resolved, describe(resolved), limit, "write_batches")
    try:
        lock.acquire(takeover=resume)
    except BaseException:
        remove_if_empty(folders)  # a refusal leaves the location as it was
        raise
    try:
        _run(
            function,
            cluster,
            items,
            resolved,
            lock.ref,
            request,
            run,
            total,
            resume,
            window,
            shown,
            drop_behind,
            settings,
        )
    finally:
        lock.release()


def _listed(items: Iterable[Any]) -> list[Any]:
    """``items`` as a list, refused when their order is not the same each time they are
    given (an iterator is consumed, a set is ordered by hashes that differ between
    processes), and as a str or bytes (one item, a file name, given alone)."""
    if isinstance(items, (str, bytes)):
        raise MetatensorDaskError(
            f"`items` is a {type(items).__name__} ({items[:60]!r}), which would make an "
            "item of each character: pass a list of items, [items] for one"
        )
    if isinstance(items, (Iterator, set, frozenset)) or not isinstance(items, Iterable):
        raise MetatensorDaskError(
            "`items` must be a sequence (a list, tuple, range or array), got an object of "
            f"type {type(items).__name__}: its length and order define the batches, and "
            "resume=True continues by position in it; pass list(items) (sorted, if their "
            "order may differ from one run to the next)"
        )
    return list(items)


def _positive_int(value: Any) -> bool:
    """Whether ``value`` is an int (Python's or numpy's, not a bool) above 0."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and bool(value > 0)


def _run(
    function: Callable[[list[Any]], Any],
    cluster: tuple[Any, bytes] | None,
    items: list[Any],
    store: Any,
    lock: WriteId,
    request: ChunkRequest,
    run: dict[str, Any],
    total: int,
    resume: bool,
    window: int | None,
    shown: bool,
    drop_behind: int | None,
    settings: dict[str, Any],
) -> None:
    where = lock.where
    existing = read_root(store, where)
    committed = 0
    if existing is not None:
        ours = existing[0][layout.ATTRIBUTE]
        if not resume:
            raise MetatensorDaskError(
                f"a store already exists at {where}: write_batches creates a new store; pass "
                "resume=True to continue the run that wrote it, or write to another store"
            )
        committed = _check_run(ours.get(RUN), run, where)
        if ours.get("complete") is True:
            return
    else:
        refuse_foreign(store, where)
        # with its (empty) nodes inline: the node documents of a first batch killed
        # before its root was written are then not taken for stored blocks
        root = layout.root_document(False, {}, {})
        root["attributes"][layout.ATTRIBUTE][RUN] = {**run, "committed": 0}
        set_many(store, {"zarr.json": layout.encode(root)}, atomic=True)
    progress = BatchProgress(total, shown)
    batches = Batches(function, items, run["batch_size"], committed, window)
    target = Target(store, lock, request, run, drop_behind, settings)
    try:
        if cluster is None:
            on_threads(batches, target, progress)
        else:
            on_cluster(cluster[0], batches, target, progress, cluster[1])
    finally:
        batches.cancel()
        progress.close()
    lock.check()
    attributes, nodes = read_root(store, where) or ({}, {})
    root = layout.root_document(True, attributes.get("info") or {}, nodes)
    root["attributes"][layout.ATTRIBUTE][RUN] = {**run, "committed": total}
    set_many(store, {"zarr.json": layout.encode(root)}, atomic=True)
