"""Which CRC checks of metatensor file members a computation carries.

A values member of a metatensor file read in several chunks
(:func:`metatensor_dask.io._mts_integrity.values_graph`) has, in the graph layer of
its dask array (named ``mts-load-<token>``), a read task per chunk
(``("mts-read-<token>", i)``) and a check task (``"mts-check-<token>"``) that combines
the chunks' CRC-32s. The check is no key of any array: a computation runs it only when
it asks for it, which it should when it reads every chunk of the member.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import dask.array as da
from dask.core import flatten

__all__ = ["CHECK", "LOAD", "READ", "member_checks"]

LOAD, READ, CHECK = "mts-load-", "mts-read-", "mts-check-"
"""The prefixes of the names of a member's array, its read tasks and its check."""


def member_checks(arrays: Iterable[Any]) -> list[str]:
    """The keys of the CRC checks of the members of several chunks that ``arrays`` read
    whole.

    An array read from a metatensor file by :func:`metatensor_dask.load` reads every
    chunk of its member when computed whole, and so does an array derived from it by
    an operation on whole blocks (``multiply``, a reduction, ``keys_to_*``): their
    checks belong to the computation. An array that reads part of a member only (a
    slice, one chunk) can not check it: its member is not listed. Which chunks an
    array reads is found from its graph, culled to the array's keys.
    """
    keys: dict[str, None] = {}
    for array in arrays:
        if not isinstance(array, da.Array):
            continue
        graph: Any = array.__dask_graph__()
        loads = [name for name in getattr(graph, "layers", {}) if name.startswith(LOAD)]
        if array.name in loads:  # a member computed whole: every chunk read
            loads, culled = [array.name], graph
        elif loads:
            culled = graph.cull(set(flatten(array.__dask_keys__())))
        for name in loads:
            check = CHECK + name[len(LOAD) :]
            if check in graph.layers[name] and _reads(culled, name) == _reads(graph, name):
                keys[check] = None
    return list(keys)


def _reads(graph: Any, name: str) -> int:
    """How many read tasks of the member whose array is ``name`` ``graph`` holds (its
    layer renamed by culling included)."""
    read = READ + name[len(LOAD) :]
    return sum(
        isinstance(key, tuple) and key[0] == read
        for layer_name, layer in graph.layers.items()
        if layer_name == name or layer_name.startswith(name + "-")
        for key in layer
    )
