"""What a worker of a ``distributed`` cluster needs to compute the batches of
:func:`~metatensor_dask.io.ingest.write_batches`: the user's function, unpickled once per
process (:func:`call`), and the size of metatensor-core results.

Light on purpose (no zarr, no writer): a worker imports it when it receives its first
batch and starts computing at once. The writer's modules (zarr among them: 0.13 to 0.18 s
of imports) are imported when the task appending that batch arrives, in the worker's
event loop: the scheduler sends that task once the batch is computed, while the
worker's thread goes on to its next batch. Importing them in a thread of their own
while the first batch computes raced with the user's function importing zarr itself
(``KeyError: 'zarr'`` from Python's import machinery), and importing them in the
worker's thread after its first batch gained nothing measurable.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import Any

from dask.sizeof import sizeof

from ._core_library import load_core_library
from ._first_call import FirstCallAlone

__all__ = ["KILLED", "KILLED_BESIDE", "Shipped", "call", "killed"]


@dataclass(frozen=True)
class Shipped:
    """A pickled function (a copy between workers copies its bytes only)."""

    digest: str
    data: bytes


#: The functions unpickled in this process, by digest, the latest last (a few kept).
_UNPICKLED: dict[str, FirstCallAlone] = {}
_UNPICKLED_LOCK = threading.Lock()
_KEPT = 4


def call(function: Shipped, items: list[Any]) -> Any:
    """The batch ``items`` computed by ``function``, unpickled once in this process,
    after metatensor-core's library is loaded (by one thread of the worker: see
    :mod:`._core_library`); its first call in this process runs alone (see
    :mod:`._first_call`)."""
    load_core_library()
    with _UNPICKLED_LOCK:
        found = _UNPICKLED.get(function.digest)
        if found is None:
            from distributed.protocol.pickle import loads

            found = _UNPICKLED[function.digest] = FirstCallAlone(loads(function.data))
            while len(_UNPICKLED) > _KEPT:
                del _UNPICKLED[next(iter(_UNPICKLED))]
    return found(items)


#: Why the workers computing a batch die each time, and what to do.
KILLED = (
    "the function kills the process that computes this batch, by exceeding the memory "
    "limit of the workers (make the batches smaller or the memory of the workers "
    "larger), a crash in compiled code or an exit"
)

#: The same, for a batch that distributed stopped (``KilledWorker``): it counts a death
#: against every task the dead worker held and had not finished, so the batch that
#: kills may be a later one sent to the same worker.
KILLED_BESIDE = KILLED.replace(
    "computes this batch", "computes this batch or a later one computed by the same worker"
)


def killed(deaths: int, allowed: int) -> None:
    """Fail a batch whose workers died ``deaths`` times while computing it, more than
    distributed's ``allowed`` failures."""
    from ..errors import MetatensorDaskError

    raise MetatensorDaskError(
        f"the worker computing it died {deaths} times (more than "
        f"distributed.scheduler.allowed-failures={allowed}): {KILLED}"
    )


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
