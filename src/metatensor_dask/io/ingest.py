"""``write_batches``: one store from many batches computed in parallel, resumably.

``function(items[i:i + batch_size])`` runs for every batch on the active scheduler (a
``distributed`` client — a ``LocalCluster``, or SLURM through dask-jobqueue —, else a
pool of threads). Batches are *committed* (appended to the store, see
:mod:`metatensor_dask.io.zarr_append`) one at a time and in item order, through a window
of at most ``window`` batches computed ahead: a batch done before its turn waits in
(worker) memory. On a cluster, each batch is appended by the worker that holds it
(batches never travel, there is no staging copy), in three tasks: its *plan* (where its
rows go, after the plan of the batch before it), which also stores the small arrays and
the partial chunks at both ends of each array; the whole chunks in between, which no
other batch shares, stored in parallel with everything else; and the *commit* of its
metadata, after its chunks and the commit of the batch before it. The scheduler runs
these chains in order without a round trip through this process. On threads, this
process plans, stores and commits each batch in turn. The store is the same, byte for
byte, whatever the scheduling. A metatensor-core result is stored from its own memory:
wrapped, neither copied nor hashed, and each of its bytes encoded and written once
(but the partial chunk each batch starts in, rewritten with its stored rows, see
:mod:`metatensor_dask.io.zarr_append`).

The run is recorded in the root document (``metatensor_dask.batches``: run id, batch
size, number of items, renumbered dimension, batches committed), written atomically
with each batch's metadata, so that a killed run resumes after its last committed batch.
The store stays incomplete (readers refuse it) until the last batch is committed.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
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
from ..block import TensorBlock
from ..errors import MetatensorDaskError
from ..tensor import TensorMap
from . import zarr_layout as layout
from ._lock import StoreLock, WriteId
from ._lock import timeout as lock_timeout
from .chunks import ChunkRequest, default_target, parse_chunks
from .ingest_progress import BatchProgress
from .zarr_append import AppendPlan, commit, documents, plan_append, store_now, store_rows
from .zarr_codecs import is_plain
from .zarr_renumber import shifted
from .zarr_rows import chunk_parts, write_parts
from .zarr_store import describe, open_store, set_many
from .zarr_write import _plan_whole, _read_root

__all__ = ["write_batches"]

#: Root attribute (under ``metatensor_dask``) recording the run.
RUN = "batches"

#: What a commit needs besides its batch: the store, the lock, the chunks, the run.
_Target = tuple[Any, WriteId, ChunkRequest, dict[str, Any]]


def _from_core(tensor: Any, arrays: dict[str, np.ndarray]) -> TensorMap:
    """A metatensor-dask view of a metatensor-core TensorMap: its values wrapped, not
    copied nor hashed, into single-chunk dask arrays, recorded by name in ``arrays``."""
    from .convert import _labels_from

    def block_from(block: Any) -> TensorBlock:
        values = np.asarray(block.values)
        # one chunk holding the array itself (``da.from_array`` would copy it)
        name = f"batch-{uuid.uuid4().hex}"
        chunks = tuple((n,) for n in values.shape)
        wrapped = da.Array({(name, *(0,) * values.ndim): values}, name, chunks, meta=values[:0])
        arrays[name] = values
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


def _concrete(plan: AppendPlan, arrays: dict[str, np.ndarray]) -> list[int | None]:
    """The rows of ``plan`` as numpy arrays: the batch's own arrays as they are, the
    others (lazy results, rechunked new blocks) computed here. Returns, for each rows,
    the position of its batch array in ``arrays`` (``None`` for the others)."""
    names = {name: position for position, name in enumerate(arrays)}
    sources: list[int | None] = []
    for rows in plan.rows:
        source = None
        if isinstance(rows.data, da.Array):
            source = names.get(rows.data.name)
            if source is None:
                (rows.data,) = dask.compute(rows.data, scheduler="synchronous")
            else:
                rows.data = arrays[rows.data.name]
        sources.append(source)
    return sources


#: Rows of a batch array stored by another task: (position of the array in the batch,
#: first row, end row, stored array path, its document, index of its first chunk).
Interior = tuple[int, int, int, str, dict[str, Any], int]


def _store_batch(store: Any, plan: AppendPlan, sources: list[int | None]) -> list[Interior]:
    """Store the rows of ``plan``, but the whole chunks of the batch's own arrays in
    plain arrays, returned: no other batch shares them, so that they can be stored by
    any task, in parallel, while the partial chunks at both ends of each array are
    stored here (the next batch merges its rows into the last one)."""
    interior: list[Interior] = []
    for rows, source in zip(plan.rows, sources, strict=True):
        data, offset = rows.data, rows.offset
        end = offset + int(data.shape[0])
        if source is not None and is_plain(rows.document):
            step = int(rows.document["chunk_grid"]["configuration"]["chunk_shape"][0])
            head = min(-(-offset // step) * step, end)
            tail = max(end // step * step, head)
            if tail > head:
                interior.append(
                    (source, head - offset, tail - offset, rows.path, rows.document, head // step)
                )
                store_rows(store, rows.path, rows.document, offset, data[: head - offset])
                store_rows(store, rows.path, rows.document, tail, data[tail - offset :])
                continue
        store_rows(store, rows.path, rows.document, offset, data)
    return interior


#: Chunks of at least this many bytes, whatever the batches.
SMALLEST_CHUNK = 4 * 2**20


def _append_chunks(request: ChunkRequest, tensor: TensorMap) -> ChunkRequest:
    """The chunking of the blocks a batch creates. By default (``chunks=None``), the
    ``chunk-size`` setting, but at most a quarter of the batch's largest array (and at
    least :data:`SMALLEST_CHUNK`): each append rewrites the partial chunk it starts in,
    so that this keeps the bytes written again below a quarter of a batch."""
    if request.kind != "keep":
        return request

    def sizes(block: TensorBlock) -> list[int]:
        found = [int(block.values.nbytes)]
        for _, gradient in block.gradients():
            found += sizes(gradient)
        return found

    largest = max((n for block in tensor.blocks() for n in sizes(block)), default=0)
    return ChunkRequest("bytes", min(default_target(), max(largest // 4, SMALLEST_CHUNK)))


def _plan_batch(
    store: Any,
    lock: WriteId,
    chunks: ChunkRequest,
    run: dict[str, Any],
    index: int,
    first: Any,
    result: Any,
    previous: dict[str, Any] | None = None,
    parallel: bool = False,
) -> dict[str, Any]:
    """Append batch ``index`` (its samples renumbered by the index of its first item)
    after the batches committed before it, ``previous`` (what this function returned
    for the batch before, ``None`` to read the store). Returns the documents to commit
    (its metadata, with the run record), and with ``parallel`` the whole chunks of its
    arrays left to store (``"interior"``, see :func:`_store_batch`)."""
    arrays: dict[str, np.ndarray] = {}
    tensor = _as_tensor(result, index, first, arrays)
    start = index * run["batch_size"]
    if run["renumber"] is not None:
        tensor = shifted(tensor, run["renumber"], start)
    where = lock.where
    if previous is None:
        existing = _read_root(store, where)
    else:
        existing = _parse_root(previous["documents"]["zarr.json"], where)
    chunks = _append_chunks(chunks, tensor)
    plan = plan_append(tensor, store, where, existing, chunks, _plan_whole)
    sources = _concrete(plan, arrays)
    lock.check()
    if parallel:
        interior = _store_batch(store, plan, sources)
    else:
        interior = []
        store_now(store, plan)
    root = layout.root_document(False, plan.info, plan.nodes)
    root["attributes"][layout.ATTRIBUTE][RUN] = {**run, "committed": index + 1}
    return {"documents": documents(plan, root), "interior": interior}


def _parse_root(raw: bytes, where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    attributes, nodes = layout.parse_root(raw, where)
    assert nodes is not None, "a root written by write_batches holds the nodes"
    return attributes, nodes


def _store_interior(store: Any, lock: WriteId, result: Any, planned: dict[str, Any]) -> None:
    """Store the whole chunks :func:`_plan_batch` left (on the worker holding the batch)."""
    arrays: dict[str, np.ndarray] = {}
    _as_tensor(result, -1, None, arrays)
    found = list(arrays.values())
    lock.check()
    for source, begin, end, path, document, first in planned["interior"]:
        write_parts(store, chunk_parts(path, document, found[source][begin:end], first))


def _finish_batch(
    store: Any, lock: WriteId, planned: dict[str, Any], previous: Any, stored: Any
) -> None:
    """Commit the metadata of a batch, once it is stored and the batch before it
    committed (``previous`` and ``stored``, ignored, order it in a task graph)."""
    lock.check()
    commit(store, planned["documents"])


def _commit_batch(
    store: Any,
    lock: WriteId,
    chunks: ChunkRequest,
    run: dict[str, Any],
    index: int,
    first: Any,
    result: Any,
) -> None:
    """Append batch ``index`` and commit its metadata with the run record, in one
    atomic root write, from this thread."""
    planned = _plan_batch(store, lock, chunks, run, index, first, result)
    commit(store, planned["documents"])


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
    batches = _Batches(function, items, run["batch_size"], committed, window)
    commit_args: _Target = (store, lock, request, run)
    try:
        if client is None:
            _on_threads(batches, commit_args, progress)
        else:
            _on_cluster(client, batches, commit_args, progress)
    finally:
        batches.cancel()
        progress.close()
    lock.check()
    attributes, nodes = _read_root(store, where) or ({}, {})
    root = layout.root_document(True, attributes.get("info") or {}, nodes)
    root["attributes"][layout.ATTRIBUTE][RUN] = {**run, "committed": total}
    set_many(store, {"zarr.json": layout.encode(root)}, atomic=True)


class _Batches:
    """The batches of a run: what is computed, committed, and the failure messages."""

    def __init__(
        self,
        function: Callable[[list[Any]], Any],
        items: list[Any],
        size: int,
        committed: int,
        window: int | None,
    ):
        self.function = function
        self.items = items
        self.size = size
        self.total = -(-len(items) // size)
        self.committed = committed
        self.submitted = committed
        self.window = window
        self.computed = committed
        self.futures: deque[Any] = deque()  # computations not committed, in order
        self.workers: deque[str | None] = deque()  # where each was sent
        self._lock = threading.Lock()

    def batch(self, index: int) -> list[Any]:
        return self.items[index * self.size : (index + 1) * self.size]

    def wanted(self, threads: int) -> bool:
        """Whether another batch may be computed: the window is not full."""
        limit = self.window if self.window is not None else 2 * threads
        return self.submitted < self.total and self.submitted < self.committed + max(limit, 1)

    def started(self, future: Any, worker: str | None = None) -> None:
        """Record the computation of the next batch (sent to ``worker``)."""
        future.add_done_callback(self._done)
        self.futures.append(future)
        self.workers.append(worker)
        self.submitted += 1

    def least_loaded(self, threads: dict[str, int]) -> str | None:
        """The worker (of those with their ``threads``) holding the fewest batches not
        committed per thread, so that each holds its share of the window, whatever
        the number of batches (``None`` without workers)."""
        held = {worker: 0 for worker in threads}
        for worker in self.workers:
            if worker in held:
                held[worker] += 1
        return min(held, key=lambda w: (held[w] / max(threads[w], 1), w), default=None)

    def _done(self, future: Any) -> None:  # called from another thread
        if not future.cancelled():
            with self._lock:
                self.computed += 1

    def finished(self) -> None:
        """The oldest batch is committed: forget it."""
        self.futures.popleft()
        self.workers.popleft()
        self.committed += 1

    def failure(self, index: int, error: Exception, where: str) -> MetatensorDaskError:
        last = min((index + 1) * self.size, len(self.items)) - 1
        return MetatensorDaskError(
            f"batch {index} (items {index * self.size} to {last}, first item "
            f"{self.items[index * self.size]!r}) failed: {type(error).__name__}: {error}; "
            f"the {index} batches before it are committed to {where}: fix the problem and "
            "call write_batches(..., resume=True) to continue after them"
        )

    def cancel(self) -> None:
        """Stop the computations: a pool's are cancelled, a cluster's released (the
        scheduler forgets them; cancelling futures whose dependencies are failing can
        break the client's connection)."""
        for future in self.futures:
            if isinstance(future, concurrent.futures.Future):
                future.cancel()
        self.futures.clear()
        self.workers.clear()


def _on_threads(batches: _Batches, commit_args: _Target, progress: BatchProgress) -> None:
    """Batches computed by a pool of threads, committed in order by this thread."""
    threads = int(dask.config.get("num_workers", None) or os.cpu_count() or 1)
    with ThreadPoolExecutor(threads) as pool:
        try:
            while batches.committed < batches.total:
                while batches.wanted(threads):
                    batches.started(pool.submit(batches.function, batches.batch(batches.submitted)))
                index = batches.committed
                try:
                    result = _wait(batches.futures[0], progress, batches)
                    _commit_batch(*commit_args, index, batches.items[index * batches.size], result)
                except Exception as error:
                    raise batches.failure(index, error, commit_args[1].where) from error
                del result
                batches.finished()
                progress.update(batches.computed, batches.committed)
        finally:
            batches.cancel()


def _on_cluster(
    client: Any, batches: _Batches, commit_args: _Target, progress: BatchProgress
) -> None:
    """Batches computed on the workers of ``client``, each committed by the worker that
    holds it (so that no batch travels), after the commit before it: the scheduler runs
    the commits in order without waiting for this process."""

    commits: deque[Any] = deque()  # submitted, not yet seen done, in order
    try:
        _commit_in_order(client, batches, commit_args, progress, commits)
    finally:
        commits.clear()  # released, see _Batches.cancel


def _commit_in_order(
    client: Any,
    batches: _Batches,
    commit_args: _Target,
    progress: BatchProgress,
    commits: deque[Any],
) -> None:
    from distributed import wait

    previous = planned = None
    workers: dict[str, int] = {}  # their threads, read again after each commit: they come and go
    while batches.committed < batches.total:
        workers = workers or client.nthreads()
        while batches.wanted(max(sum(workers.values()), 1)):
            index = batches.submitted
            # each worker computes its share of the window: its memory holds at most
            # that many batches, however long the run
            worker = batches.least_loaded(workers)
            pin = {"workers": [worker], "allow_other_workers": True} if worker else {}
            batches.started(
                client.submit(batches.function, batches.batch(index), pure=False, **pin), worker
            )
        # the next commits whose batch is computed, pinned to the worker holding it
        while len(commits) < len(batches.futures) and batches.futures[len(commits)].done():
            index = batches.committed + len(commits)
            future = batches.futures[len(commits)]
            if previous is None:
                # every worker imports this module (a second or more: dask.array, zarr...)
                # now, while computing its next batch, rather than each when its first
                # commit reaches it (its window of batches computed, its thread idle)
                client.run(_imported, wait=False)
            holders = list(client.who_has([future]).get(future.key, ()))
            # (none when the batch failed: its tasks fail at once, wherever they run)
            pin = {"workers": holders, "allow_other_workers": True} if holders else {}
            # before the computations queued on the worker: a commit frees a batch
            pin["priority"] = 1
            planned = client.submit(
                _plan_batch, *commit_args, index, batches.items[index * batches.size], future,
                planned, True, pure=False, **pin,
            )  # fmt: skip
            stored = client.submit(
                _store_interior, commit_args[0], commit_args[1], future, planned,
                pure=False, **pin,
            )  # fmt: skip
            previous = client.submit(
                _finish_batch, commit_args[0], commit_args[1], planned, previous, stored,
                pure=False, priority=1,
            )  # fmt: skip
            commits.append(previous)
            del future  # released once committed: the batches.futures entry is the last
        if commits and commits[0].done():
            index = batches.committed
            try:
                commits.popleft().result()
            except Exception as error:
                raise batches.failure(index, error, commit_args[1].where) from error
            batches.finished()
            progress.update(batches.computed, batches.committed)
            workers = {}
            continue
        pending = [commits[0]] if commits else []
        if len(commits) < len(batches.futures):
            pending.append(batches.futures[len(commits)])
        # a timeout, or a future that failed or was cancelled (distributed raises for
        # those): the loop looks at each future again, in order, and raises for the first
        with contextlib.suppress(Exception):
            wait(pending, timeout=BatchProgress.REDRAW, return_when="FIRST_COMPLETED")
        progress.update(batches.computed, batches.committed)


async def _imported() -> None:
    """Nothing: a worker imports this module to unpickle it, in its event loop (an
    import from another thread could race with the loop's own imports)."""


def _wait(future: Any, progress: BatchProgress, batches: _Batches) -> Any:
    """The result of ``future``, the progress redrawn while waiting."""
    if not progress.show:
        return future.result()
    while True:
        try:
            return future.result(timeout=BatchProgress.REDRAW)
        except TimeoutError:
            if future.done():
                raise  # raised by the batch itself
            progress.update(batches.computed, batches.committed)
