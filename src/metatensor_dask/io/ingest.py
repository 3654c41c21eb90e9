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
import threading
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dask
import dask.array as da
import numpy as np

from .. import config
from .._typing import ChunksLike, StoreLike
from ..errors import MetatensorDaskError
from ..block import TensorBlock
from ..tensor import TensorMap
from . import zarr_layout as layout
from ._lock import StoreLock, WriteId
from ._lock import timeout as lock_timeout
from .chunks import ChunkRequest, parse_chunks
from .ingest_progress import BatchProgress
from .zarr_append import AppendPlan, commit, documents, plan_append, store_now
from .zarr_renumber import shifted
from .zarr_store import describe, open_store, set_many
from .zarr_write import _plan_whole, _read_root

__all__ = ["write_batches"]

#: Root attribute (under ``metatensor_dask``) recording the run.
RUN = "batches"


def _from_core(tensor: Any, arrays: dict[str, np.ndarray]) -> TensorMap:
    """A metatensor-dask view of a metatensor-core TensorMap: its values wrapped, not
    copied nor hashed, into single-chunk dask arrays, recorded by name in ``arrays``."""
    from .convert import _labels_from

    def block_from(block: Any) -> TensorBlock:
        values = np.asarray(block.values)
        wrapped = da.from_array(values, chunks=values.shape, name=f"batch-{uuid.uuid4().hex}")
        arrays[wrapped.name] = values
        return TensorBlock._trusted(
            wrapped,
            _labels_from(block.samples),
            [_labels_from(c) for c in block.components],
            _labels_from(block.properties),
            {p: block_from(g) for p, g in block.gradients()},
        )

    found = TensorMap._trusted(_labels_from(tensor.keys), [block_from(b) for b in tensor.blocks()])
    for key, value in tensor.info().items():
        found.set_info(key, value)
    return found


def _as_tensor(result: Any, index: int, first: Any, arrays: dict[str, np.ndarray]) -> TensorMap:
    if isinstance(result, TensorMap):
        return result
    try:
        import metatensor
    except ImportError:
        metatensor = None
    if metatensor is not None and isinstance(result, metatensor.TensorMap):
        return _from_core(result, arrays)
    raise MetatensorDaskError(
        f"the function returned a {type(result).__name__} for batch {index} (first item "
        f"{first!r}); it must return a metatensor or metatensor-dask TensorMap"
    )


def _concrete(plan: AppendPlan, arrays: dict[str, np.ndarray]) -> None:
    """The rows of ``plan`` as numpy arrays: the batch's own arrays as they are, the
    others (lazy results, rechunked new blocks) computed here."""
    for rows in plan.rows:
        if isinstance(rows.data, da.Array):
            found = arrays.get(rows.data.name)
            if found is None:
                (found,) = dask.compute(rows.data, scheduler="synchronous")
            rows.data = found


def _commit_batch(
    store: Any,
    lock: WriteId,
    chunks: ChunkRequest,
    run: dict[str, Any],
    index: int,
    first: Any,
    result: Any,
    previous: Any = None,
) -> int:
    """Append batch ``index`` (its samples renumbered by the index of its first item)
    and commit its metadata with the run record, in one atomic root write. Returns the
    rows appended. ``previous`` (ignored) is the commit of the batch before, so that a
    scheduler runs the commits in order."""
    arrays: dict[str, np.ndarray] = {}
    tensor = _as_tensor(result, index, first, arrays)
    start = index * run["batch_size"]
    if run["renumber"] is not None:
        tensor = shifted(tensor, run["renumber"], start)
    where = lock.where
    plan = plan_append(tensor, store, where, _read_root(store, where), chunks, _plan_whole)
    _concrete(plan, arrays)
    lock.check()
    store_now(store, plan)
    root = layout.root_document(False, plan.info, plan.nodes)
    root["attributes"][layout.ATTRIBUTE][RUN] = {**run, "committed": index + 1}
    commit(store, documents(plan, root))
    return sum(len(block.samples) for block in tensor.blocks())


def _client() -> Any:
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


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
    progress = BatchProgress(total, not quiet and bool(config.get("progress")))
    pool = None if client is not None else ThreadPoolExecutor(_threads(None))
    computed = _Counter(committed)
    inflight: deque[tuple[int, Any, Any]] = deque()
    previous = None  # the commit of the batch before (on a cluster)
    size = run["batch_size"]
    submitted = committed
    try:
        while committed < total:
            limit = window if window is not None else 2 * _threads(client)
            while submitted < total and submitted < committed + max(limit, 1):
                batch = items[submitted * size : (submitted + 1) * size]
                if pool is not None:
                    future = pool.submit(function, batch)
                    done = None
                else:
                    future = client.submit(function, batch, pure=False)
                    # runs where the batch is, after the commit before: no client round trip
                    done = client.submit(
                        _commit_batch, store, lock, request, run, submitted, batch[0], future,
                        previous, pure=False,
                    )  # fmt: skip
                    previous = done
                future.add_done_callback(computed.add)
                inflight.append((submitted, future, done))
                submitted += 1
            index, future, done = inflight.popleft()
            try:
                if done is None:
                    result = _wait(future, progress, computed, committed)
                    _commit_batch(store, lock, request, run, index, items[index * size], result)
                    del result
                else:
                    _wait(done, progress, computed, committed)
            except Exception as error:
                raise MetatensorDaskError(
                    f"batch {index} (items {index * size} to "
                    f"{min((index + 1) * size, len(items)) - 1}, first item "
                    f"{items[index * size]!r}) failed: {type(error).__name__}: {error}; the "
                    f"{index} batches before it are committed to {where}: fix the problem "
                    "and call write_batches(..., resume=True) to continue after them"
                ) from error
            del future, done
            committed += 1
            progress.update(computed.count, committed)
    finally:
        for _, future, done in inflight:
            future.cancel()
            if done is not None:
                done.cancel()
        inflight.clear()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        progress.close()
    lock.check()
    attributes, nodes = _read_root(store, where) or ({}, {})
    root = layout.root_document(True, attributes.get("info") or {}, nodes)
    root["attributes"][layout.ATTRIBUTE][RUN] = {**run, "committed": total}
    set_many(store, {"zarr.json": layout.encode(root)}, atomic=True)


def _threads(client: Any) -> int:
    """Threads computing batches: those of the cluster's workers, else dask's
    ``num_workers`` setting (default: the CPUs)."""
    if client is not None:
        return max(sum(client.nthreads().values()), 1)
    return int(dask.config.get("num_workers", None) or os.cpu_count() or 1)


class _Counter:
    """Batches computed: counted as their futures finish (from any thread)."""

    def __init__(self, start: int):
        self.count = start
        self._lock = threading.Lock()

    def add(self, future: Any) -> None:
        if not future.cancelled():
            with self._lock:
                self.count += 1


def _wait(future: Any, progress: BatchProgress, computed: _Counter, committed: int) -> Any:
    """The result of ``future``, the progress redrawn while waiting."""
    if not progress.show:
        return future.result()
    while True:
        try:
            return future.result(timeout=BatchProgress.REDRAW)
        except TimeoutError:
            if future.done():
                raise  # raised by the batch itself
            progress.update(computed.count, committed)
