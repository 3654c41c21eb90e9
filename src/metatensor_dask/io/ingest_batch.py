"""One batch of :func:`~metatensor_dask.io.ingest.write_batches`: planned, stored and
committed.

A batch (the result of the user's function: a metatensor or metatensor-dask
``TensorMap``) is renumbered by the index of its first item and appended after the
batches committed before it (see :mod:`metatensor_dask.io.zarr_append`), in three steps
that a cluster runs as three tasks on the worker holding the batch: its *plan* (where
its rows go, after the plan of the batch before it), which also stores the small arrays
and the partial chunks at both ends of each array; the whole chunks in between, which
no other batch shares (:func:`store_interior`); and the *commit* of its metadata with
the run record, in one atomic root write (:func:`finish_batch`). On threads,
:func:`commit_batch` does all three. A metatensor-core result is stored from its own
memory: wrapped, neither copied nor hashed.
"""

from __future__ import annotations

import sys
import uuid
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.sizeof import sizeof

from .._gc import collector_paused
from ..block import TensorBlock
from ..errors import MetatensorDaskError
from ..tensor import TensorMap
from . import zarr_layout as layout
from ._lock import WriteId
from .chunks import ChunkRequest, default_target
from .zarr_append import AppendPlan, commit, documents, plan_append, store_now, store_rows
from .zarr_codecs import is_plain
from .zarr_renumber import shifted
from .zarr_rows import chunk_parts, write_parts
from .zarr_write import _plan_whole, _read_root

__all__ = ["RUN", "Target", "commit_batch", "finish_batch", "plan_batch", "store_interior"]

#: Root attribute (under ``metatensor_dask``) recording the run.
RUN = "batches"


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


def _block_bytes(block: Any) -> int:
    found = int(getattr(block.values, "nbytes", 0))
    return found + sum(_block_bytes(gradient) for _, gradient in block.gradients())


def _register_sizes() -> None:
    """Tell dask (and distributed's scheduler) the size of metatensor-core results: the
    bytes of their arrays. Taking a batch for a few bytes, the scheduler would move the
    tasks appending it to an idle worker (work stealing), copying the whole batch."""
    import metatensor

    @sizeof.register(metatensor.TensorMap)
    def tensor_bytes(tensor: Any) -> int:
        return sum(_block_bytes(block) for block in tensor.blocks())

    @sizeof.register(metatensor.TensorBlock)
    def block_bytes(block: Any) -> int:
        return _block_bytes(block)


# Registered now when metatensor is imported already: a TensorMap measured before (a
# worker's first results) made dask cache the size of any object for its type, which a
# lazy registration would not replace.
sizeof.register_lazy("metatensor", _register_sizes)
if "metatensor" in sys.modules:
    _register_sizes()


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


def plan_batch(
    target: Target,
    index: int,
    first: Any,
    result: Any,
    previous: dict[str, Any] | None = None,
    parallel: bool = False,
) -> dict[str, Any]:
    """:func:`_plan_batch`, the views it takes of the batch's arrays freed as it ends.

    Each view of an array that metatensor-core does not own from Python (featomic's are
    Rust's) holds a DLPack tensor in a reference cycle, which holds the memory of the
    whole array: only Python's cyclic garbage collector frees it, and its full passes
    come rarely (~0.1 s each on a worker), so committed batches stayed in memory, more
    of them the longer the run. The collector is paused while the task runs and the
    youngest generation, the task's objects, collected when it ends."""
    with collector_paused(young_collected=True):
        return _plan_batch(target, index, first, result, previous, parallel)


def _plan_batch(
    target: Target,
    index: int,
    first: Any,
    result: Any,
    previous: dict[str, Any] | None,
    parallel: bool,
) -> dict[str, Any]:
    """Append batch ``index`` (its samples renumbered by the index of its first item)
    after the batches committed before it, ``previous`` (what this function returned
    for the batch before, ``None`` to read the store). Returns the documents to commit
    (its metadata, with the run record), and with ``parallel`` the whole chunks of its
    arrays left to store (``"interior"``, see :func:`_store_batch`)."""
    store, lock, run = target.store, target.lock, target.run
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
    chunks = _append_chunks(target.chunks, tensor)
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


def store_interior(target: Target, result: Any, planned: dict[str, Any]) -> None:
    """Store the whole chunks :func:`plan_batch` left (on the worker holding the batch),
    the views of the batch's arrays freed as it ends (see :func:`plan_batch`)."""
    with collector_paused(young_collected=True):
        _store_interior(target, result, planned)


def _store_interior(target: Target, result: Any, planned: dict[str, Any]) -> None:
    arrays: dict[str, np.ndarray] = {}
    _as_tensor(result, -1, None, arrays)
    found = list(arrays.values())
    target.lock.check()
    for source, begin, end, path, document, first in planned["interior"]:
        write_parts(target.store, chunk_parts(path, document, found[source][begin:end], first))


def finish_batch(target: Target, planned: dict[str, Any], previous: Any, stored: Any) -> None:
    """Commit the metadata of a batch, once it is stored and the batch before it
    committed (``previous`` and ``stored``, ignored, order it in a task graph)."""
    target.lock.check()
    commit(target.store, planned["documents"])


def commit_batch(target: Target, index: int, first: Any, result: Any) -> None:
    """Append batch ``index`` and commit its metadata with the run record, in one
    atomic root write, from this thread."""
    planned = plan_batch(target, index, first, result)
    commit(target.store, planned["documents"])
