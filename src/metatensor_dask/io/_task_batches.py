"""How many small chunks one storing task of a write (or an append) stores together,
and how it takes each (a chunk, or an item of a group's result).

A map of many tiny blocks has thousands of arrays of one small chunk each; a task per
chunk would cost the scheduler more than the writes themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import chunks as chunking

__all__ = ["BATCH_TASKS", "full", "limit", "picked", "place"]

#: Small chunks are stored together by one task, up to this many and this many bytes
#: (or the chunk-size setting, if smaller).
BATCH_TASKS = 256
_BATCH_TASK_BYTES = 2**20


def limit() -> int:
    """The bytes of chunks that one storing task stores at most (unless one is larger)."""
    return min(_BATCH_TASK_BYTES, chunking.default_target())


def full(count: int, size: int, adding: int, most: int) -> bool:
    """Whether a batch of ``count`` chunks of ``size`` bytes is full before adding one
    of ``adding`` bytes, with at most ``most`` bytes (see :func:`limit`) a batch."""
    return count > 0 and (size + adding > most or count >= BATCH_TASKS)


def picked(inputs: Sequence[Any], picks: Sequence[int | None]) -> list[Any]:
    """Each of ``inputs`` (a chunk), or for an entry of ``picks`` that is not ``None``
    the item at that position of the input (a group's result, see
    :func:`~metatensor_dask._graph.item_group_tasks`)."""
    pairs = zip(inputs, picks, strict=True)
    return [chunk if pick is None else chunk[pick] for chunk, pick in pairs]


def place(path: str, start: int, rows: int) -> tuple[str, float]:
    """Where row ``start`` of the ``rows`` rows written to the array at ``path`` lies:
    the block of the array, and how far into those rows. A block's values and gradients
    at the same place come from the same input chunks (an operation keeps a gradient's
    rows with the samples they belong to), so that storing tasks sorted by place (see
    :func:`~metatensor_dask._graph.in_order`) store them side by side."""
    block = "/".join(path.split("/")[:2])
    return block, start / rows
