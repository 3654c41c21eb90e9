"""Computing a large result on a cluster a window of tasks at a time.

Given the whole graph of a store → store write at once, distributed's scheduler keeps
the state of every task until it is done (about 8 KiB per task, in the process running
the scheduler: the command's own process for the clusters it starts), so the memory of
a run grew with the store. The result of a write is one final task (marking the store
complete) that depends on every task storing chunks: here those tasks are cut into
*windows*, consecutive in the order of the graph, of about ``size`` tasks with what they
need, and a window is submitted only once all but ``ahead`` of those before it are
done. The result of each storing task (small: ``None``) is brought back as soon as it
is done and the task forgotten; the final task runs last, on those results.

Windows follow the graph's independent parts (the blocks of a tensor, which share no
task): a window takes whole parts while they fit, and a part larger than a window is cut
in the order of its storing tasks (the tasks two windows share are then computed by the
first and, if released by the time the second needs them, again).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dask._task_spec import DataNode, GraphNode, convert_legacy_task
from dask.core import get_dependencies, keys_in_tasks
from dask.typing import Key

__all__ = ["DEFAULT_AHEAD", "Window", "compute_windowed", "split"]

#: Windows in flight besides the oldest unfinished one: the next window's tasks are
#: ready when the oldest one ends, so that the workers do not wait for a submission.
DEFAULT_AHEAD = 1


@dataclass(frozen=True)
class Window:
    """Tasks submitted together: ``graph`` computes the storing tasks ``keys``, the
    ``weights`` of which (the tasks of ``graph`` counted with each key, summing to the
    size of ``graph``) measure progress."""

    keys: tuple[Key, ...]
    graph: dict[Key, Any]
    weights: tuple[int, ...]


def _closures(
    graph: Mapping[Key, Any], roots: Sequence[Key]
) -> tuple[list[list[Key]], dict[Key, list[Key]]]:
    """The tasks first reached from each of ``roots`` (depth first, in order), and the
    dependencies of every task reached."""
    dependencies: dict[Key, list[Key]] = {}
    owned = []
    for root in roots:
        mine = []
        stack = [root]
        while stack:
            key = stack.pop()
            if key in dependencies:
                continue
            found = list(get_dependencies(graph, key))
            dependencies[key] = found
            mine.append(key)
            stack.extend(found)
        owned.append(mine)
    return owned, dependencies


def _parts(owned: list[list[Key]], dependencies: Mapping[Key, list[Key]]) -> list[int]:
    """For each root (of :func:`_closures`), the index of the first root of its
    independent part (roots whose tasks are connected through shared tasks)."""
    parent: dict[Key, Key] = {}

    def find(key: Key) -> Key:
        root = key
        while parent.get(root, root) != root:
            root = parent[root]
        while key != root:  # path compression
            parent[key], key = root, parent[key]
        return root

    for keys in owned:
        for key in keys:
            top = find(key)
            for dependency in dependencies[key]:
                other = find(dependency)
                if other != top:
                    parent[other] = top
    first: dict[Key, int] = {}
    return [first.setdefault(find(keys[0]), i) for i, keys in enumerate(owned)]


def split(graph: Mapping[Key, Any], roots: Sequence[Key], size: int) -> list[Window]:
    """Cut the computation of ``roots`` (keys of ``graph``) into windows of about
    ``size`` tasks (see the module's documentation), in the order of ``roots``; the
    roots that only order others (see :func:`~metatensor_dask._graph.in_order`) are
    left out.

    Raises
    ------
    ValueError
        ``size`` is not positive.
    """
    if size < 1:
        raise ValueError(f"a window holds at least one task, got size={size}")
    from .._graph import orders_only  # imports dask.array, as the graph's tasks do

    # a task ordering others for dask's static order needs every task it orders, which
    # its window would take again: the windows order them, without it (its result: None)
    roots = [root for root in roots if not orders_only(root)]
    owned, dependencies = _closures(graph, roots)
    parts = _parts(owned, dependencies)
    by_part: dict[int, list[int]] = {}
    for i, part in enumerate(parts):
        by_part.setdefault(part, []).append(i)
    windows: list[Window] = []
    current: list[int] = []
    count = 0
    for members in by_part.values():  # in the order of their first root
        weight = sum(len(owned[i]) for i in members)
        if current and count + weight > size:
            windows.append(_window(graph, roots, owned, dependencies, current))
            current, count = [], 0
        for i in members:
            if current and count + len(owned[i]) > size:
                windows.append(_window(graph, roots, owned, dependencies, current))
                current, count = [], 0
            current.append(i)
            count += len(owned[i])
    if current:
        windows.append(_window(graph, roots, owned, dependencies, current))
    return windows


def _window(
    graph: Mapping[Key, Any],
    roots: Sequence[Key],
    owned: list[list[Key]],
    dependencies: Mapping[Key, list[Key]],
    members: list[int],
) -> Window:
    """The window of the roots ``members``: their tasks, with those that earlier roots
    reached first (shared with an earlier window) and that they need."""
    tasks: dict[Key, Any] = {}
    weights = []
    for i in members:
        stack = [roots[i]]
        before = len(tasks)
        while stack:
            key = stack.pop()
            if key in tasks:
                continue
            tasks[key] = graph[key]
            stack.extend(dependencies[key])
        weights.append(len(tasks) - before)
    return Window(tuple(roots[i] for i in members), tasks, tuple(weights))


def compute_windowed(
    client: Any,
    graph: Mapping[Key, Any],
    key: Key,
    *,
    size: int,
    ahead: int = DEFAULT_AHEAD,
    progress: Callable[[int, int], None] | None = None,
) -> Any:
    """Compute task ``key`` of ``graph`` on ``client``: the tasks it depends on by
    windows of about ``size`` tasks (at most ``ahead + 1`` in flight), then ``key`` on
    their results.

    The result of every task that ``key`` depends on is brought to this process as
    soon as it is done, and the task forgotten by the scheduler (holding it would keep
    the state of every task that led to it in the scheduler): those results must be
    small, as a storing task's are (``None``).

    Parameters
    ----------
    client
        A :class:`distributed.Client`.
    graph
        Every task ``key`` needs.
    key
        The task to compute.
    size, ahead
        Tasks per window; windows submitted ahead of the oldest unfinished one.
    progress
        Called as ``progress(done, total)`` (tasks) as windows' tasks finish.

    Returns
    -------
    Any
        The result of ``key``.
    """
    from distributed import as_completed

    from .._graph import orders_only  # imports dask.array, as the graph's tasks do

    roots = list(dict.fromkeys(keys_in_tasks(graph, [graph[key]], as_list=True)))
    windows = split(graph, roots, size)
    total = sum(len(w.graph) for w in windows) + 1
    weight = {k: w for window in windows for k, w in zip(window.keys, window.weights, strict=True)}
    pending: Iterator[Window] = iter(windows)
    queue = as_completed(with_results=True, raise_errors=True)
    in_flight: list[set[Key]] = []
    # the tasks that only order others, which no window computes (see split)
    results: dict[Key, Any] = {root: None for root in roots if orders_only(root)}
    done = 0

    def submit() -> None:
        while len(in_flight) <= ahead:
            window = next(pending, None)
            if window is None:
                return
            in_flight.append(set(window.keys))
            queue.update(client.get(window.graph, list(window.keys), sync=False))

    try:
        submit()
        for future, result in queue:
            results[future.key] = result
            future.release()
            done += weight[future.key]
            if progress is not None:
                progress(done, total)
            for keys in in_flight:
                keys.discard(future.key)
            while in_flight and not in_flight[0]:
                in_flight.pop(0)
            submit()
    finally:
        queue.clear()  # on an error: the other windows' tasks are not wanted any more
    # the results in place of the tasks (which the scheduler may not have forgotten yet)
    last = convert_legacy_task(key, graph[key], set(roots))
    if isinstance(last, GraphNode):
        last = last.substitute({k: DataNode(None, v) for k, v in results.items()})
    (result,) = client.get({key: last}, [key], sync=True)
    if progress is not None:
        progress(total, total)
    return result
