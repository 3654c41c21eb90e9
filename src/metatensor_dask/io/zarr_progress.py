"""Progress records of a write: which chunks are stored, so that a resumed write skips
them.

Each data task of a write stores a batch of chunks (one chunk of each of up to a few
hundred tiny arrays, or one chunk of a large one), then one *record* naming them all
(see :func:`~metatensor_dask.io.zarr_layout.batch_record`): a JSON object
``{"chunks": [marker, ...]}`` where each marker is
:func:`~metatensor_dask.io.zarr_layout.progress_marker` of a stored chunk. A
record is written only once every chunk it names is stored, so a chunk named by a
record is stored. A record cut short by a crash is not valid JSON: it names nothing
and its chunks are written again.

Writes before records existed (and appends, one chunk per task) record each chunk by
an empty object whose key is its marker; both kinds are read back here.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from . import zarr_layout as layout
from .zarr_store import get_many, list_prefix

if TYPE_CHECKING:
    from zarr.abc.store import Store

__all__ = ["recorded_chunks"]


def _named(raw: bytes | None) -> list[str]:
    """The markers a record names: none when it is not a whole record."""
    try:
        record = json.loads(raw) if raw is not None else None
    except ValueError:
        return []
    chunks = record.get("chunks") if isinstance(record, dict) else None
    if not isinstance(chunks, list) or not all(isinstance(c, str) for c in chunks):
        return []
    return chunks


def recorded_chunks(store: Store) -> set[str]:
    """The markers of every chunk recorded as stored by an interrupted write (and the
    keys of the write's other progress objects, such as its plan, which name no chunk)."""
    keys = list_prefix(store, layout.PROGRESS_PREFIX)
    records = [key for key in keys if key.startswith(layout.BATCH_PREFIX)]
    recorded = set(keys) - set(records)
    for raw in get_many(store, records):
        recorded.update(_named(raw))
    return recorded
