"""``to_zarr(mode="a")`` of stored keys with new gradients: the values kept are the tensor's.

Mode ``"a"`` writes the new gradients of a stored block beside its stored arrays, which
it keeps: the block's values and those of its stored gradients. A gradient is the
derivative of the values it is stored with: gradients of other values stored beside
them would be read later as wrong numbers, without an error; and a tensor whose stored
gradients differ from the store's would be written as another tensor, also without an
error. So, before anything is written, every values array that the write keeps is
compared with the tensor's, value for value (NaN equal to NaN), and a difference
refuses the write.

Values read from this very store as it is now are not compared (nothing would be
learned, and the usual ``open_zarr`` -> add gradients -> ``to_zarr(mode="a")`` stays
lazy): a dask array named as :func:`~metatensor_dask.io.zarr_read.read_array` names a
read of this store's current metadata (the name digests the root document, which holds
the chunk tables and store id of format 4), or an item of a group of tiny blocks named
as :func:`~metatensor_dask.io.zarr_tiny.group_items` names a group of the same arrays
read now (the same digest). Stores without an id (format 3) are always compared. Other
values are computed, a stored chunk at a time on the active scheduler, with the stored
ones read beside them, also with ``compute=False``.

An array whose chunks record no checksum table (format 3, or the ``checksum`` setting
off) reads whatever its chunks hold: a tensor opened before a rewrite of the store
reads the rewritten values without an error, and would compare equal. So values whose
tasks read such an array under another name than a read made now (of an older state of
the store) are refused: whether the store's values changed since can not be told.
"""

from __future__ import annotations

import math
from itertools import accumulate
from typing import TYPE_CHECKING, Any

import dask
import dask.array as da
import numpy as np

from .. import _graph
from ..errors import MetatensorDaskError
from . import chunks as chunking
from . import zarr_layout as layout
from .zarr_identity import STORE_ID, TABLE
from .zarr_read import metadata_digest, read_array, stored_array
from .zarr_store import ArrayRef, describe, get_many, read_nodes, same_store
from .zarr_tiny import group_items, group_source

if TYPE_CHECKING:
    from zarr.abc.store import Store

    from ..labels import Labels

__all__ = ["check_kept_values", "kept_arrays"]


def kept_arrays(data: list[str], stored: dict[str, Any]) -> list[str]:
    """The values arrays among ``data`` (those of the tensor, by node path) that the
    store holds already (``stored``: its nodes), which a write of new gradients keeps."""
    return [path for path in data if path in stored]


def check_kept_values(
    data: dict[str, da.Array],
    paths: list[str],
    store: Store,
    where: str,
    keys: Labels,
) -> None:
    """Refuse the write when the tensor's values ``data[path]`` differ from the stored
    values at one of ``paths`` (see the module); ``keys`` are the stored keys, to name
    the block."""
    if not paths:
        return
    (raw,) = get_many(store, ["zarr.json"])
    attributes, nodes = layout.parse_root(raw, where)
    consolidated = nodes is not None
    if nodes is None:
        nodes = read_nodes(store)
    metadata = metadata_digest(raw, None if consolidated else nodes)
    store_id = attributes[layout.ATTRIBUTE].get(STORE_ID)
    infos = dict(zip(paths, layout.array_infos(nodes, paths, where), strict=True))
    changed = {
        path: info
        for path, info in infos.items()
        if not _read_unchanged(data[path], store, info, metadata, store_id)
    }
    untabled = {
        p: info for p, info in changed.items() if TABLE not in (nodes[p].get("attributes") or {})
    }
    stale = _read_before([data[p] for p in untabled], store, untabled, metadata)
    for path in untabled:
        if path in stale:
            raise _read_since(path, where, keys)
    _compare(data, changed, store, metadata, where, keys)


def _compare(
    data: dict[str, da.Array],
    infos: dict[str, layout.ArrayInfo],
    store: Store,
    metadata: str,
    where: str,
    keys: Labels,
) -> None:
    """Compare ``data[path]`` with the stored array ``infos[path]`` for every path of
    ``infos``, in one computation; refuse the first that differs."""
    compared: list[tuple[str, tuple[int, ...], da.Array]] = []
    for path, info in infos.items():
        values = data[path]
        rows = _common_rows(values.chunks[0], chunking.regular(info.shape[0], info.chunk_rows))
        stored = read_array(store, info, rows, metadata)
        compared.append((path, rows, _first_differences(values.rechunk({0: rows}), stored)))
    found = dask.compute(*(first for _, _, first in compared))
    for (path, rows, _), firsts in zip(compared, found, strict=True):
        starts = np.cumsum((0, *rows[:-1]))
        different = [start + row for start, row in zip(starts, firsts, strict=True) if row >= 0]
        if different:
            raise _differs(path, different[0], where, keys)


def _read_unchanged(
    values: da.Array,
    store: Store,
    info: layout.ArrayInfo,
    metadata: str,
    store_id: str | None,
) -> bool:
    """Whether ``values`` reads the array ``info`` of ``store`` as it is now: a dask
    array named as a read made now, or an item of a group named as a group of the same
    arrays read now (both names digest the store's metadata)."""
    if store_id is None:
        return False
    item = _graph.item_of(values)
    if item is None:
        return values.name == read_array(store, info, values.chunks[0], metadata).name
    arguments = item.call[2]
    ref = arguments[0] if arguments else None
    if not isinstance(ref, ArrayRef) or ref.path != info.path:
        return False
    (task,) = _graph.layer_tasks(item.layer).values()
    group, _ = _read_of(task)
    return _group_named_now(item.group_key, group, metadata, store)


def _group_named_now(name: str, group: Any, metadata: str, store: Store) -> bool:
    """Whether the task ``name`` reading ``group`` (its first argument) is named as a
    group of the same arrays read now from ``store`` (``metadata``: the store's,
    digested), through whichever path the group reads it."""
    source = group_source(group)
    if source is None or not same_store(source[0], store):
        return False
    now = group_items(source[0], metadata, describe(source[0]), list(group.infos))
    return name in {item.group_key for item in now}


def _read_before(
    arrays: list[da.Array],
    store: Store,
    infos: dict[str, layout.ArrayInfo],
    metadata: str,
) -> set[str]:
    """The paths of ``infos`` (arrays of ``store``) that the tasks of ``arrays`` read as
    they were before the store's metadata became what ``metadata`` digests: a read's
    name digests the metadata it was opened with (see
    :func:`~.zarr_read.stored_array` and :func:`~.zarr_tiny.group_items`), so a read
    named otherwise than a read made now is one of an older state of the store."""
    reads: dict[tuple[str, str], list[slice]] = {}
    read_from: dict[str, Store] = {}
    found: set[str] = set()
    if not infos:
        return found
    here: dict[int, bool] = {}
    for key, task in _graph.flat_tasks(arrays).items():
        argument, region = _read_of(task)
        name = key[0] if isinstance(key, tuple) else key
        if isinstance(argument, ArrayRef):
            if argument.path not in infos or name.startswith("open_zarr-item-"):
                continue
            if not (isinstance(region, tuple) and region and isinstance(region[0], slice)):
                continue  # not a read of a region: compared as any other values
            if here.setdefault(id(argument.store), same_store(argument.store, store)):
                reads.setdefault((argument.path, name), []).append(region[0])
                read_from[name] = argument.store
        elif (source := group_source(argument)) is not None:
            if not here.setdefault(id(source[0]), same_store(source[0], store)):
                continue  # another store's arrays: compared as any other values
            paths = [member.path for member in argument.infos if member.path in infos]
            if paths and not _group_named_now(name, argument, metadata, store):
                found.update(paths)
    for (path, name), regions in reads.items():
        rows = tuple(r.stop - r.start for r in sorted(regions, key=lambda r: r.start))
        if stored_array(read_from[name], infos[path], rows, metadata).name != name:
            found.add(path)
    return found


def _read_of(task: Any) -> tuple[Any, Any]:
    """The first argument of ``task`` and its second (a region for a read)."""
    if type(task) is tuple:
        arguments = task[1:]
    else:  # a task of dask's task spec
        arguments = getattr(task, "args", ())
    return (
        arguments[0] if arguments else None,
        arguments[1] if len(arguments) > 1 else None,
    )


def _common_rows(mine: tuple[int, ...], stored: tuple[int, ...]) -> tuple[int, ...]:
    """Row chunks cut at every boundary of ``mine`` and of ``stored`` (chunks of the same
    rows): each piece is in one chunk of each, so that the comparison holds a stored
    chunk at a time, whatever the size of the tensor's chunks."""
    ends = sorted(set(accumulate(mine)) | set(accumulate(stored)))
    rows = tuple(end - start for start, end in zip([0, *ends[:-1]], ends, strict=True))
    return tuple(n for n in rows if n) or mine


def _first_differences(values: da.Array, stored: da.Array) -> da.Array:
    """Per chunk of rows, the first row (counted in the chunk) where ``values`` and
    ``stored`` differ, or -1."""
    whole = {axis: -1 for axis in range(1, values.ndim)}
    return da.map_blocks(
        _first_difference,
        values.rechunk(whole),
        stored.rechunk(whole),
        drop_axis=list(range(1, values.ndim)),
        chunks=((1,) * len(values.chunks[0]),),
        dtype=np.int64,
        meta=np.empty((0,), np.int64),
    )


def _first_difference(values: np.ndarray, stored: np.ndarray) -> np.ndarray:
    same = _same(values, stored)
    rows = np.flatnonzero(~same.reshape(len(same), math.prod(same.shape[1:])).all(axis=1))
    return np.array([rows[0] if len(rows) else -1], np.int64)


def _same(values: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """Where ``values`` and ``stored`` hold the same number: equal, or both NaN; a
    complex number, part by part (``nan+1j`` is not ``nan+2j``)."""
    if np.iscomplexobj(values):
        return _same(values.real, stored.real) & _same(values.imag, stored.imag)
    return (values == stored) | (np.isnan(values) & np.isnan(stored))


def _named(path: str, keys: Labels) -> tuple[str, tuple[int, ...]]:
    """What the values array at ``path`` holds, and the key of its block."""
    parts = path.split("/")
    key = tuple(int(v) for v in keys.values[int(parts[1])])
    gradients = [parts[i + 1] for i in range(2, len(parts) - 1, 2) if parts[i] == "gradients"]
    what = "values" if not gradients else f"values of the gradient '{'/'.join(gradients)}'"
    return what, key


def _read_since(path: str, where: str, keys: Labels) -> MetatensorDaskError:
    what, key = _named(path, keys)
    return MetatensorDaskError(
        f"mode='a' keeps the stored {what} of the block {key} in {where}, but this "
        f"tensor's {what} read the store as it was before it was written again, and its "
        "chunks record no checksum table (a store of format 3, or written with the "
        "checksum setting off) that would tell whether that write changed them, so "
        "whether its new gradients belong to the stored values can not be checked. Open "
        "the store again and add the gradients to the blocks it gives, or write the whole "
        "tensor with mode='w'"
    )


def _differs(path: str, row: int, where: str, keys: Labels) -> MetatensorDaskError:
    what, key = _named(path, keys)
    return MetatensorDaskError(
        f"mode='a' keeps the stored {what} of the block {key} in {where} and adds this "
        f"tensor's new gradients beside them, but this tensor's {what} differ from them "
        f"(first at row {row}): the store would not hold this tensor, nor gradients of its "
        "values. Add gradients of the stored values (open the store with open_zarr and "
        "build the blocks from its values and gradients), or write the whole tensor with "
        "mode='w'"
    )
