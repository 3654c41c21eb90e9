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
the chunk tables and store id of format 4), or an item of a group of tiny blocks whose
read is of the same array document in the store of the same id. Stores without an id
(format 3) are always compared: a rewrite of their values with ``mode="r+"`` leaves
their metadata as it was. Other values are computed, chunk by chunk on the active
scheduler, with the stored ones read beside them, also with ``compute=False``.
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
from .zarr_identity import STORE_ID
from .zarr_read import metadata_digest, read_array
from .zarr_store import ArrayRef, describe, get_many, read_nodes

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
    compared: list[tuple[str, tuple[int, ...], da.Array]] = []
    for path, info in zip(paths, layout.array_infos(nodes, paths, where), strict=True):
        values = data[path]
        if not _read_unchanged(values, store, info, metadata, where, store_id):
            rows = _common_rows(values.chunks[0], chunking.regular(info.shape[0], info.chunk_rows))
            stored = read_array(store, info, rows, metadata)
            first = _first_differences(values.rechunk({0: rows}), stored)
            compared.append((path, rows, first))
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
    where: str,
    store_id: str | None,
) -> bool:
    """Whether ``values`` reads the array ``info`` of ``store`` as it is now."""
    if store_id is None:
        return False
    item = _graph.item_of(values)
    if item is None:
        return values.name == read_array(store, info, values.chunks[0], metadata).name
    arguments = item.call[2]
    ref = arguments[0] if arguments else None
    return (
        isinstance(ref, ArrayRef)
        and ref.path == info.path
        and ref.store_id == store_id
        and ref.document == info.document
        and describe(ref.store) == where
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


def _differs(path: str, row: int, where: str, keys: Labels) -> MetatensorDaskError:
    parts = path.split("/")
    key = tuple(int(v) for v in keys.values[int(parts[1])])
    gradients = [parts[i + 1] for i in range(2, len(parts) - 1, 2) if parts[i] == "gradients"]
    what = "values" if not gradients else f"values of the gradient '{'/'.join(gradients)}'"
    return MetatensorDaskError(
        f"mode='a' keeps the stored {what} of the block {key} in {where} and adds this "
        f"tensor's new gradients beside them, but this tensor's {what} differ from them "
        f"(first at row {row}): the store would not hold this tensor, nor gradients of its "
        "values. Add gradients of the stored values (open the store with open_zarr and "
        "build the blocks from its values and gradients), or write the whole tensor with "
        "mode='w'"
    )
