"""What a worker of a ``distributed`` cluster needs to compute the batches of
:func:`~metatensor_dask.io.ingest.write_batches`: the user's function, unpickled once per
process (:func:`call`), and the size of metatensor-core results.

Light on purpose (no zarr, no writer): a worker imports it when it receives its first
batch and starts computing at once. The writer's modules (zarr among them: 0.13 to 0.18 s
of imports) are imported by a thread of their own that the first batch of the process
starts (:func:`call`), while the batch computes. Left to the task appending the batch,
they were imported in the worker's event loop when that task arrived, which the
scheduler sends only once the batch is computed: every other worker's commit waited
for them (0.2 to 0.3 s at the start of each run, on a 2-worker cluster).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dask.sizeof import sizeof

__all__ = ["Shipped", "call"]


@dataclass(frozen=True)
class Shipped:
    """A pickled function (a copy between workers copies its bytes only)."""

    digest: str
    data: bytes


#: The functions unpickled in this process, by digest, the latest last (a few kept).
_UNPICKLED: dict[str, Callable[[list[Any]], Any]] = {}
_UNPICKLED_LOCK = threading.Lock()
_KEPT = 4

#: The module of the task appending a batch, imported ahead by :func:`call`.
WRITER = "metatensor_dask.io.ingest_batch"


def _import_writer() -> None:
    # an error is left to the task appending the batch, which imports it again and fails
    # with it (raised in this thread, it would only be printed)
    with contextlib.suppress(Exception):
        importlib.import_module(WRITER)


def call(function: Shipped, items: list[Any]) -> Any:
    """The batch ``items`` computed by ``function``, unpickled once in this process; the
    first call also starts importing the writer (see the module's documentation)."""
    with _UNPICKLED_LOCK:
        if not _UNPICKLED and WRITER not in sys.modules:
            threading.Thread(target=_import_writer, name="import-writer", daemon=True).start()
        found = _UNPICKLED.get(function.digest)
        if found is None:
            from distributed.protocol.pickle import loads

            found = _UNPICKLED[function.digest] = loads(function.data)
            while len(_UNPICKLED) > _KEPT:
                del _UNPICKLED[next(iter(_UNPICKLED))]
    return found(items)


def _block_bytes(block: Any) -> int:
    found = int(getattr(block.values, "nbytes", 0))
    return found + sum(_block_bytes(gradient) for _, gradient in block.gradients())


def _register_sizes() -> None:
    """Tell dask (and distributed's scheduler) the size of metatensor-core results: the
    bytes of their arrays. Taking a batch for a few bytes, the scheduler would account
    for its memory wrongly, and would move tasks needing it to idle workers (work
    stealing), copying the whole batch."""
    import metatensor

    @sizeof.register(metatensor.TensorMap)
    def tensor_bytes(tensor: Any) -> int:
        return sum(_block_bytes(block) for block in tensor.blocks())

    @sizeof.register(metatensor.TensorBlock)
    def block_bytes(block: Any) -> int:
        return _block_bytes(block)


# Registered now when metatensor is imported already: a TensorMap measured before (a
# worker's first results) made dask cache the size of any object for its type, which a
# lazy registration would not replace. This module is imported (to unpickle ``call``)
# before a worker computes its first batch.
sizeof.register_lazy("metatensor", _register_sizes)
if "metatensor" in sys.modules:
    _register_sizes()
