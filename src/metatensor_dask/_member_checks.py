"""Which CRC checks of metatensor file members a computation carries.

A values member of a metatensor file read in several chunks
(:func:`metatensor_dask.io._mts_integrity.values_graph`) has, in the graph layer of
its dask array (named ``mts-load-<token>``), a read task per chunk
(``("mts-read-<token>", i)``), a check task (``"mts-check-<token>"``) that combines
the chunks' CRC-32s, and a streamed check (``"mts-check-streamed-<token>"``) that reads
the member's data again in pieces, at most once per member and process (see
:mod:`metatensor_dask.io._mts_integrity`). The checks are no keys of any array: a
computation runs one only when it asks for it: the first when it reads every chunk of
the member, the second when it reads some of them only. A map or block asks for the
checks of its arrays (:func:`member_checks`); the optimisation of maps, blocks and the
arrays of blocks (:func:`metatensor_dask._graph.optimize_flat`) makes a chunk of each
array wait for the checks of the members it reads (:func:`arrays_checked`): a block's
array computed alone is checked, and a map rebuilt from the optimised graph carries
them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import dask
import dask.array as da
from dask._task_spec import DataNode, GraphNode, Task, TaskRef, convert_legacy_task
from dask.core import flatten, keys_in_tasks
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph
from dask.utils import ensure_dict

__all__ = [
    "CHECK",
    "LOAD",
    "READ",
    "STREAMED",
    "arrays_checked",
    "checked_compute",
    "member_checks",
]

LOAD, READ, CHECK = "mts-load-", "mts-read-", "mts-check-"
"""The prefixes of the names of a member's array, its read tasks and its check."""
STREAMED = "mts-check-streamed-"
"""The prefix of the key of a member's streamed check (a check's key too)."""


def member_checks(arrays: Iterable[Any]) -> list[str]:
    """The keys of the CRC checks of the members of several chunks that ``arrays``
    read.

    An array read from a metatensor file by :func:`metatensor_dask.load` reads every
    chunk of its member when computed whole, and so does an array derived from it by
    an operation on whole blocks (``multiply``, a reduction, ``keys_to_*``): their
    checks belong to the computation. A member that the arrays read in part only (a
    slice, one chunk) gets its streamed check, which reads it again (once per process);
    one that they read whole together (each array a part) gets its check. Which chunks
    an array reads is found by walking the tasks that its keys need, once per array
    whatever the number of members it derives from.
    """
    whole: dict[str, None] = {}
    reads: set[Any] = set()
    counts: dict[str, int] = {}
    names: set[str] = set()
    streamed: set[str] = set()
    for array in arrays:
        if not isinstance(array, da.Array):
            continue
        members = _Members(array.__dask_graph__())
        if not members.any():
            continue
        # a flat copy: the graph does not keep it, as its own ``to_dict`` would
        tasks = ensure_dict(members.graph)
        found, _, needed = members.needed(tasks, array.__dask_keys__(), array.name)
        whole.update(dict.fromkeys(found))
        if needed:  # (none for a member computed whole: its layers are not counted)
            reads |= needed
            counts.update(members.counts())
            names |= members.names
            streamed |= members.streamed
    together, part = _classified(reads, counts, names, streamed)
    whole.update(dict.fromkeys(together))
    return [*whole, *(key for key in part if _check_of(key) not in whole)]


def checked_compute(collections: Iterable[Any], **kwargs: Any) -> tuple[Any, ...]:
    """``dask.compute(*collections, **kwargs)``, with the CRC checks of the members that
    the collections read (see :func:`member_checks`): a damaged member raises
    :class:`~metatensor_dask.errors.DamagedFileError` instead of giving its bytes. A
    check shares the read tasks of its member with the arrays, so a member read whole
    is read once."""
    collections = list(collections)
    checks = member_checks(collections)
    if not checks:
        return dask.compute(*collections, **kwargs)
    graph = HighLevelGraph.merge(*(c.dask for c in collections if isinstance(c, da.Array)))
    # each check is a task of its member's layer (see `_check`)
    delayed = [Delayed(key, graph, layer=_layer_of(key)) for key in checks]
    # not optimized: optimizing the arrays apart from the checks renames their reads,
    # which then run twice
    found = dask.compute(*collections, *delayed, optimize_graph=False, **kwargs)
    return found[: len(collections)]


def arrays_checked(graph: Any, keys: Any) -> dict[Any, Any] | None:
    """The tasks of ``graph`` where a chunk of each array among ``keys`` also waits for
    the CRC checks of the members that the array reads (whole: their check; in part:
    their streamed check), and the last key also for those that only the arrays
    together read whole; None when no key waits.

    The optimisation of blocks, maps and the arrays of blocks: a block's array
    computed alone (``block.values.compute()``, ``np.asarray``, ``dask.compute``,
    ``persist``) raises :class:`~metatensor_dask.errors.DamagedFileError` for a
    damaged member instead of giving its bytes, and so does each of several arrays
    persisted together. A graph that dask rebuilds a map from (``dask.optimize``, a
    ``distributed`` client's ``persist``, which keeps the futures of the arrays'
    chunks only) still runs the checks that the map asked for beside its arrays (see
    :func:`member_checks`). Only one chunk of an array waits for the checks, which
    need the CRCs of the chunks, not the chunks (or read the member again in pieces,
    for a streamed check): memory holds no more chunks than without them.
    """
    wanted = [key for key in flatten(keys) if not _is_check(key)]
    return _checked(graph, keys, together=wanted[-1] if wanted else None)


def _is_check(key: Any) -> bool:
    return isinstance(key, str) and key.startswith(CHECK)


def _layer_of(check: str) -> str:
    """The name of the graph layer (the member's array) that holds the check ``check``."""
    token = check[len(STREAMED if check.startswith(STREAMED) else CHECK) :]
    return LOAD + token


def _check_of(streamed: str) -> str:
    """The key of the check of the member whose streamed check is ``streamed``."""
    return CHECK + streamed[len(STREAMED) :]


def _checked(graph: Any, keys: Any, together: Any) -> dict[Any, Any] | None:
    """The tasks of ``graph`` where the last key of each array among ``keys`` (the keys
    of one name; any other key alone) waits for the checks of the members the array
    reads (see :func:`arrays_checked`), and the key ``together`` (None: no key) for
    those that only all ``keys`` together read whole; a member read whole needs no
    streamed check (see :func:`_served`). None when no key waits."""
    members = _Members(graph)
    if not members.any():
        return None
    by_array: dict[str, list[Any]] = {}
    for key in flatten(keys):
        # a chunk by its array's name, any other key (dask's finalize task of an array
        # computed alone, a group of tiny blocks) on its own, but the checks themselves
        if not _is_check(key):
            by_array.setdefault(key[0] if isinstance(key, tuple) else key, []).append(key)
    tasks = ensure_dict(graph)
    waits: dict[Any, set[str]] = {}
    # the read tasks that the arrays need, together: each array's graph is walked once
    read_together: set[Any] = set()
    for name, array_keys in by_array.items():
        whole, part, reads = members.needed(tasks, array_keys, name)
        read_together |= reads
        # a member read in part: its streamed check
        waits.setdefault(array_keys[-1], set()).update(whole, part)
    if together is not None and len(by_array) > 1:
        # only the members that no array reads whole alone: an array persisted with
        # others keeps its numbers when another one's member is damaged; the checks
        # asked for beside the arrays read their members whole too
        read_together |= _reads_needed(tasks, [key for key in flatten(keys) if _is_check(key)])
        alone = set().union(*waits.values())
        whole_together = set(members.classified(read_together)[0]) - alone
        waits.setdefault(together, set()).update(whole_together)
    served = _served(waits)
    # (a key not in the graph is held elsewhere: the future of a persisted chunk)
    waits = {key: checks for key, checks in waits.items() if checks and key in tasks}
    # those asked for beside the arrays (by a map, or dask's finalize task of several)
    asked = [key for key in served if key in tasks]
    if not waits and not asked:
        return None
    tasks = dict(tasks)  # (``ensure_dict`` gives a graph that is a dict itself)
    for key, checks in waits.items():
        _wait_for_checks(tasks, key, sorted(checks))
    for key in asked:  # it passes when the check does
        tasks[key] = Task(key, _first, None, TaskRef(served[key]))
    return tasks


def _served(waits: dict[Any, set[str]]) -> dict[str, str]:
    """The streamed checks of the members that some key among ``waits`` waits for the
    check of (a member read whole, by an array or by all together), each with that
    check, which serves in its place at no second read: they are replaced by it in
    ``waits``."""
    served = {
        STREAMED + check[len(CHECK) :]: check
        for checks in waits.values()
        for check in checks
        if not check.startswith(STREAMED)
    }
    for checks in waits.values():
        for streamed in checks & served.keys():
            checks.discard(streamed)
            checks.add(served[streamed])
    return served


class _Members:
    """The members of several chunks whose arrays are layers of the graph of layers
    ``graph``, by the names of their arrays: those with their check (``names``), and
    with their streamed check (``streamed``)."""

    def __init__(self, graph: Any):
        self.graph = graph
        self.layers = getattr(graph, "layers", {})
        loads = [n for n in self.layers if n.startswith(LOAD)]
        self.names = {n for n in loads if _check(n) in self.layers[n]}
        self.streamed = {n for n in loads if _streamed(n) in self.layers[n]}
        self._reads: dict[str, int] | None = None

    def any(self) -> bool:
        """Whether the graph holds a member of several chunks."""
        return bool(self.names or self.streamed)

    def counts(self) -> dict[str, int]:
        """How many read tasks each member has (see :func:`_read_counts`)."""
        if self._reads is None:
            self._reads = _read_counts(self.layers)
        return self._reads

    def needed(
        self, tasks: dict[Any, Any], keys: Any, name: str | None
    ) -> tuple[list[str], list[str], set[Any]]:
        """The keys of the checks of the members that ``keys`` read whole and of the
        streamed checks of those they read in part (see :meth:`classified`), found in
        the flat graph ``tasks``, and the read tasks that ``keys`` need (none walked for
        a member computed whole, whose own check is the only one it needs); ``name``:
        that of the array whose keys they are, all of them (None: not known)."""
        if name is not None and name in self.names:  # a member computed whole: every chunk read
            return [_check(name)], [], set()
        reads = _reads_needed(tasks, flatten(keys))
        return (*self.classified(reads), reads)

    def classified(self, reads: set[Any]) -> tuple[list[str], list[str]]:
        """The keys of the checks of the members whose every read task is among
        ``reads``, and of the streamed checks of those of which some only are (each
        sorted)."""
        return _classified(reads, self.counts(), self.names, self.streamed)


def _classified(
    reads: set[Any], counts: dict[str, int], names: set[str], streamed: set[str]
) -> tuple[list[str], list[str]]:
    """The keys of the checks of the members whose every read task is among ``reads``,
    and of the streamed checks of those of which some only are (each sorted): members
    whose arrays are among ``names`` (with a check) or ``streamed`` (with a streamed
    check), of ``counts[name]`` read tasks by the name of their reads."""
    whole, part = [], []
    for read, count in _counted(reads).items():
        name = LOAD + read[len(READ) :]
        if count == counts.get(read, 0):
            if name in names:
                whole.append(_check(name))
        elif name in streamed:
            part.append(_streamed(name))
    return sorted(whole), sorted(part)


def _wait_for_checks(tasks: dict[Any, Any], key: Any, checks: list[str]) -> None:
    """Change ``tasks`` so that ``key`` gives its task's result once ``checks`` have
    passed: the task runs inside a task that also takes the checks' results (no task
    more), or (an alias, data) moves to a key of its own. Only that task is converted
    from dask's legacy form (converting the whole graph took half the time of
    :func:`arrays_checked`)."""
    node = convert_legacy_task(key, tasks[key], tasks)
    if not isinstance(node, GraphNode):
        node = DataNode(key, node)
    waits = [TaskRef(check) for check in checks]
    if isinstance(node, Task):
        tasks[key] = Task(key, _first, node, *waits)
        return
    unchecked = (f"{key[0]}-unchecked", *key[1:]) if isinstance(key, tuple) else f"{key}-unchecked"
    tasks[unchecked] = node.substitute({}, key=unchecked)
    tasks[key] = Task(key, _first, TaskRef(unchecked), *waits)


def _first(result: Any, *checked: Any) -> Any:
    """``result``, once the checks it is given (``checked``, their results) have run."""
    return result


def _check(name: str) -> str:
    """The key of the check of the member whose array is ``name``."""
    return CHECK + name[len(LOAD) :]


def _streamed(name: str) -> str:
    """The key of the streamed check of the member whose array is ``name``."""
    return STREAMED + name[len(LOAD) :]


def _read_counts(layers: Any) -> dict[str, int]:
    """How many read tasks of each member the graph ``layers`` hold, by the name of the
    member's read tasks (the layers of the members' arrays hold them)."""
    return _counted(key for name, layer in layers.items() if name.startswith(LOAD) for key in layer)


def _reads_needed(tasks: dict[Any, Any], keys: Iterable[Any]) -> set[Any]:
    """The read tasks of members that the computation of ``keys`` needs, from the flat
    graph ``tasks``: a walk of the tasks it reaches, in time proportional to them
    (culling a graph of layers copies the keys needed once per layer: quadratic for an
    array derived from many members, as ``keys_to_samples`` or ``join`` make)."""
    seen: set[Any] = set()
    stack = list(keys)
    while stack:
        key = stack.pop()
        if key in seen or key not in tasks:
            continue
        seen.add(key)
        stack += keys_in_tasks(tasks, [tasks[key]], as_list=True)
    return {key for key in seen if _is_read(key)}


def _is_read(key: Any) -> bool:
    return isinstance(key, tuple) and isinstance(key[0], str) and key[0].startswith(READ)


def _counted(keys: Iterable[Any]) -> dict[str, int]:
    """How many of ``keys`` are read tasks of each member, by their name."""
    counts: dict[str, int] = {}
    for key in keys:
        if _is_read(key):
            counts[key[0]] = counts.get(key[0], 0) + 1
    return counts
