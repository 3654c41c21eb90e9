"""One batch of :func:`~metatensor_dask.io.ingest.write_batches`: planned, stored and
committed.

A batch (the result of the user's function: a metatensor or metatensor-dask
``TensorMap``) is renumbered by the index of its first item and appended after the
batches committed before it (see :mod:`metatensor_dask.io.zarr_append`): planned (where
its rows go, from the root document of the batch before it), stored, and its metadata
committed with the run record in one atomic root write, by one function,
:func:`append_batch`, which a cluster runs as one task on the worker holding the batch.
A metatensor-core result is stored from its own memory, neither copied nor hashed, and
planned without dask arrays (:mod:`.ingest_core`), the blocks it creates too (the first
batch, a new key: :mod:`.zarr_plan`): a worker running batches imports neither
``dask.array`` nor the writer of whole tensors.
"""

from __future__ import annotations

import gc
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from dask.base import is_dask_collection

from .. import config
from .._gc import collector_paused
from ..errors import MetatensorDaskError
from . import zarr_layout as layout
from . import zarr_root_cache as root_cache
from ._lock import WriteId
from ._names import check_gradient_names
from ._repeated_entries import check_unrepeated
from .chunks import ChunkRequest, default_target
from .ingest_core import CoreBlock, CoreTensor, core_view
from .zarr_append import (
    AppendPlan,
    RepeatedSampleError,
    commit,
    documents,
    plan_append,
    store_now,
)
from .zarr_codecs import template
from .zarr_plan import plan_whole, shard_chunks
from .zarr_renumber import Renumbering, shifted
from .zarr_store import get_many

if TYPE_CHECKING:
    from ..block import TensorBlock
    from ..tensor import TensorMap

__all__ = ["RUN", "Target", "append_batch", "store_settings"]

#: Root attribute (under ``metatensor_dask``) recording the run.
RUN = layout.RUN


@dataclass(frozen=True)
class Target:
    """What appending any batch of a run needs besides the batch."""

    #: The store (a zarr store).
    store: Any
    #: The lock held by the run, checked before each write.
    lock: WriteId
    #: The chunks asked for.
    chunks: ChunkRequest
    #: The run record (``run_id``, ``batch_size``, ``n_items``, ``renumber``).
    run: dict[str, Any]
    #: Bytes of the chunk files written by a process left in the page cache (the
    #: newest), ``None`` to leave them all (see :mod:`._page_cache`).
    drop_behind: int | None = None
    #: The settings that shape the store (see :func:`store_settings`), as the caller
    #: had them: applied where each batch is appended, so that the workers of a
    #: cluster, whose own settings may differ, write the store the caller asked for.
    settings: dict[str, Any] = field(default_factory=dict)


#: The ``metatensor_dask`` settings that decide how a store is written.
STORE_SETTINGS = ("chunk-size", "compressor", "checksum", "shard-chunks")


def store_settings() -> dict[str, Any]:
    """The current values of :data:`STORE_SETTINGS`, by name, as
    :func:`~metatensor_dask.config.overridden` takes them; a wrong value is refused,
    naming the setting, before any batch runs."""
    config.chunk_size()
    template(np.dtype(np.float64), 1, shard_chunks() is not None)
    return {name: config.get(name) for name in STORE_SETTINGS}


def _renumbering(dimension: str, start: int) -> Renumbering:
    """The arguments of :func:`~.zarr_renumber.shift` that renumber ``dimension`` of a
    batch whose first item is ``items[start]``, its error worded for ``write_batches``."""
    remedy = (
        f"number '{dimension}' from 0 in each batch, or pass renumber=None if the batches "
        "number it apart already"
    )
    return (dimension, start, " (the index of the batch's first item)", remedy)


def _overlapping(run: dict[str, Any], start: int) -> str:
    """Why batches renumbered by the index of their first item (``start`` for this one)
    repeat a sample, and the remedy: the function numbers the renumbered dimension past
    the items of its batches."""
    dimension = run["renumber"]
    size = min(run["batch_size"], run["n_items"] - start)
    return (
        f"renumber={dimension!r} adds the index of the batch's first item ({start}) to its "
        f"'{dimension}': the function must number '{dimension}' from 0 to {size - 1}, one "
        "per item of the batch, as featomic numbers the systems it computes, or the batches "
        "overlap. Number it so, or pass renumber=None and number it apart in the function "
        "(from the items, when an item makes several)"
    )


def _as_tensor(
    result: Any, index: int, first: Any, renumber: Renumbering | None
) -> TensorMap | CoreTensor:
    """The batch ``result`` renumbered by ``renumber`` (see :func:`_renumbering`): a
    metatensor-core result seen through :func:`.ingest_core.core_view` (neither copied
    nor hashed, no dask), a metatensor-dask one :func:`~.zarr_renumber.shifted`."""
    # each checked only when its module is imported: the result's type is then
    core = sys.modules.get("metatensor")
    if core is not None and isinstance(result, core.TensorMap):
        return core_view(result, renumber)
    ours = sys.modules.get("metatensor_dask.tensor")
    if ours is not None and isinstance(result, ours.TensorMap):
        return result if renumber is None else shifted(result, *renumber)
    raise MetatensorDaskError(
        f"the function returned a {type(result).__name__} for batch {index} (first item "
        f"{first!r}); it must return a metatensor or metatensor-dask TensorMap"
    )


def _computed(plan: AppendPlan) -> None:
    """The dask rows of ``plan`` (a metatensor-dask result) computed here, in one pass:
    their values and gradients may share the computation. The CRCs of the ``.mts``
    members they read (whole or in part) are checked with them."""
    from .._member_checks import checked_compute  # imports dask.array, which this has

    lazy = [rows for rows in plan.rows if is_dask_collection(rows.data)]
    found = checked_compute((rows.data for rows in lazy), scheduler="synchronous")
    for rows, data in zip(lazy, found, strict=True):
        rows.data = data


#: Chunks of at least this many bytes, whatever the batches.
SMALLEST_CHUNK = 4 * 2**20


def _append_chunks(request: ChunkRequest, tensor: TensorMap | CoreTensor) -> ChunkRequest:
    """The chunking of the blocks a batch creates. By default (``chunks=None``), the
    ``chunk-size`` setting, but at most a quarter of the batch's largest array (and at
    least :data:`SMALLEST_CHUNK`): each append rewrites the partial chunk it starts in,
    so that this keeps the bytes written again below a quarter of a batch."""
    if request.kind != "keep":
        return request

    def sizes(block: TensorBlock | CoreBlock) -> list[int]:
        found = [int(block.values.nbytes)]
        for _, gradient in block.gradients():
            found += sizes(gradient)
        return found

    largest = max((n for block in tensor.blocks() for n in sizes(block)), default=0)
    return ChunkRequest("bytes", min(default_target(), max(largest // 4, SMALLEST_CHUNK)))


def append_batch(
    target: Target,
    index: int,
    first: Any,
    result: Any,
    previous: bytes | None = None,
) -> bytes:
    """Append batch ``index`` (its samples renumbered by the index of its first item)
    after the batches committed before it, and commit its metadata with the run record
    in one atomic root write.

    ``previous`` is what this function returned for the batch before (its root
    document), ``None`` to read the store's. Returns the root document committed, from
    which the next batch is planned without reading the store. On a cluster, this is
    the one task appending a batch, run by the worker holding it after the task of the
    batch before: the chain of these tasks commits the batches in order.

    Each view of an array that metatensor-core does not own from Python (featomic's are
    Rust's) holds a DLPack tensor in a reference cycle, which holds the memory of the
    whole array: only Python's cyclic garbage collector frees it, and its full passes
    come rarely (~0.1 s each on a worker), so committed batches stayed in memory, more
    of them the longer the run. The collector is paused while this runs and the
    youngest generation, this function's objects, collected when it ends.

    The two young generations are collected first: the end of the pause moves the
    objects they hold to the oldest generation, which only a full pass looks at, and
    the computation of the batch may have left garbage cycles there (featomic's
    wrappers of the systems it computed, about a thousand objects per batch of 16
    structures), which a worker then kept for tens of batches.
    """
    gc.collect(1)
    with collector_paused(young_collected=True), config.overridden(target.settings):
        raw = _root_before(target, previous)
        existing = _parse_root(raw, target.lock.where)
        if _committed(existing, index, target.lock.where):
            return raw
        found = _plan_batch(target, index, first, result, existing)
        target.lock.check()
        commit(target.store, found)
        return found["zarr.json"]


def _root_before(target: Target, previous: bytes | None) -> bytes:
    """The root document that batch ``index`` is appended to: ``previous``, else the
    store's."""
    if previous is not None:
        return previous
    (raw,) = get_many(target.store, ["zarr.json"])
    if raw is None:
        raise MetatensorDaskError(
            f"{target.lock.where} has no root document: it was deleted while write_batches "
            "ran; write the store again"
        )
    return raw


def _committed(existing: tuple[dict[str, Any], dict[str, Any]], index: int, where: str) -> bool:
    """Whether batch ``index`` is committed already in the root ``existing``.

    It is when its task runs again: the worker holding the result of a commit left
    before the next commit read it (a batch job ending, a node lost), and the chain is
    run again from the store's root, which holds it. Appended again, its rows would be
    stored twice. A root that lacks batches before ``index`` is refused: appended
    there, the batch would take their place."""
    record = existing[0].get(layout.ATTRIBUTE, {}).get(RUN) or {}
    done = int(record.get("committed", 0))
    if done < index:
        raise MetatensorDaskError(
            f"batch {index} can not be committed to {where}: its root document records "
            f"{done} batches committed, not the {index} before it (another process "
            "wrote an older root); call write_batches(..., resume=True) to continue "
            f"after the {done} it records"
        )
    return done > index


def _plan_batch(
    target: Target,
    index: int,
    first: Any,
    result: Any,
    existing: tuple[dict[str, Any], dict[str, Any]],
) -> dict[str, bytes]:
    """Store batch ``index`` after the root ``existing`` (see :func:`append_batch`);
    returns the documents to commit (its metadata, with the run record), by key."""
    store, lock, run = target.store, target.lock, target.run
    start = index * run["batch_size"]
    renumber = None if run["renumber"] is None else _renumbering(run["renumber"], start)
    tensor = _as_tensor(result, index, first, renumber)
    for block in tensor.blocks():
        check_gradient_names(block, zarr=True)
    check_unrepeated(tensor)
    where = lock.where
    chunks = _append_chunks(target.chunks, tensor)
    try:
        # (a CoreTensor has the part of TensorMap's interface that plan_append reads)
        plan = plan_append(tensor, store, where, existing, chunks, plan_whole)  # type: ignore[arg-type]
    except RepeatedSampleError as error:
        if renumber is None:
            raise
        raise MetatensorDaskError(f"{error.problem}. {_overlapping(run, start)}") from None
    if not isinstance(tensor, CoreTensor):
        _computed(plan)
    lock.check(stored=False)
    # the store has no readers until the run ends: partial chunks extended in place
    store_now(store, plan, target.drop_behind, in_place=True)
    root = plan.root(False)
    root["attributes"][layout.ATTRIBUTE][RUN] = {**run, "committed": index + 1}
    return documents(store, plan, root)


def _parse_root(raw: bytes, where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    stored = root_cache.parse_root(raw, where)
    assert stored[1] is not None, "a root written by write_batches holds the nodes"
    return stored
