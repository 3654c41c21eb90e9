"""Comparisons of the values of many pairs of arrays, in one ``dask.compute``.

``equal`` and ``allclose`` compare every array of two maps. On maps of many tiny
blocks, one task per pair of arrays costs the scheduler far more than the comparison,
so pairs of chunks are compared by a few tasks of up to
:data:`~metatensor_dask.operations._grouping.GROUP_BYTES` of inputs each, whatever the
number of blocks: tasks grow with the bytes and the chunks, not with the arrays. An
array that is an item of a grouped result
(:class:`~metatensor_dask._collection.GroupItem`) is read from its group's result, so
that comparing the lazy result of an operation on tiny blocks adds no task per block.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np

from .. import _graph
from .._collection import GroupItem, materialized
from .._gc import without_collector
from ._grouping import GROUP_BYTES, hash_arguments
from ._manipulation_utils import as_dask

__all__ = ["array_equal", "compare_pairs"]

# a chunk as an argument of a comparison task: (data or reference, item of it or None)
_Source = tuple[Any, int | None]


def array_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``a`` and ``b`` are equal everywhere (NaN differs from itself)."""
    return bool(np.all(a == b))


# the element-wise test of each comparison whose answer is "everywhere": a group of
# same-typed pairs is then tested in one call on all their elements (one numpy call
# per pair of tiny arrays cost more than the comparisons)
_ELEMENTWISE: dict[Callable, Callable] = {array_equal: np.equal, np.allclose: np.isclose}


def _together(elementwise: Callable, kwargs: dict, arrays: list[Any]) -> list[bool] | None:
    """For each pair of consecutive ``arrays``, whether ``elementwise`` holds
    everywhere, from one call on all their elements; None unless every array is a
    numeric numpy array of one dtype and the arrays of each pair have one shape."""
    dtype = arrays[0].dtype if isinstance(arrays[0], np.ndarray) else None
    if dtype is None or dtype.kind not in "biufc":
        return None
    for i in range(0, len(arrays), 2):
        a, b = arrays[i], arrays[i + 1]
        if (
            type(a) is not np.ndarray
            or type(b) is not np.ndarray
            or a.dtype != dtype
            or b.dtype != dtype
            or a.shape != b.shape
        ):
            return None
    firsts = np.concatenate([a.reshape(-1) for a in arrays[0::2]])
    seconds = np.concatenate([b.reshape(-1) for b in arrays[1::2]])
    failed = np.cumsum(~elementwise(firsts, seconds, **kwargs), dtype=np.int64)
    ends = np.cumsum([a.size for a in arrays[0::2]], dtype=np.int64)
    before = np.concatenate([[0], failed])
    starts = np.concatenate([[0], ends[:-1]])
    return (before[ends] == before[starts]).tolist()


@without_collector
def _compare_group(
    func: Callable, kwargs: dict, picks: tuple[int | None, ...], *chunks: Any
) -> list[bool]:
    """``func(a, b, **kwargs)`` for each pair of consecutive chunks (an entry of
    ``picks`` that is not None takes that item of its chunk, a group's result)."""
    arrays = [
        chunk if pick is None else chunk[pick] for chunk, pick in zip(chunks, picks, strict=True)
    ]
    elementwise = _ELEMENTWISE.get(func)
    if elementwise is not None and len(arrays) > 2:
        together = _together(elementwise, kwargs, arrays)
        if together is not None:
            return together
    return [bool(func(arrays[i], arrays[i + 1], **kwargs)) for i in range(0, len(arrays), 2)]


def _concatenated(*lists: list[bool] | None) -> list[bool]:
    # ``None``: the result of a check of a metatensor file's member
    return [value for results in lists if results is not None for value in results]


class _Plan:
    """Pairs of chunks to compare, gathered into tasks of at most ``GROUP_BYTES``."""

    def __init__(self) -> None:
        self.groups: list[list[tuple[_Source, _Source]]] = [[]]
        self.group_bytes = 0
        self.tasks: dict[Any, Any] = {}
        self.arrays: list[da.Array] = []
        # what names the comparisons, hashed at once in :meth:`compute`
        self.names: list[bytes] = []

    def add(self, a: _Source, b: _Source, nbytes: int) -> None:
        if self.groups[-1] and self.group_bytes + nbytes > GROUP_BYTES:
            self.groups.append([])
            self.group_bytes = 0
        self.groups[-1].append((a, b))
        self.group_bytes += nbytes

    def single(self, array: Any) -> tuple[_Source, int] | None:
        """``array`` as an argument of a task and its bytes when it is one chunk (its
        graph recorded), else None. One look at each array: a map of many tiny blocks
        pays this for every values and gradient array."""
        if isinstance(array, GroupItem):
            self.names.append(f"{array.group_key}/{array.position}".encode())
            if array.group_key not in self.tasks:
                self.tasks.update(_graph.layer_tasks(array.layer))
            nbytes = math.prod(array.shape) * array.dtype.itemsize
            return (_graph.ref(array.group_key), array.position), nbytes
        if isinstance(array, da.Array):
            held = _graph.held_chunk(array)
            if held is not None:  # the chunk itself is the argument, no task needed
                self.names.append(array.name.encode())
                return (held, None), held.nbytes
            # math.prod: numpy's reduction costs microseconds per call
            nbytes = array.dtype.itemsize
            for axis in array.chunks:
                if len(axis) != 1:
                    return None
                nbytes *= axis[0]
            self.names.append(array.name.encode())
            self.arrays.append(array)
            return (_graph.chunk_ref(array, *((0,) * array.ndim)), None), nbytes
        data = np.ascontiguousarray(array).tobytes()
        self.names.append(hashlib.blake2b(data, digest_size=16).hexdigest().encode())
        return (array, None), array.nbytes

    def chunked(self, a: da.Array, b: da.Array) -> None:
        """Chunk by chunk, ``b`` aligned on the chunks of ``a``."""
        b = _graph.rechunked(b, a.chunks)
        self.names.append(f"{a.name}|{b.name}".encode())
        self.arrays += [a, b]
        itemsize = a.dtype.itemsize + b.dtype.itemsize
        for index in np.ndindex(*a.numblocks):
            size = itemsize
            for axis, i in enumerate(index):
                size *= a.chunks[axis][i]
            source_a = (_graph.chunk_ref(a, *index), None)
            self.add(source_a, (_graph.chunk_ref(b, *index), None), size)

    def compute(self, func: Callable, kwargs: dict) -> list[bool]:
        """The result of each comparison, in the order they were added."""
        hasher = hashlib.blake2b(b"\0".join(self.names), digest_size=12)
        hash_arguments(hasher, [func, repr(sorted(kwargs.items()))])
        name = f"compare-{hasher.hexdigest()}"
        tasks = _graph.flat_tasks(self.arrays)
        tasks.update(self.tasks)
        refs = []
        for i, group in enumerate(self.groups):
            key = (name, i)
            sources = [source for pair in group for source in pair]
            picks = tuple(pick for _, pick in sources)
            arguments = [argument for argument, _ in sources]
            tasks[key] = _graph.task(key, _compare_group, func, kwargs, picks, *arguments)
            refs.append(_graph.ref(key))
        # the CRC checks of the metatensor file members that the comparisons read
        from .._member_checks import member_checks

        refs += [_graph.ref(key) for key in member_checks(self.arrays) if key in tasks]
        tasks[name] = _graph.task(name, _concatenated, *refs)
        # one flat graph: culling a graph of one layer per array is quadratic in them
        (computed,) = dask.compute(_graph.flat_delayed(name, tasks, []))
        return computed


def compare_pairs(
    func: Callable, pairs: Sequence[tuple[Any, Any]], kwargs: dict[str, Any] | None = None
) -> list[bool]:
    """For each pair of same-shaped arrays, whether ``func(chunk_a, chunk_b, **kwargs)``
    holds for every pair of aligned chunks; everything is computed in one
    ``dask.compute`` call (none when all arrays are numpy).

    An array is a dask or numpy array, or a group item (see
    :class:`~metatensor_dask._collection.GroupItem`), read from its group's result.
    """
    kwargs = dict(kwargs or {})
    results: list[bool] = []
    pending: list[tuple[int, int]] = []  # (position in results, number of chunk pairs)
    plan = _Plan()
    for a, b in pairs:
        if not isinstance(a, (da.Array, GroupItem)) and not isinstance(b, (da.Array, GroupItem)):
            results.append(bool(func(a, b, **kwargs)))
            continue
        single_a, single_b = plan.single(a), plan.single(b)
        if single_a is not None and single_b is not None:
            plan.add(single_a[0], single_b[0], single_a[1] + single_b[1])
            count = 1
        else:
            x, y = as_dask(materialized(a)), as_dask(materialized(b))
            plan.chunked(x, y)
            count = int(np.prod(x.numblocks))
        pending.append((len(results), count))
        results.append(True)
    if not pending:
        return results
    computed = plan.compute(func, kwargs)
    start = 0
    for position, count in pending:
        results[position] = all(computed[start : start + count])
        start += count
    return results
