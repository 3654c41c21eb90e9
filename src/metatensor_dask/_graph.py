"""Every dask graph this package builds by hand, behind one seam.

Operations on maps of many small blocks are dominated by dask's per-array bookkeeping:
building one array from a task dictionary costs tens of microseconds, a chain of
``dask.array`` calls a few hundred. So the chunk-wise operations, the grouping of tiny
blocks and the readers and writers of stores write their graphs as task dictionaries,
and this module is the only one that turns those dictionaries into dask collections
(and the only one that knows dask's task classes and graph layers). Moving to dask's
array expressions means rewriting this module, not its callers.

Graphs are dictionaries ``{key: task}``: a task is made by :func:`task` (a call whose
arguments may hold references made by :func:`ref` or :func:`chunk_ref`), or is a
tuple ``(func, *arguments)`` whose arguments may be keys, as dask documents custom
graphs.

dask's array expressions (``array.query-planning``) cannot hold such graphs; the package
refuses that setting when it is imported (:func:`check_query_planning`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import dask.array as da
import dask.array.core
import numpy as np
from dask._task_spec import Alias, GraphNode, _execute_subgraph, convert_legacy_graph
from dask.base import clone_key, tokenize
from dask.core import flatten
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph, Layer, MaterializedLayer
from dask.optimization import cull
from dask.task_spec import DataNode, Task, TaskRef
from dask.utils import ensure_dict

from ._gc import without_collector
from ._member_checks import arrays_checked
from ._row_buffer import own_chunk, whole
from .errors import MetatensorDaskError

__all__ = [
    "BlockValues",
    "array_from_tasks",
    "block_values",
    "check_query_planning",
    "chunk_inputs",
    "chunk_keys",
    "chunk_ref",
    "collection_graph",
    "flat_delayed",
    "flat_tasks",
    "gathered_rows",
    "group_layer",
    "group_of",
    "held_chunk",
    "in_memory_array",
    "in_order",
    "item_array",
    "item_group_tasks",
    "item_of",
    "layer_tasks",
    "optimize_flat",
    "orders_only",
    "private_tasks",
    "rechunked",
    "ref",
    "stable_keys",
    "task",
]


def check_query_planning() -> None:
    """Refuse dask's array expressions (``array.query-planning``), chosen by dask when
    ``dask.array`` is first imported.

    Raises
    ------
    MetatensorDaskError
        When ``dask.array`` runs on array expressions: this package builds its graphs
        from task dictionaries, which those arrays cannot hold.
    """
    if da.Array is not dask.array.core.Array:
        raise MetatensorDaskError(
            "metatensor-dask needs dask arrays without query planning, but dask.array "
            "was imported with `array.query-planning` enabled; set "
            "DASK_ARRAY__QUERY_PLANNING=False in the environment, or call "
            'dask.config.set({"array.query-planning": False}) before the first import '
            "of dask.array or metatensor_dask"
        )


check_query_planning()


# -- tasks ------------------------------------------------------------------------------


def task(key: Any, func: Callable, *arguments: Any) -> Any:
    """The task ``key``: ``func(*arguments)``, arguments may be references (:func:`ref`)."""
    return Task(key, func, *arguments)


def ref(key: Any) -> Any:
    """A reference to the result of task ``key``, as an argument of :func:`task`."""
    return TaskRef(key)


def chunk_ref(array: da.Array, *index: int) -> Any:
    """A reference to chunk ``index`` of ``array``, as an argument of :func:`task`; the
    chunk itself when ``array`` is one chunk of data in memory (see :func:`held_chunk`),
    so that the task needs no graph node of its own for it."""
    held = held_chunk(array)
    return TaskRef((array.name, *index)) if held is None else held


def held_chunk(array: da.Array) -> np.ndarray | None:
    """The numpy array that is the only chunk of ``array`` when its graph holds that
    array itself (``dask.array.from_array`` of one chunk, a persisted array), else None.

    Tasks take such a chunk as an argument instead of a reference: on maps of many tiny
    blocks built from memory, a graph node per block array costs dask more (ordering,
    scheduling, culling) than the arithmetic.
    """
    if not isinstance(array, BlockValues):
        return _held_chunk(array)
    try:
        return array.held
    except AttributeError:  # not looked for yet (the array is immutable)
        array.held = _held_chunk(array)
        return array.held


def _held_chunk(array: da.Array) -> np.ndarray | None:
    layers = getattr(array.dask, "layers", None)
    if layers is None or len(layers) != 1:
        return None
    mapping = getattr(next(iter(layers.values())), "mapping", None)
    if not isinstance(mapping, dict) or len(mapping) != 1:
        return None
    ((key, value),) = mapping.items()
    if not isinstance(key, tuple) or key[0] != array.name:
        return None
    if isinstance(value, DataNode):
        value = value.value
    return value if type(value) is np.ndarray else None


def chunk_keys(array: da.Array) -> list[Any]:
    """The keys of the chunks of ``array``, in C order."""
    return list(flatten(array.__dask_keys__()))


def chunk_inputs(array: da.Array) -> list[Any]:
    """What a task takes for each chunk of ``array``, in C order: the chunk's key, or
    the chunk itself when :func:`held_chunk` finds it (graphs made with
    :func:`flat_tasks` have no node for such a chunk)."""
    held = held_chunk(array)
    return chunk_keys(array) if held is None else [held]


def private_tasks(
    tasks: Mapping[Any, Any], keys: Iterable[Any], suffix: str, reads: bool = False
) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """The tasks of ``tasks`` that ``keys`` need, each task that depends on others
    renamed (``suffix`` added to its name), and the new key of each renamed one.

    dask's optimisation gives such a task another one when a collection holding it is
    computed or persisted (it fuses chains of tasks under new keys and leaves an alias
    at the key asked for; ``compute()`` and ``persist()`` of one collection do not even
    fuse alike). A graph that holds the task as built, under the same key, then gives a
    scheduler that still knows the key (a collection persisted, a future held) another
    task for it, with other dependencies, which distributed warns may cause failures
    and deadlocks. Renamed, the task is only ever given as here. A task without
    dependencies (a read) is given alike everywhere and keeps its key, unless ``reads``,
    and so do data and the futures of persisted results (not tasks): a scheduler holding
    them reuses them.
    """
    culled, _ = cull(dict(tasks), list(keys))
    converted = convert_legacy_graph(culled)
    renamed = {
        key: _suffixed(key, suffix) for key, node in converted.items() if node.dependencies or reads
    }
    # a future of a persisted result, left out of the conversion: the scheduler holds it
    copy = {key: value for key, value in culled.items() if key not in converted}
    for key, node in converted.items():
        new = renamed.get(key, key)
        copy[new] = node.substitute(renamed, key=new)
    return copy, renamed


def computed_apart(array: da.Array, suffix: str) -> da.Array:
    """``array`` computed by tasks of its own: every task it needs, reads included,
    under a new key (``suffix`` added to its name).

    Two passes over the same chunks that share their tasks hold each chunk from the
    first pass until the second, and dask runs the first pass over a whole array before
    the second when the second waits for the first pass's results: every chunk is then
    held at once. Apart, each pass reads (or computes) its chunks again and releases
    them. ``dask.graph_manipulation.clone`` would do it, but fails on rechunked arrays
    (dask 2026.7: its clones of a rechunk's keys refer to the original ones).

    ``array`` itself when its chunks are held (in memory, or by a ``distributed``
    cluster as the futures of a persisted result): nothing computes them, and a held
    chunk is not read again."""
    if held_chunk(array) is not None:
        return array
    keys = chunk_keys(array)
    tasks, renamed = private_tasks(flat_tasks([array]), keys, suffix, reads=True)
    if not all(key in renamed for key in keys):
        return array
    name = _suffixed(array.name, suffix)
    graph = HighLevelGraph({name: MaterializedLayer(tasks)}, {name: set()})
    return _new_array(graph, name, array.chunks, array.dtype)


def item_group_tasks(
    items: Iterable[da.Array], suffix: str
) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """The tasks of the groups that ``items`` (arrays made by :func:`item_array`) are
    items of, and the new key of each task renamed (see :func:`private_tasks`).

    A storing task takes an item from its group's result (see
    :func:`~metatensor_dask.io._task_batches.picked`): the
    group's task feeds the stores of all its items, where each item's own task would
    read (or compute) it alone, a task per array."""
    items = list(items)
    groups = {item_of(array).group_key: None for array in items}
    if not groups:
        return {}, {}
    return private_tasks(flat_tasks(items), groups, suffix)


def _suffixed(key: Any, suffix: str) -> Any:
    """``key`` with ``suffix`` added to its name (a chunk key keeps its index)."""
    if isinstance(key, tuple):
        return (f"{key[0]}-{suffix}", *key[1:])
    return f"{key}-{suffix}"


# -- arrays and delayed results ---------------------------------------------------------


def _meta(ndim: int, dtype: Any) -> np.ndarray:
    return np.empty((0,) * ndim, dtype)


def array_from_tasks(
    name: str,
    tasks: Mapping[Any, Any],
    dependencies: Sequence[Any],
    chunks: tuple[tuple[int, ...], ...],
    dtype: Any,
) -> BlockValues:
    """A dask array whose chunk ``(i, j, ...)`` is the task ``(name, i, j, ...)``.

    Parameters
    ----------
    name
        The array's name, also the first element of its keys; names the content.
    tasks
        The array's tasks (and any intermediate ones), by key.
    dependencies
        The dask collections whose chunks the tasks refer to.
    chunks
        The array's chunks, normalised (a tuple of chunk sizes per axis).
    dtype
        The array's dtype (its chunks are numpy arrays).
    """
    return _new_array(_layered_graph(name, tasks, dependencies), name, chunks, np.dtype(dtype))


def _layered_graph(
    name: str, tasks: Mapping[Any, Any], dependencies: Sequence[Any]
) -> HighLevelGraph:
    """The graph of ``dependencies`` (dask collections) with the layer ``name`` of
    ``tasks`` on top, as ``HighLevelGraph.from_collections`` makes it.

    ``from_collections`` checks every layer of the merged graph again (a Python loop
    over the layers), and an array at the end of a chain of operations has a layer per
    operation: along a chain of N operations on a map of many arrays, that made building
    each operation cost in proportion to the operations before it (seconds per
    operation after a few hundred). The layers of a dependency's graph are checked
    already; here they are merged as dictionaries.
    """
    layers: dict[str, Any] = {}
    layer_dependencies: dict[str, Any] = {}
    below: set[str] = set()
    for collection in dependencies:
        graph = collection.__dask_graph__()
        if not isinstance(graph, HighLevelGraph):
            return HighLevelGraph.from_collections(name, tasks, dependencies=dependencies)
        layers.update(graph.layers)
        layer_dependencies.update(graph.dependencies)
        below.update(collection.__dask_layers__())
    layers[name] = CloningLayer(tasks)
    layer_dependencies[name] = below
    merged = HighLevelGraph.__new__(HighLevelGraph)
    merged.layers = layers
    merged.dependencies = layer_dependencies
    merged.key_dependencies = {}
    return merged


MAX_GATHER_SOURCES = 8
"""Most input chunks one task of :func:`gathered_rows` reads (and holds at once)."""


def gathered_rows(
    array: da.Array, index: np.ndarray, fill: Any = None, rows_per_chunk: int = 1
) -> BlockValues | None:
    """``array[index]`` along rows, one task per output chunk; ``-1`` gives ``fill``.

    Output chunks have as many rows as the largest input chunk, or ``rows_per_chunk``
    when that is more (the last one fewer).
    Each output chunk is one task reading the input chunks its rows come from, instead
    of dask's fancy indexing, which splits every input chunk for every output chunk
    (thousands of tasks for a few hundred arrays, and merging rows of several blocks
    or placing a block's rows among missing ones takes such an index).

    Parameters
    ----------
    array
        Any dask array; axes but the first are made single chunks.
    index
        Row of ``array`` for each output row, in any order, or ``-1``.
    fill
        Value of the output rows whose index is ``-1``.
    rows_per_chunk
        Least rows of an output chunk: a block of a few rows placed among thousands of
        missing ones otherwise makes a chunk (and a task) per few rows.

    Returns
    -------
    BlockValues or None
        None when an output chunk would read more than ``MAX_GATHER_SOURCES`` input
        chunks (a shuffle then holds less memory at once).
    """
    index = np.asarray(index, dtype=np.int64)
    trailing = {axis: -1 for axis in range(1, array.ndim) if len(array.chunks[axis]) > 1}
    array = array.rechunk(trailing) if trailing else array
    size = max(max(array.chunks[0], default=1), 1, rows_per_chunk)
    chunks = tuple(min(size, len(index) - start) for start in range(0, len(index), size)) or (0,)
    bounds = np.concatenate([[0], np.cumsum(array.chunks[0])]).astype(np.int64)
    owner = np.where(index >= 0, np.searchsorted(bounds, index, side="right") - 1, -1)
    local = index - bounds[np.maximum(owner, 0)]
    name = f"gather-rows-{tokenize(array.name, index, fill, size)}"
    tail = (0,) * (array.ndim - 1)
    tasks = {}
    shape = (0, *array.shape[1:])
    for i, start in enumerate(np.cumsum([0, *chunks[:-1]]).tolist()):
        rows = slice(start, start + chunks[i])
        sources = np.unique(owner[rows][owner[rows] >= 0])
        if len(sources) > MAX_GATHER_SOURCES:
            return None
        which = np.where(owner[rows] >= 0, np.searchsorted(sources, owner[rows]), -1)
        inputs = [chunk_ref(array, int(source), *tail) for source in sources]
        key = (name, i, *tail)
        # in the graph: an int8 per row (at most MAX_GATHER_SOURCES sources) and a local
        # row as int32 when it fits, a fifth of the bytes of two int64
        small = _local_rows(local[rows])
        tasks[key] = task(
            key, _gather, which.astype(np.int8), small, fill, array.dtype, shape, *inputs
        )
    trailing_chunks = tuple((n,) for n in shape[1:])
    return array_from_tasks(name, tasks, [array], (chunks, *trailing_chunks), array.dtype)


def _local_rows(local: np.ndarray) -> np.ndarray:
    """Rows within an input chunk (``local``), as int32 when they fit."""
    if len(local) and local.max() >= 2**31:
        return local
    return local.astype(np.int32)


def _gather(
    which: np.ndarray,
    local: np.ndarray,
    fill: Any,
    dtype: np.dtype,
    shape: tuple[int, ...],
    *chunks: np.ndarray,
) -> np.ndarray:
    """Row ``local[i]`` of ``chunks[which[i]]`` for each ``i``, ``fill`` where
    ``which[i]`` is ``-1``; ``shape`` gives the other axes."""
    out = np.empty((len(which), *shape[1:]), dtype=dtype)
    for position, chunk in enumerate(chunks):
        mask = which == position
        out[mask] = chunk[local[mask]]
    missing = which < 0
    if missing.any():
        out[missing] = fill
    return out


def in_memory_array(values: np.ndarray) -> BlockValues:
    """``values`` as a single-chunk dask array whose graph holds it (as
    ``dask.array.from_array(values, chunks=values.shape)`` does, so that
    :func:`held_chunk` finds it), named after its content, without dask's constructor:
    converting a map of tiny blocks made one ``from_array`` per array (half a
    millisecond each)."""
    name = f"array-{tokenize(values)}"
    key = (name, *((0,) * values.ndim))
    graph = HighLevelGraph({name: CloningLayer({key: values})}, {name: set()})
    array = _new_array(graph, name, tuple((n,) for n in values.shape), values.dtype)
    array.held = values if type(values) is np.ndarray else None  # see `held_chunk`
    return array


def _new_array(
    graph: HighLevelGraph, name: str, chunks: tuple[tuple[int, ...], ...], dtype: np.dtype
) -> BlockValues:
    """``BlockValues(graph, name, chunks, meta=...)`` for normalised ``chunks``, without
    dask's constructor: it normalises the chunks, derives the meta twice and annotates
    the layer, tens of microseconds per array that maps of 100,000 blocks pay for each
    of their arrays."""
    array = object.__new__(BlockValues)
    array.dask = graph
    array._name = name
    array._chunks = tuple(tuple(int(n) for n in axis) for axis in chunks)
    array._meta = _meta(len(chunks), dtype)
    return array


#: Links chained one after the other at each level of :func:`in_order`.
ORDER_FAN_IN = 64

#: Keys that one link of the first level of :func:`in_order` needs.
ORDER_GROUP = 8

#: How the names of the tasks of :func:`in_order` begin.
_ORDER = "in-order-"


def in_order(name: str, keys: Sequence[Any]) -> tuple[dict[Any, Any], list[Any]]:
    """Tasks that make dask run the tasks ``keys`` in their order, and the key of the
    last of them (none for no keys), which the task that needs every key is to need
    too.

    A task that needs thousands of tasks (the end of a write) is the only leaf of its
    graph: dask's static order walks back from it and runs those tasks sorted by how
    many tasks each needs, scattered over the arrays. Where neighbouring tasks share
    chunks (an array rechunked for a write, row groups split across chunks), every gap
    between the tasks already run holds some of those chunks, and the gaps grow with
    the arrays.

    Here the keys are chained by groups of :data:`ORDER_GROUP` (a link after each
    group, needing its keys and the previous link, doing nothing), :data:`ORDER_FAN_IN`
    links to a chain, and the ends of those chains are chained the same way (a link
    each), level after level: walking back along a chain, dask runs what it holds in
    order, group after group. One chain through every key would cost dask's order a
    set of all the tasks each link needs (time and memory quadratic in the keys); a
    link per key doubled the time of dask's order on 30,000 keys. Nothing else waits:
    each key still runs once its inputs are there.
    """
    tasks: dict[Any, Any] = {}
    level, group = list(keys), ORDER_GROUP
    while len(level) > 1 or (level and not tasks):
        ends = []
        for start in range(0, len(level), ORDER_FAN_IN * group):
            previous: list[Any] = []
            chain = level[start : start + ORDER_FAN_IN * group]
            for first in range(0, len(chain), group):
                after = (f"{_ORDER}{name}", len(tasks))
                needed = [*previous, *chain[first : first + group]]
                tasks[after] = task(after, _nothing, *map(ref, needed))
                previous = [after]
            ends.extend(previous)
        level, group = ends, 1
    return tasks, level


def _nothing(*results: Any) -> None:
    return None


def orders_only(key: Any) -> bool:
    """Whether ``key`` is a task of :func:`in_order`, which only orders others (its
    result: ``None``). Computed a window of tasks at a time, such a task would bring
    every task it orders into its window: windows order them instead."""
    return isinstance(key, tuple) and bool(key) and str(key[0]).startswith(_ORDER)


def flat_delayed(name: str, tasks: Mapping[Any, Any], dependencies: Sequence[Any]) -> Delayed:
    """A delayed result: task ``name`` of ``tasks``, which refer to ``dependencies``, in
    one flat graph (merging, culling and optimising thousands of layered graphs costs
    seconds, quadratic in the layers, on maps of many small blocks)."""
    graph: dict[Any, Any] = {}
    for collection in dependencies:
        graph.update(collection.__dask_graph__())
    graph.update(tasks)
    return Delayed(name, graph)


def flat_tasks(arrays: Iterable[da.Array]) -> dict[Any, Any]:
    """All the tasks that ``arrays`` need, as one dictionary (each graph layer once);
    none for the arrays that :func:`chunk_ref` passes as data (:func:`held_chunk`)."""
    tasks: dict[Any, Any] = {}
    seen: set[str] = set()
    for array in arrays:
        if held_chunk(array) is not None:
            continue
        layers = dict(array.dask.layers)
        group = group_of(array)
        if group is not None:  # an item of a group (see `item_array`), read by later groups
            layers.setdefault(*group)
        for name, layer in layers.items():
            if name not in seen:
                seen.add(name)
                # a materialized layer's own dictionary: ``dict(layer)`` goes through
                # the Mapping protocol, key by key
                mapping = getattr(layer, "mapping", None)
                tasks.update(mapping if type(mapping) is dict else ensure_dict(layer))
    return tasks


# -- tensors as dask collections -------------------------------------------------------


def group_layer(tasks: dict[Any, Any]) -> Any:
    """The graph of a group of tiny blocks: its task and everything it needs, shared
    by the arrays of its items (see :func:`item_array`)."""
    return CloningLayer(tasks)


def layer_tasks(layer: Any) -> dict[Any, Any]:
    """The tasks of a group's graph (from :func:`group_layer`), as a dictionary."""
    return ensure_dict(layer)


def collection_graph(arrays: Sequence[da.Array], groups: Mapping[str, Any]) -> Any:
    """The graph of a tensor: that of its dask ``arrays`` merged with the graphs of
    ``groups`` (``{group key: group_layer(...)}``); None when both are empty. Its
    materialized layers are :class:`CloningLayer`, so that ``dask.graph_manipulation``
    can clone and bind it."""
    graphs = [array.__dask_graph__() for array in arrays]
    graphs += [HighLevelGraph({key: layer}, {key: set()}) for key, layer in groups.items()]
    if not graphs:
        return None
    merged = HighLevelGraph.merge(*graphs)
    merged.layers = {name: _cloning(layer) for name, layer in merged.layers.items()}
    return merged


def _cloning(layer: Layer) -> Layer:
    """``layer`` as a :class:`CloningLayer` when it is a plain materialized layer (made
    by dask: ``from_array``, ``rechunk``...), else unchanged."""
    if type(layer) is not MaterializedLayer:
        return layer
    return CloningLayer(layer.mapping, layer.annotations, layer.collection_annotations)


class CloningLayer(MaterializedLayer):
    """A materialized layer that ``dask.graph_manipulation`` (``clone``, ``bind``) can
    copy under new keys.

    dask's ``Layer.clone`` renames the keys that tasks refer to inside tasks written as
    tuples only: the tasks of this package (and those of ``rechunk`` and of indexing
    with arrays) are ``Task`` objects, whose references it left to the keys replaced,
    so that the clone failed with a missing dependency.
    """

    def clone(self, keys: set, seed: Any, bind_to: Any = None) -> tuple[Layer, bool]:
        """The layer with its tasks among ``keys`` renamed by ``clone_key``, and their
        references to ``keys`` with them; those that refer to none wait for
        ``bind_to`` when given. Returns the layer and whether any task waits.

        Tuple tasks, data and futures are cloned by dask's ``Layer.clone``, which
        leaves their references to keys not in ``keys`` (those of collections given
        as ``omit``) as they are."""
        others = {key: v for key, v in self.mapping.items() if not isinstance(v, GraphNode)}
        cloned, bound = MaterializedLayer(others).clone(keys, seed, bind_to)
        tasks = dict(cloned)
        for key, node in self.mapping.items():
            if not isinstance(node, GraphNode):
                continue
            if key not in keys:
                tasks[key] = node
                continue
            new, waits = _cloned_node(node, keys, seed, bind_to)
            tasks[new.key] = new
            bound = bound or waits
        return MaterializedLayer(tasks, self.annotations, self.collection_annotations), bound


def _cloned_node(node: GraphNode, keys: set, seed: Any, bind_to: Any) -> tuple[GraphNode, bool]:
    """``node`` under its cloned key, referring to the clones of its dependencies among
    ``keys``; when it refers to none and ``bind_to`` is given, a task that waits for
    ``bind_to`` too. Returns the node and whether it waits."""
    new_key = clone_key(node.key, seed)
    renamed = {key: clone_key(key, seed) for key in node.dependencies if key in keys}
    if isinstance(node, Alias):
        new: GraphNode = Alias(new_key, renamed.get(node.target, node.target))
    else:
        new = node.substitute(renamed, key=new_key)
    if renamed or bind_to is None:
        return new, False
    from dask.graph_manipulation import chunks  # (imports dask.delayed's helpers)

    inner = TaskRef(node.target) if isinstance(node, Alias) else new.substitute({}, key=None)
    return Task(new_key, chunks.bind, inner, TaskRef(bind_to)), True


@without_collector
def optimize_flat(graph: Any, keys: Any, **kwargs: Any) -> Any:
    """dask.array's optimisation of ``graph`` for ``keys``, on the flat graph (culling
    a layered graph of thousands of layers, one per block array, is quadratic in their
    number, culling the flat graph is linear), with the tasks it changed under keys of
    their own (see :func:`stable_keys`). A chunk of each array waits for the CRC
    checks of the file members it reads, whole or in part (see
    :func:`~metatensor_dask._member_checks.arrays_checked`)."""
    wanted = list(flatten(keys))
    checked = arrays_checked(graph, keys)
    tasks = ensure_dict(graph) if checked is None else checked
    optimized = da.Array.__dask_optimize__(tasks, wanted, **kwargs)
    if isinstance(optimized, HighLevelGraph):  # culled only: every task as built
        return optimized
    return stable_keys(optimized, wanted)


def stable_keys(optimized: dict[Any, Any], outputs: Any) -> dict[Any, Any]:
    """``optimized``, a graph that dask's optimisation made, where every task that
    depends on others has a key named after what it computes, except the ``outputs``.

    dask fuses chains of tasks under new keys, named after the names of the keys
    fused, and leaves at the key ending each chain an alias to the fused task. Which
    chains are fused depends on the whole graph: a chunk of a stored map read in other
    chunks is an alias to one fused task when computing ``multiply(t, t)``, a task of
    its own in ``pow(t, 0.5)``, an output when an operation passes it on unchanged.
    distributed keeps the first definition it got for a key it still knows (the tasks
    of the computation before, not yet released; those of another one running) and
    warns that the second may deadlock or fail. Here the keys of a graph are those of
    tasks that depend on nothing (reads, data), given alike everywhere, those asked
    for, and keys made from the keys of the tasks computed (the tasks fused, or the
    task as built) and of their dependencies: a key is given the same task in every
    graph.
    """
    outputs = set(outputs)
    new_keys: dict[Any, Any] = {}
    result: dict[Any, Any] = {}
    for key in _dependencies_first(optimized):
        node = optimized[key]
        dependencies = _dependencies(node)
        renamed = {d: new_keys[d] for d in dependencies if d in new_keys}
        if key in outputs or not dependencies:
            result[key] = node.substitute(renamed) if renamed else node
        elif isinstance(node, Alias):
            new_keys[key] = new_keys.get(node.target, node.target)
        else:
            new = _content_key(key, node, renamed)
            new_keys[key] = new
            result[new] = node.substitute(renamed, key=new)
    return result


def _dependencies_first(graph: Mapping[Any, Any]) -> list[Any]:
    """The keys of ``graph``, each after the keys of the graph it depends on."""
    order: list[Any] = []
    done: set[Any] = set()
    for root in graph:
        stack = [(root, False)]
        while stack:
            key, expanded = stack.pop()
            if expanded:
                order.append(key)
                continue
            if key in done or key not in graph:
                continue
            done.add(key)
            stack.append((key, True))
            stack.extend((d, False) for d in _dependencies(graph[key]) if d not in done)
    return order


def _dependencies(node: Any) -> frozenset:
    """The keys that a task depends on; none for data (a persisted chunk)."""
    return node.dependencies if isinstance(node, GraphNode) else frozenset()


def _is_fused(node: Any) -> bool:
    """Whether ``node`` is a task of dask's fusion (its first argument, the tasks fused)."""
    # (``Task.has_subgraph`` tells the same, but dask 2025.1, the oldest supported, lacks it)
    return isinstance(node, Task) and node.func is _execute_subgraph


def _content_key(key: Any, node: Any, renamed: Mapping[Any, Any]) -> Any:
    """``key`` with a suffix naming what ``node`` computes: the tasks fused in it, or
    its own key, and the keys it depends on after renaming."""
    fused = sorted(map(repr, node.args[0])) if _is_fused(node) else [repr(key)]
    dependencies = sorted(repr(renamed.get(d, d)) for d in _dependencies(node))
    digest = hashlib.blake2b(repr((fused, dependencies)).encode(), digest_size=8).hexdigest()
    return _suffixed(key, digest)


class BlockValues(da.Array):
    """A dask array whose ``__getitem__`` also takes ``[int_array, None, ...]``, and
    that may stand for an item of a group of tiny blocks (``item``).

    Writing in place (``values[...] = x``) raises ``TypeError``, before anything
    changes: dask would replace the graph of this one array object, and the other
    holders of the same values (copies, the group of a tiny block, the rows it was
    made from) would not see it.

    dask 2026.8 fails on an integer-array index combined with ``None`` when the integer
    array selects every row in order (``'Alias' object has no attribute 'args'``), as
    ``values[gradient.samples["sample"], None, :]`` does for a strain gradient (one row
    per sample) or a block of one sample. metatensor's tutorial broadcasts values to
    gradient rows exactly so, hence this subclass: it applies such an index in two
    steps, the index without ``None``, then the new axes. Every other index goes to
    dask unchanged.
    """

    __slots__ = ("group", "held", "item")
    # the function of maps and blocks (see `optimize_flat`): dask groups the collections
    # of a computation by their optimisation, and returns the results of each group
    # together, whatever the order they were given in
    __dask_optimize__ = staticmethod(optimize_flat)
    item: Any
    group: tuple[str, Any] | None
    held: np.ndarray | None

    def __dask_postcompute__(self) -> tuple[Callable, tuple]:
        return _finalized, ()

    def __dask_postpersist__(self) -> tuple[Callable, tuple]:
        rebuild, arguments = da.Array.__dask_postpersist__(self)
        return _owned_rebuild, (rebuild, *arguments)

    def __setitem__(self, key: Any, value: Any) -> None:
        raise TypeError(
            "the values and gradients of a block are immutable dask arrays and can not "
            "be written in place; build a new block from new values instead, such as "
            "TensorBlock(values, block.samples, block.components, block.properties), or "
            "use an operation (add, multiply...)"
        )

    def __getitem__(self, index: Any) -> Any:
        try:
            return _indexed(self, index)
        except ValueError:
            # dask 2026.8 fails to index an axis of more chunks than entries (``(0, 1)``)
            # with an integer array; only then are the empty chunks dropped, so that
            # every other result keeps its chunks (gradients stay co-partitioned)
            if not _has_integer_array(index):
                raise
            return _indexed(_without_empty_chunks(self), index)


def _finalized(results: Any) -> Any:
    """dask's ``finalize`` of an array's computed chunks, or the array that row chunks
    written in place into one buffer are the rows of (see :mod:`._row_buffer`)."""
    if isinstance(results, list) and len(results) > 1:
        joined = whole(list(flatten(results)))
        if joined is not None:
            return joined
    return dask.array.core.finalize(results)


def _owned_rebuild(dsk: Any, rebuild: Callable, *arguments: Any, rename: Any = None) -> Any:
    """dask's rebuild of a persisted array, with chunks of their own (not rows of a
    buffer that a later ``compute`` hands out, see :mod:`._row_buffer`)."""
    owned = {key: own_chunk(value) for key, value in dict(dsk).items()}
    return rebuild(owned, *arguments, rename=rename)


def _indexed(array: da.Array, index: Any) -> Any:
    split = _split_new_axes(index)
    if split is None:
        return da.Array.__getitem__(array, index)
    first, second = split
    return da.Array.__getitem__(array, first)[second]


def _has_integer_array(index: Any) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(_is_integer_array(item) for item in items)


def rechunked(array: da.Array, chunks: tuple[tuple[int, ...], ...]) -> da.Array:
    """``array`` in ``chunks`` (one tuple of sizes per axis).

    An array of no entries is made anew in them: dask 2026.7 leaves an array whose
    axes are all empty in its own chunks (``(0,)`` stays ``(0,)`` when ``(0, 0)`` is
    asked), and a graph that pairs its chunks with those of an array chunked as asked
    misses a chunk when computed.
    """
    if array.chunks == chunks:
        return array
    if array.size == 0:
        return da.zeros(array.shape, dtype=array.dtype, chunks=chunks)
    return array.rechunk(chunks)


def _without_empty_chunks(array: da.Array) -> da.Array:
    """``array`` without its empty chunks: dask 2026.8 fails to index an axis of more
    chunks than entries (``(0, 1)``) with an integer array (``range() arg 3 must not be
    zero``). Only the chunk boundaries change, no data moves."""
    chunks = tuple(tuple(c for c in axis if c) or (0,) for axis in array.chunks)
    return array if chunks == array.chunks else array.rechunk(chunks)


def block_values(array: Any) -> Any:
    """``array`` as :class:`BlockValues` when it is another dask array (a view over the
    same graph), else unchanged."""
    if isinstance(array, da.Array) and not isinstance(array, BlockValues):
        return BlockValues(array.dask, array.name, array.chunks, meta=array._meta)
    return array


def item_of(array: Any) -> Any:
    """The group item that ``array`` was made for by :func:`item_array`, else None."""
    return getattr(array, "item", None) if isinstance(array, BlockValues) else None


def group_of(array: Any) -> tuple[str, Any] | None:
    """The group ``(key, layer)`` that :func:`item_array` made ``array`` from, else None."""
    return getattr(array, "group", None) if isinstance(array, BlockValues) else None


def item_array(
    name: str,
    func: Callable,
    arguments: tuple,
    group: tuple[str, Any],
    shape: tuple[int, ...],
    dtype: Any,
    item: Any = None,
) -> BlockValues:
    """A single-chunk array computed by ``func(*arguments)``, whose arguments refer to
    the group ``group = (key, group_layer(...))``; ``item`` and ``group`` are
    remembered (:func:`item_of`, :func:`group_of`) so that later groups read the
    group's result instead. The array's graph holds the group only when its task needs
    it: dask's culling keeps every layer left once no key remains to look for."""
    group_key, layer = group
    key = (name, *((0,) * len(shape)))
    own = Task(key, func, *arguments)
    if own.dependencies:
        layers = {name: CloningLayer({key: own}), group_key: layer}
        graph = HighLevelGraph(layers, {name: {group_key}, group_key: set()})
    else:  # its inputs are data (see `chunk_ref`)
        graph = HighLevelGraph({name: CloningLayer({key: own})}, {name: set()})
    array = _new_array(graph, name, tuple((n,) for n in shape), np.dtype(dtype))
    array.item, array.group = item, group
    return array


def _is_integer_array(item: Any) -> bool:
    if isinstance(item, list):
        item = np.asarray(item)
    return isinstance(item, (np.ndarray, da.Array)) and item.dtype.kind in "iu"


def _split_new_axes(index: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]] | None:
    """``(index without None, index adding the new axes)``, or None to leave as is."""
    if not isinstance(index, tuple):
        return None
    if not any(item is None for item in index) or any(item is Ellipsis for item in index):
        return None
    arrays = [item for item in index if _is_integer_array(item)]
    if len(arrays) != 1 or np.ndim(arrays[0]) != 1:
        return None
    without_none = tuple(item for item in index if item is not None)
    new_axes: list[slice | None] = []
    for item in index:
        if item is None:
            new_axes.append(None)
        elif not isinstance(item, (int, np.integer)):
            new_axes.append(slice(None))
    return without_none, tuple(new_axes)
