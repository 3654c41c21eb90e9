"""``write_batches``: one store from many batches computed in parallel, resumably.

``function(items[i:i + batch_size])`` runs for every batch on the active scheduler (a
``distributed`` client — a ``LocalCluster``, or SLURM through dask-jobqueue —, else a
pool of threads). Batches are *committed* (appended to the store, see
:mod:`metatensor_dask.io.zarr_append`) one at a time and in item order, through a window
of at most ``window`` batches computed ahead: a batch done before its turn waits in
(worker) memory. Where they run and in which order is the job of :mod:`.ingest_schedule`
(the window), :mod:`.ingest_threads` (threads) and :mod:`.ingest_cluster` (a cluster);
what is done with each batch (planned, stored, committed, by the worker holding it on a
cluster: batches never travel) :mod:`.ingest_batch`'s; the store's lock, creation and
completion :mod:`.ingest_run`'s. The store is the same, byte for byte, whatever the
scheduling.

Every argument, the function and the items (on a cluster: that they can be sent to
the workers) and the store (it can be written, exists only for a resume of the same run,
no other writer holds it, its nodes can be written) are checked before any batch is
computed: a refusal costs no computation, leaves no task on a cluster and writes
nothing.

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
from . import _direct_writes, _page_cache
from .chunks import parse_chunks
from .ingest_run import Run, run_batches
from .ingest_schedule import active_client
from .ingest_submit import check_sendable, shipped

__all__ = ["write_batches"]


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
        rewrites the partial chunk it starts in, so this bounds what is written twice;
        and at most 16 times the rows that batch gives the block (a block it gives no
        rows: the median rows per chunk of the blocks created with rows beside it).
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
        finds another run; an argument is of the wrong type or value. Every refusal but
        a failed batch comes before any batch is computed.
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
    _check_arguments(function, batch_size, window, renumber, run_id, resume, quiet)
    # numpy's ints as Python's: the run record is JSON
    batch_size = int(batch_size)
    window = None if window is None else int(window)
    items = _listed(items)
    if not items:
        raise MetatensorDaskError("`items` is empty: there is nothing to write")
    run = {"run_id": run_id, "batch_size": batch_size, "n_items": len(items), "renumber": renumber}
    request = parse_chunks(chunks)
    drop_behind = _page_cache.budget()
    _direct_writes.setting()  # a wrong value refused here, before the store is touched
    shown = not quiet and bool(config.get("progress"))
    client = active_client()
    function_bytes = None
    if client is not None:
        function_bytes = shipped(function)
        check_sendable(items, batch_size, 0, None)
    spec = Run(function, items, run, request, window, shown, drop_behind)
    run_batches(spec, store, storage_options, bool(resume), client, function_bytes)


def _check_arguments(
    function: Any,
    batch_size: Any,
    window: Any,
    renumber: Any,
    run_id: Any,
    resume: Any,
    quiet: Any,
) -> None:
    """Refuse an argument of ``write_batches`` of the wrong type or value, naming it."""
    if not callable(function):
        raise MetatensorDaskError(
            "`function` must be callable (a function of a list of items returning a "
            f"TensorMap), got an object of type {type(function).__name__}: pass the "
            "function itself, not its result"
        )
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
    for name, value in (("resume", resume), ("quiet", quiet)):
        if not isinstance(value, (bool, np.bool_)):
            raise MetatensorDaskError(
                f"`{name}` must be True or False, got {type(value).__name__} {value!r:.60}"
            )


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
