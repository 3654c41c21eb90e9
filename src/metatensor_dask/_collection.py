"""The dask collection protocol for blocks and tensors.

A :class:`~metatensor_dask.TensorBlock` or :class:`~metatensor_dask.TensorMap` is a
container of arrays (values and gradients of every block) plus in-memory metadata. As
xarray's ``Dataset`` does, it delegates the protocol to its dask arrays: its graph is
the merge of theirs, ``compute()`` gives the same type holding numpy arrays, and
``persist()`` the same type holding persisted dask arrays. numpy arrays (a computed
block) are carried along unchanged.

Operations on maps of many tiny blocks compute them by a few grouped tasks, each
returning a tuple of arrays; a block then holds a :class:`GroupItem` (one item of such
a tuple) instead of a dask array. ``compute()`` asks for the group keys (a few) instead
of one key per array, and picks the items out; the dask array of an item is only made
when asked for (``block.values``), which is what makes such maps cheap to build.

On a ``distributed`` cluster, the task that assembles the computed container is sent to
a worker with the container's metadata, which then includes every sample Labels read
lazily from a store: those are read in the calling process, before the graph is sent
(see :func:`_read_sent_samples`), so that damaged ones raise the store's own error, as
they do on threads when first used, instead of failing the graph's serialization.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask._task_spec import GraphNode
from dask.base import DaskMethodsMixin, get_scheduler, is_dask_collection, tokenize
from dask.core import istask, keys_in_tasks

from . import _graph
from ._gc import collector_paused, without_collector
from ._graph import optimize_flat

__all__ = ["ArrayContainer", "GroupItem", "materialized"]

#: The ``scheduler`` given to the ``compute()`` of a container running now (None when
#: not given: dask's default then).
_CHOSEN_SCHEDULER: ContextVar[Any] = ContextVar("metatensor_dask_scheduler", default=None)


class GroupItem:
    """Item ``position`` of the tuple computed by the task ``group_key``, standing for a
    single-chunk dask array made on first use (:meth:`array`).

    Parameters
    ----------
    group_key
        The key of the group's task, also the name of ``layer``.
    layer
        A graph holding the group's task and everything it needs (shared by the items),
        from :func:`~metatensor_dask._graph.group_layer`.
    position
        Where this item is in the group's result.
    shape, dtype
        Those of the item.
    call
        ``(name, func, arguments)``: the array's own task is ``func(*arguments)`` (so
        computing one array alone runs one call, not the group); or a function giving
        it from ``position``, shared by the items of a group (a map of many blocks
        then holds no tuples per item until their arrays are asked for).
    """

    __slots__ = ("_array", "_call", "dtype", "group_key", "layer", "position", "shape")

    def __init__(
        self,
        group_key: str,
        layer: Any,
        position: int,
        shape: tuple[int, ...],
        dtype: np.dtype,
        call: tuple[str, Any, tuple] | Callable[[int], tuple[str, Any, tuple]],
    ):
        self.group_key, self.layer, self.position = group_key, layer, position
        self.shape, self.dtype, self._call = shape, dtype, call
        self._array: da.Array | None = None

    @property
    def call(self) -> tuple[str, Any, tuple]:
        """``(name, func, arguments)`` of the array's own task."""
        call = self._call
        return call(self.position) if callable(call) else call

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def array(self) -> da.Array:
        """The item as a dask array (made once)."""
        if self._array is None:
            name, func, arguments = self.call
            group = (self.group_key, self.layer)
            self._array = _graph.item_array(
                name, func, arguments, group, self.shape, self.dtype, item=self
            )
        return self._array

    def __dask_tokenize__(self) -> Any:
        return (self.group_key, self.position)


def _array_token(array: Any) -> str:
    """What identifies ``array`` in a token: a dask array's name identifies its content."""
    if isinstance(array, GroupItem):
        return f"{array.group_key}/{array.position}"
    if isinstance(array, da.Array):
        return array.name
    return tokenize(array)


def materialized(array: Any) -> Any:
    """``array``, or the dask array of a :class:`GroupItem`."""
    return array.array() if isinstance(array, GroupItem) else array


def _pick(result: Any, position: int) -> Any:
    return result[position]


def _request(arrays: list[Any]) -> tuple[list[Any], list[Any]]:
    """The keys to ask the scheduler for, and for each array ``(kind, index in the keys,
    array)``; a group's key is asked for once, whatever the number of its items."""
    keys: list[Any] = []
    plan: list[Any] = []
    groups: dict[Any, int] = {}
    for array in arrays:
        if isinstance(array, GroupItem):
            if array.group_key not in groups:
                groups[array.group_key] = len(keys)
                keys.append(array.group_key)
            plan.append(("item", groups[array.group_key], array))
        elif is_dask_collection(array):
            plan.append(("array", len(keys), array))
            keys.append(array.__dask_keys__())
        else:
            plan.append(("data", -1, array))
    return keys, plan


class ArrayContainer(DaskMethodsMixin):
    """Mixin: subclasses define ``_raw_arrays()`` (dask or numpy arrays, or
    :class:`GroupItem`), ``_with_arrays(arrays)`` and ``_feed_metadata(hasher)``.

    What the dask protocol derives from the arrays (the keys to ask for, the graph, the
    token) is made once per container and kept (``dask.compute`` asks for each several
    times, and each walks every block): a subclass whose arrays or metadata change
    calls :meth:`_forget`.
    """

    # no instance dictionary: maps of many blocks hold two containers per block (a
    # block and its gradient), each a few attributes
    __slots__ = ("_derived",)
    _derived: dict[str, Any] | None

    def _raw_arrays(self) -> list[Any]:
        raise NotImplementedError

    def _forget(self) -> None:
        """Drop what was derived from the arrays and metadata (they changed)."""
        self._derived = None

    def _once(self, name: str, make: Any) -> Any:
        """``make()``, made once per container (see :meth:`_forget`)."""
        derived = getattr(self, "_derived", None)
        if derived is None:
            derived = self._derived = {}
        if name not in derived:
            # a walk over every block of a map, making objects for each
            with collector_paused():
                derived[name] = make()
        return derived[name]

    def _requested(self) -> tuple[list[Any], list[Any]]:
        """:func:`_request` of the arrays, made once."""
        return self._once("request", lambda: _request(self._raw_arrays()))

    def _arrays(self) -> list[Any]:
        """The arrays, as dask (or numpy) arrays."""
        return [materialized(a) for a in self._raw_arrays()]

    def _with_arrays(self, arrays: list[Any]) -> Any:
        raise NotImplementedError

    @property
    def nbytes(self) -> int:
        """Bytes of the values and of every gradient (of every block), as dask's
        ``Array.nbytes``: from the shapes and dtypes, nothing is computed or read."""
        return sum(int(array.nbytes) for array in self._raw_arrays())

    @property
    def npartitions(self) -> int:
        """Number of chunks of the values and of every gradient (of every block): the
        number of tasks that compute them, about. A numpy array (after ``compute()``)
        counts as one chunk."""
        return sum(
            array.npartitions if isinstance(array, da.Array) else 1 for array in self._raw_arrays()
        )

    def _feed_metadata(self, hasher: Any) -> None:
        """Feed what identifies the metadata to ``hasher`` (for the dask token)."""
        raise NotImplementedError

    def __dask_graph__(self) -> Any:
        return self._once("graph", self._graph)

    def _graph(self) -> Any:
        arrays, groups = [], {}
        for kind, _, array in self._requested()[1]:
            if kind == "item":
                groups[array.group_key] = array.layer
            elif kind == "array":
                arrays.append(array)
        return _graph.collection_graph(arrays, groups)

    def __dask_keys__(self) -> list[Any]:
        # the CRC checks of the file members read come last: their results
        # (None) are not part of the computed container
        from ._member_checks import member_checks

        keys = self._once("keys", lambda: self._requested()[0] + member_checks(self._raw_arrays()))
        return list(keys)

    @without_collector
    def __dask_layers__(self) -> tuple[str, ...]:
        layers: dict[str, None] = {}
        for kind, _, array in self._requested()[1]:
            if kind == "item":
                layers[array.group_key] = None
            elif kind == "array":
                layers.update(dict.fromkeys(array.__dask_layers__()))
        return tuple(layers)

    def __dask_tokenize__(self) -> Any:
        return (type(self).__name__, self._once("token", self._token))

    def _token(self) -> str:
        # one digest, fed piece by piece: dask's tokenizer walks nested containers item
        # by item, which costs seconds on the metadata of 10,000 blocks
        hasher = hashlib.blake2b(digest_size=16)
        self._feed_metadata(hasher)
        hasher.update("\0".join(map(_array_token, self._raw_arrays())).encode())
        return hasher.hexdigest()

    # a map holds one dask array (one graph layer) per block and gradient; the function
    # of the arrays of blocks too (see `_graph.BlockValues`)
    __dask_optimize__ = staticmethod(optimize_flat)

    __dask_scheduler__ = staticmethod(dask.threaded.get)

    def compute(self, **kwargs: Any) -> Any:
        """The container holding numpy arrays, computed by ``dask.compute`` with
        ``kwargs`` (``scheduler=``...)."""
        chosen = _CHOSEN_SCHEDULER.set(kwargs.get("scheduler"))
        try:
            return super().compute(**kwargs)
        finally:
            _CHOSEN_SCHEDULER.reset(chosen)

    @without_collector
    def __dask_postcompute__(self) -> tuple[Any, tuple[Any, ...]]:
        plan: list[tuple[Any, ...]] = []
        for kind, index, array in self._requested()[1]:
            if kind == "item":
                plan.append((index, _pick, (array.position,)))
            elif kind == "array":
                plan.append((index, *array.__dask_postcompute__()))
            else:
                plan.append((index, array, ()))
        # the metadata without the arrays: on a distributed cluster this function and
        # its arguments are sent to a worker, where a container would carry its dask
        # arrays along (their graphs, and the data of arrays made from memory, again)
        bare = self._once("bare", lambda: self._with_arrays([None] * len(plan)))
        if _sent_to_workers(self):
            _read_sent_samples(bare)
        return _finalize, (bare, plan)

    @without_collector
    def __dask_postpersist__(self) -> tuple[Any, tuple[Any, ...]]:
        plan = []
        for kind, _, array in self._requested()[1]:
            if kind == "array":
                keys = _graph.chunk_keys(array)
                plan.append((kind, *array.__dask_postpersist__(), keys, array))
            else:
                plan.append((kind, array, (), (), array))
        return self._rebuild, (plan,)

    @without_collector
    def _rebuild(self, dsk: Any, plan: list[Any], rename: Any = None) -> Any:
        rename = rename or {}
        arrays = []
        persisted_groups: dict[Any, Any] = {}
        # every key at once: looking keys up in a layered graph walks its layers
        present = dsk.get_all_external_keys() if rename and hasattr(dsk, "layers") else dsk
        for kind, func, args, keys, original in plan:
            if kind == "data":
                arrays.append(func)
            elif _omitted(rename, present, func.group_key if kind == "item" else keys):
                arrays.append(original)
            elif kind == "item":
                arrays.append(_persisted_item(func, dsk, rename, persisted_groups))
            else:
                # each array keeps its own chunks only (and what they need): sharing the
                # whole graph would make merging the graphs of N arrays cost N * N
                own = [(rename.get(k[0], k[0]), *k[1:]) for k in keys]
                arrays.append(func(_needed(dsk, own), *args, rename=rename))
        return self._with_arrays(arrays)


def _omitted(rename: dict, present: Any, keys: Any) -> bool:
    """Whether an array of chunk ``keys`` (or a group of key ``keys``) was left out of
    a renaming: the graph's keys ``present`` hold it under its own name and not under
    the new one.

    ``dask.graph_manipulation.clone`` and ``bind`` rename every array of a collection
    but keep the keys of the collections given as ``omit``, so that a map sharing arrays
    with an omitted map (gradients that an operation passes on unchanged) keeps those
    arrays as they are. dask's clone does not always copy what such an array depends on
    into the new graph, so the array is kept whole, graph included."""
    if not rename or not keys:
        return False
    key = keys[0] if isinstance(keys, list) else keys
    name = key[0] if isinstance(key, tuple) else key
    if name not in rename:
        return False
    new_key = (rename[name], *key[1:]) if isinstance(key, tuple) else rename[name]
    return new_key not in present and key in present


def _sent_to_workers(container: ArrayContainer) -> bool:
    """Whether the scheduler computing ``container`` now may be a ``distributed``
    client's, which sends the result's assembly, metadata included, to a worker: the
    one given to its ``compute()``, or dask's default; or, when no scheduler was given
    to ``compute()``, any client of this process (``client.compute(container)`` asks
    for the assembly as ``dask.compute`` does, with no sign of the client)."""
    if "distributed" not in sys.modules:  # no client can exist
        return False
    from distributed import Client

    chosen = _CHOSEN_SCHEDULER.get()
    try:
        schedule = get_scheduler(scheduler=chosen, collections=[container])
    except (RuntimeError, ValueError):  # a scheduler dask refuses: not a client
        return False
    if isinstance(getattr(schedule, "__self__", None), Client):
        return True
    return chosen is None and any(client.status == "running" for client in Client._instances)


def _read_sent_samples(container: Any) -> None:
    """Read the sample Labels of ``container`` not read yet (those of a store), block
    by block: sending the container would read them all.

    Raises
    ------
    DamagedStoreError
        For the first of them that is damaged.
    """
    for block in container.blocks() if hasattr(container, "blocks") else [container]:
        for samples in _sample_labels(block):
            if not samples.is_loaded:
                samples.values  # noqa: B018 (reading them, which checks them, is the point)


def _sample_labels(block: Any) -> Iterator[Any]:
    """The sample Labels of ``block`` then of its gradients (and theirs), in order."""
    yield block.samples
    for _, gradient in block.gradients():
        yield from _sample_labels(gradient)


@without_collector
def _finalize(results: list[Any], bare: ArrayContainer, plan: list[Any]) -> Any:
    """The computed container: ``bare`` (its metadata) holding the arrays made from
    ``results`` as ``plan`` says (see ``ArrayContainer.__dask_postcompute__``)."""
    arrays = [func if index < 0 else func(results[index], *args) for index, func, args in plan]
    return bare._with_arrays(arrays)


def _needed(dsk: Any, keys: list[Any]) -> dict[Any, Any]:
    """The tasks of ``dsk`` at ``keys`` and those they depend on, recursively.

    A persisted graph holds data (or futures) at ``keys``, depending on nothing; the
    graph given by ``dask.optimize`` holds the tasks that compute them, and the one given
    by ``wait_on`` or ``bind`` tasks in dask's older form (tuples) calling them. Keys
    not in ``dsk`` are left out, as dask arrays leave them: those held by a
    ``distributed`` cluster (``dask.optimize`` drops the futures of a map persisted
    there from the graph) are found there when computed.
    """
    needed: dict[Any, Any] = {}
    waiting = list(keys)
    while waiting:
        key = waiting.pop()
        if key in needed:
            continue
        try:
            node = needed[key] = dsk[key]
        except KeyError:
            continue
        if isinstance(node, GraphNode):
            waiting.extend(node.dependencies)
        elif istask(node):
            waiting.extend(keys_in_tasks(dsk, [node]))
    return needed


def _persisted_item(
    item: GroupItem, dsk: Any, rename: dict, persisted_groups: dict[Any, Any]
) -> GroupItem:
    """``item`` as an item of the persisted result of its group (a graph of that result
    alone, shared by the items of the group): operations on the persisted map then read
    the group's result, as they read a group not persisted, where an array per item
    made one task per block. The array of the item alone is named apart from the
    item's own: a scheduler that computed the item's own task under that key
    (distributed remembers it while a result that needed it is held) would be given
    another task for the same key, which distributed warns may cause failures and
    deadlocks."""
    group_key = rename.get(item.group_key, item.group_key)
    if group_key not in persisted_groups:
        persisted_groups[group_key] = _graph.group_layer(_needed(dsk, [group_key]))
    name = f"{rename.get(item.call[0], item.call[0])}-persisted"
    call = (name, _pick, (_graph.ref(group_key), item.position))
    layer = persisted_groups[group_key]
    return GroupItem(group_key, layer, item.position, item.shape, item.dtype, call)
