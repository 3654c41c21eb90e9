"""``write_batches``: one store from many batches computed in parallel, resumably.

``function(items[i:i + batch_size])`` runs for every batch on the active scheduler (a
``distributed`` client — a ``LocalCluster``, or SLURM through dask-jobqueue —, else a
pool of threads). Batches are *committed* (appended to the store, see
:mod:`metatensor_dask.io.zarr_append`) one at a time and in item order, through a window
of at most ``window`` batches computed ahead: a batch done before its turn waits in
(worker) memory. On a cluster, the commit of a batch runs on the worker that holds it,
so batches never travel through the client; there is no staging copy. The store is
therefore the same, byte for byte, whatever the scheduling.

The run is recorded in the root document (``metatensor_dask.batches``: run id, batch
size, number of items, renumbered dimension, batches committed), written atomically
with each batch's metadata, so that a killed run resumes after its last committed batch.
The store stays incomplete (readers refuse it) until the last batch is committed.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dask

from .. import config
from .._typing import ChunksLike, StoreLike
from ..errors import MetatensorDaskError
from ..tensor import TensorMap
from . import zarr_layout as layout
from ._lock import StoreLock, WriteId
from ._lock import timeout as lock_timeout
from .chunks import ChunkRequest, parse_chunks
from .zarr_append import commit, documents, plan_append, store_now
from .zarr_renumber import shifted
from .zarr_store import describe, open_store, set_many
from .zarr_write import _plan_whole, _read_root

__all__ = ["write_batches"]

#: Root attribute (under ``metatensor_dask``) recording the run.
RUN = "batches"


def _as_tensor(result: Any, index: int, first: Any) -> TensorMap:
    if isinstance(result, TensorMap):
        return result
    try:
        import metatensor
    except ImportError:
        metatensor = None
    if metatensor is not None and isinstance(result, metatensor.TensorMap):
        from .convert import from_metatensor

        return from_metatensor(result)
    raise MetatensorDaskError(
        f"the function returned a {type(result).__name__} for batch {index} (first item "
        f"{first!r}); it must return a metatensor or metatensor-dask TensorMap"
    )


def _commit_batch(
    store: Any,
    lock: WriteId,
    chunks: ChunkRequest,
    run: dict[str, Any],
    index: int,
    first: Any,
    result: Any,
) -> int:
    """Append batch ``index`` (its samples renumbered by the index of its first item)
    and commit its metadata with the run record, in one atomic root write. Returns the
    rows appended."""
    tensor = _as_tensor(result, index, first)
    start = index * run["batch_size"]
    if run["renumber"] is not None:
        tensor = shifted(tensor, run["renumber"], start)
    where = lock.where
    plan = plan_append(tensor, store, where, _read_root(store, where), chunks, _plan_whole)
    lock.check()
    store_now(store, plan)
    root = layout.root_document(False, plan.info, plan.nodes)
    root["attributes"][layout.ATTRIBUTE][RUN] = {**run, "committed": index + 1}
    commit(store, documents(plan, root))
    return sum(len(block.samples) for block in tensor.blocks())


def _call(function: Callable[[list[Any]], Any], batch: list[Any]) -> Any:
    return function(batch)


def _client() -> Any:
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


class _Progress:
    """One line on standard error per committed batch (at most one a second), as the
    command line's progress; off with the ``progress`` setting or ``quiet``."""

    def __init__(self, total: int, quiet: bool):
        self.total = total
        self.show = not quiet and bool(config.get("progress"))
        self.last = 0.0
        self.start = time.monotonic()

    def update(self, computed: int, committed: int) -> None:
        now = time.monotonic()
        if self.show and (committed == self.total or now - self.last >= 1.0):
            self.last = now
            print(
                f"write_batches: {computed}/{self.total} batches computed, {committed}/"
                f"{self.total} committed ({now - self.start:.1f} s)",
                file=sys.stderr,
                flush=True,
            )


def _check_run(stored: dict[str, Any] | None, run: dict[str, Any], where: str) -> int:
    """Batches committed by the interrupted run recorded in ``stored``, which must be
    this run."""
    if stored is None:
        raise MetatensorDaskError(
            f"{where} was not written by write_batches: there is no run to resume; write to "
            "another store"
        )
    for name in ("run_id", "batch_size", "n_items", "renumber"):
        if stored.get(name) != run[name]:
            raise MetatensorDaskError(
                f"can not resume the run that wrote {where}: its {name} was "
                f"{stored.get(name)!r}, here it is {run[name]!r}; resume with the same items, "
                "batch_size, renumber and run_id, or write to another store"
            )
    return int(stored.get("committed", 0))


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
        or metatensor-dask ``TensorMap``. It runs on the active scheduler: the workers
        of a ``distributed`` client when one is active, else threads.
    items
        The items (a sequence: its length and order define the batches).
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
        ``run_id`` differ. A finished run is left as it is.
    run_id
        A name of the run, recorded and checked by ``resume``.
    chunks
        Chunks of the store (as :func:`~metatensor_dask.to_zarr`), chosen from the
        first batch.
    window
        At most this many batches computed and not yet committed (default: twice the
        number of workers or threads); bounds the memory whatever the number of
        batches.
    quiet
        No progress lines.
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
    appearance, samples in item order. See ``docs/ingestion.md``.
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise MetatensorDaskError(f"`batch_size` must be a positive int, got {batch_size!r}")
    if renumber is not None and not isinstance(renumber, str):
        raise MetatensorDaskError(
            f"`renumber` must be a sample dimension name or None, got {renumber!r}"
        )
    items = list(items)
    if not items:
        raise MetatensorDaskError("`items` is empty: there is nothing to write")
    total = -(-len(items) // batch_size)
    run = {"run_id": run_id, "batch_size": batch_size, "n_items": len(items), "renumber": renumber}
    request = parse_chunks(chunks)
    resolved = open_store(store, storage_options, writable=True)
    lock = StoreLock(resolved, describe(resolved), lock_timeout())
    lock.acquire(takeover=resume)
    try:
        _run(function, items, resolved, lock.ref, request, run, total, resume, window, quiet)
    finally:
        lock.release()


def _run(
    function: Callable[[list[Any]], Any],
    items: list[Any],
    store: Any,
    lock: WriteId,
    request: ChunkRequest,
    run: dict[str, Any],
    total: int,
    resume: bool,
    window: int | None,
    quiet: bool,
) -> None:
    where = lock.where
    existing = _read_root(store, where)
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
        ours = {"format": layout.FORMAT, "complete": False, RUN: {**run, "committed": 0}}
        root = layout.group_document({layout.ATTRIBUTE: ours, "info": {}})
        set_many(store, {"zarr.json": layout.encode(root)}, atomic=True)
    client = _client()
    size = run["batch_size"]
    progress = _Progress(total, quiet)
    if client is not None:
        workers = max(len(client.scheduler_info().get("workers", {})), 1)
        pool = None
    else:
        workers = int(dask.config.get("num_workers", None) or os.cpu_count() or 1)
        pool = ThreadPoolExecutor(workers)
    limit = window if window is not None else 2 * workers
    pending: dict[int, Any] = {}
    submitted = committed
    try:
        for index in range(committed, total):
            while submitted < total and submitted < index + max(limit, 1):
                batch = items[submitted * size : (submitted + 1) * size]
                submit = pool.submit if pool is not None else _pure_false(client)
                pending[submitted] = submit(_call, function, batch)
                submitted += 1
            future = pending.pop(index)
            first = items[index * size]
            try:
                if pool is not None:
                    _commit_batch(store, lock, request, run, index, first, future.result())
                else:
                    client.submit(
                        _commit_batch,
                        store,
                        lock,
                        request,
                        run,
                        index,
                        first,
                        future,
                        pure=False,
                    ).result()
            except Exception as error:
                raise MetatensorDaskError(
                    f"batch {index} (items {index * size} to "
                    f"{min((index + 1) * size, len(items)) - 1}, first item {first!r}) failed: "
                    f"{type(error).__name__}: {error}; the {index} batches before it are "
                    f"committed to {where}: fix the problem and call write_batches(..., "
                    "resume=True) to continue after them"
                ) from error
            del future
            done = sum(1 for f in pending.values() if f.done())
            progress.update(index + 1 + done, index + 1)
    finally:
        for future in pending.values():
            future.cancel()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    lock.check()
    attributes, nodes = _read_root(store, where) or ({}, {})
    root = layout.root_document(True, attributes.get("info") or {}, nodes)
    root["attributes"][layout.ATTRIBUTE][RUN] = {**run, "committed": total}
    set_many(store, {"zarr.json": layout.encode(root)}, atomic=True)


def _pure_false(client: Any) -> Callable[..., Any]:
    def submit(*args: Any) -> Any:
        return client.submit(*args, pure=False)

    return submit
