"""One task for many tiny blocks.

On a map of many tiny blocks, dask's bookkeeping for one task (and one dask array) per
block and gradient costs far more than the arithmetic: 1,000 blocks of a few KiB take
tens of microseconds each to build into graphs, and as much to schedule. Inside
:func:`grouped_tiny_blocks`, the chunk-wise functions of
:mod:`~metatensor_dask.operations._chunkwise` record each call whose inputs are all
single small chunks instead of building a task; :meth:`TinyGroups.finish` then makes
one task per group of calls (returning the tuple of their results) and gives each
result as a :class:`~metatensor_dask._collection.GroupItem`. Computing a map fetches the
few group keys; the dask array of an item is made only when asked for.

Large or chunked arrays never go through here: they keep one task per chunk.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import dask.array as da
import numpy as np

from .. import _graph
from .._collection import GroupItem
from .._gc import collector_paused, without_collector

__all__ = [
    "TinyGroups",
    "active_groups",
    "argument_bytes",
    "chunk_arguments",
    "grouped_tiny_blocks",
    "hash_arguments",
    "picked_arguments",
    "picked_call",
    "run_together",
    "single_chunk_bytes",
    "single_chunk_shape",
    "tiny_groups",
]

# A single-chunk array of at most this many bytes is tiny; a group holds calls on at
# most this many input bytes (several groups keep every core busy on larger maps).
TINY_BYTES = 256 * 1024
GROUP_BYTES = 8 * 1024 * 1024


def argument_bytes(value: Any) -> bytes:
    """What names a constant, index array or function in a task name (a function by
    its qualified name, not its address; an object with a ``digest()`` method, such as
    Labels, by its digest)."""
    if isinstance(value, np.ndarray):
        return value.tobytes()
    digest = getattr(value, "digest", None)
    if callable(digest):
        return str(digest()).encode()
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{value.__module__}.{value.__qualname__}".encode()
    return repr(value).encode()


def hash_arguments(hasher: Any, arguments: Sequence[Any]) -> None:
    """Feed constants, index arrays and functions to ``hasher`` (for deterministic task
    names, see :func:`argument_bytes`)."""
    for value in arguments:
        hasher.update(argument_bytes(value))


class _Pending:
    """The result of a recorded call, until :meth:`TinyGroups.finish`."""

    __slots__ = ("dtype", "group", "position", "shape")

    def __init__(self, group: int, position: int, shape: tuple[int, ...], dtype: np.dtype):
        self.group, self.position, self.shape, self.dtype = group, position, shape, dtype


class _Group:
    """Calls recorded for one task, as parallel lists (not a tuple per call: maps of
    many blocks keep fewer objects), and their inputs one after the other."""

    __slots__ = ("bytes", "extras", "funcs", "inputs", "names", "prefixes", "starts")

    def __init__(self) -> None:
        self.prefixes: list[str] = []
        self.funcs: list[Callable] = []
        self.extras: list[tuple] = []
        self.starts: list[int] = []
        self.inputs: list[da.Array] = []
        self.bytes = 0
        # what names the group's task (functions, inputs, arguments), hashed at once
        self.names: list[bytes] = []


_TOGETHER: dict[Callable, Callable[[list[list[Any]]], list[Any]]] = {}
"""Functions whose calls in one group run together (see :func:`run_together`)."""


def run_together(func: Callable, batch: Callable[[list[list[Any]]], list[Any]]) -> None:
    """Have the calls of ``func`` in a group's task run together, as ``batch(arguments)``:
    the arguments of each call in order, their results in the same order (work they
    share, such as reading files, is then done once)."""
    _TOGETHER[func] = batch


@without_collector
def _run_group(calls: list[tuple[Callable, tuple, tuple]], *chunks: Any) -> tuple[Any, ...]:
    """Each call ``(func, picks, extra)`` takes one argument per entry of ``picks`` from
    the next chunks (the chunk itself for ``None``, else that item of it, the result of
    an earlier group), then ``extra``; the results in call order. The calls of
    functions that run together (see :func:`run_together`) run after the others."""
    results: list[Any] = [None] * len(calls)
    together: dict[Callable, list[tuple[int, list[Any]]]] = {}
    start = 0
    for position, (func, picks, extra) in enumerate(calls):
        arguments = [
            chunk if pick is None else chunk[pick]
            for chunk, pick in zip(chunks[start : start + len(picks)], picks, strict=True)
        ]
        start += len(picks)
        if func in _TOGETHER:
            together.setdefault(func, []).append((position, [*arguments, *extra]))
        else:
            results[position] = func(*arguments, *extra)
    for func, pending in together.items():
        found = _TOGETHER[func]([arguments for _, arguments in pending])
        for (position, _), result in zip(pending, found, strict=True):
            results[position] = result
    return tuple(results)


def single_chunk_bytes(arrays: Sequence[Any]) -> int | None:
    """The bytes of ``arrays`` when each is a single-chunk dask array of at most
    :data:`TINY_BYTES`, else None (read from the chunks: ``.shape`` costs more)."""
    total = 0
    for array in arrays:
        if not isinstance(array, da.Array):
            return None
        size = array._meta.dtype.itemsize
        for chunk in array.chunks:
            if len(chunk) != 1:
                return None
            size *= chunk[0]
        if size > TINY_BYTES:
            return None
        total += size
    return total


def single_chunk_shape(array: da.Array) -> tuple[int, ...]:
    """The shape of a single-chunk dask array (read from its chunks, which is faster)."""
    return tuple(int(c[0]) for c in array.chunks)


class TinyGroups:
    """Calls on tiny single-chunk arrays, recorded to run as one task per group."""

    def __init__(self) -> None:
        self.groups: list[_Group] = []

    def record(
        self,
        prefix: str,
        func: Callable,
        arrays: Sequence[da.Array],
        extra: tuple,
        shape: tuple[int, ...],
        dtype: Any,
        nbytes: int | None = None,
    ) -> _Pending:
        """Record ``func(*arrays, *extra)``, whose result has ``shape`` and ``dtype``;
        ``prefix`` names the result's own task; ``nbytes`` are those of ``arrays``
        (found from their chunks when not given)."""
        size = (single_chunk_bytes(arrays) or 0) if nbytes is None else nbytes
        if not self.groups or self.groups[-1].bytes + size > GROUP_BYTES:
            self.groups.append(_Group())
        group = self.groups[-1]
        group.prefixes.append(prefix)
        group.funcs.append(func)
        group.extras.append(extra)
        group.starts.append(len(group.inputs))
        group.inputs.extend(arrays)
        group.bytes += size
        names = group.names
        names.append(f"{func.__module__}.{func.__qualname__}".encode())
        names += [array.name.encode() for array in arrays]
        names += [argument_bytes(value) for value in extra]
        return _Pending(len(self.groups) - 1, len(group.funcs) - 1, shape, np.dtype(dtype))

    def finish(self, arrays: list[Any]) -> list[Any]:
        """``arrays`` with each recorded result replaced by its
        :class:`~metatensor_dask._collection.GroupItem`; the item's own task runs its
        call alone, so computing one array computes one block, not its group."""
        with collector_paused():
            return self._finished(arrays)

    def _finished(self, arrays: list[Any]) -> list[Any]:
        sources = []
        for group in self.groups:
            group_key, layer, calls, refs = _group_source(group)
            own = _OwnCalls(group_key, group.prefixes, calls, group.starts, refs)
            sources.append((group_key, layer, own.call))
        finished = []
        for array in arrays:
            if not isinstance(array, _Pending):
                finished.append(array)
                continue
            group_key, layer, call = sources[array.group]
            item = GroupItem(group_key, layer, array.position, array.shape, array.dtype, call)
            finished.append(item)
        return finished


class _OwnCalls:
    """The task of each item of a group alone (``GroupItem.call``), made when asked for:
    one object per group instead of tuples per item."""

    __slots__ = ("calls", "group_key", "prefixes", "refs", "starts")

    def __init__(
        self,
        group_key: str,
        prefixes: list[str],
        calls: list[tuple[Callable, tuple, tuple]],
        starts: list[int],
        refs: list[Any],
    ):
        self.group_key, self.prefixes, self.calls = group_key, prefixes, calls
        self.starts, self.refs = starts, refs

    def call(self, position: int) -> tuple[str, Callable, tuple]:
        """``(name, func, arguments)`` of the call at ``position``."""
        func, picks, extra = self.calls[position]
        start = self.starts[position]
        arguments = (*self.refs[start : start + len(picks)], *extra)
        return f"{self.prefixes[position]}-{self.group_key}-{position}", func, arguments


def _group_source(group: _Group) -> tuple[str, Any, list[Any], list[Any]]:
    """The group's key, one flat graph with its task and everything its inputs need
    (shared by all its items, so that merging their graphs stays linear), the calls of
    the task ``(func, picks, extra)`` and a reference to each input."""
    hasher = hashlib.blake2b(b"\0".join(group.names), digest_size=12)
    group_key = f"tiny-blocks-{hasher.hexdigest()}"
    layer = _graph.flat_tasks(group.inputs)
    refs = chunk_arguments(group.inputs)
    group_refs, picks = _from_groups(group.inputs, refs)
    ends = [*group.starts[1:], len(group.inputs)]
    calls = [
        (func, tuple(picks[start:end]), extra)
        for func, extra, start, end in zip(
            group.funcs, group.extras, group.starts, ends, strict=True
        )
    ]
    layer[group_key] = _graph.task(group_key, _run_group, calls, *group_refs)
    return group_key, _graph.group_layer(layer), calls, refs


def chunk_arguments(arrays: Sequence[da.Array]) -> list[Any]:
    """For each single-chunk array, what a task takes for its chunk: the numpy array
    when the graph holds it as data (see :func:`metatensor_dask._graph.held_chunk`),
    else a reference."""
    return [_graph.chunk_ref(a, *((0,) * len(a.chunks))) for a in arrays]


def _from_groups(arrays: Sequence[da.Array], refs: list[Any]) -> tuple[list[Any], list[Any]]:
    """``refs`` (the arguments of ``arrays``, see :func:`chunk_arguments`) where the
    arrays of items of a group are read from that group's result instead, and for each
    array the position of its item there (None: the argument is the chunk itself)."""
    items = [_graph.item_of(a) for a in arrays]
    group_refs = [
        _graph.ref(item.group_key) if item is not None else ref
        for ref, item in zip(refs, items, strict=True)
    ]
    return group_refs, [None if item is None else item.position for item in items]


def picked_arguments(arrays: Sequence[da.Array]) -> tuple[list[Any], list[Any]]:
    """For each single-chunk array, what a task takes for it and the item to pick out
    of that (None: nothing to pick): the result of the array's group when it is an item
    of a group (its own task is then not needed), else its chunk (see
    :func:`chunk_arguments`)."""
    return _from_groups(arrays, chunk_arguments(arrays))


def picked_call(func: Callable, picks: tuple[int | None, ...], *arguments: Any) -> Any:
    """``func(*arguments)``, the first ``len(picks)`` arguments each replaced by its
    item at its pick (None: the argument itself; see :func:`picked_arguments`)."""
    count = len(picks)
    picked = [
        argument if pick is None else argument[pick]
        for argument, pick in zip(arguments[:count], picks, strict=True)
    ]
    return func(*picked, *arguments[count:])


_ACTIVE: contextvars.ContextVar[TinyGroups | None] = contextvars.ContextVar(
    "metatensor_dask_tiny_groups", default=None
)


@contextlib.contextmanager
def grouped_tiny_blocks() -> Iterator[TinyGroups]:
    """Within this context, the chunk-wise functions return placeholders for calls on
    tiny single-chunk arrays; ``groups.finish(arrays)`` replaces the placeholders
    among ``arrays`` (which must all be given) by group items. The garbage collector
    is paused (see :func:`metatensor_dask._gc.collector_paused`)."""
    groups = TinyGroups()
    token = _ACTIVE.set(groups)
    try:
        with collector_paused():
            yield groups
    finally:
        _ACTIVE.reset(token)


def active_groups() -> TinyGroups | None:
    """The groups of the enclosing :func:`grouped_tiny_blocks`, or None."""
    return _ACTIVE.get()


def tiny_groups(arrays: Sequence[Any]) -> TinyGroups | None:
    """The active groups when ``arrays`` are all tiny single chunks, else None."""
    groups = _ACTIVE.get()
    if groups is None or single_chunk_bytes(arrays) is None:
        return None
    return groups
