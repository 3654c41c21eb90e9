"""What the calling process of :func:`~metatensor_dask.io.ingest.write_batches` sends to
the workers of a ``distributed`` cluster to compute batches: the user's function (once),
and each batch's computation, pinned to a worker.

The function and the first batch's items are checked here before anything else is
done (:func:`shipped`, :func:`check_sendable`); the batches are sent once the store is
checked and created, their commits with them (:mod:`.ingest_cluster`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from typing import Any

from ..errors import MetatensorDaskError
from .ingest_schedule import Batches
from .ingest_worker import Shipped, call

__all__ = ["check_sendable", "compute", "send_function", "shipped", "start"]


def shipped(function: Callable[[list[Any]], Any]) -> bytes:
    """``function`` pickled as distributed sends it to its workers, before anything is
    written: a function that can not be sent (it refers to an object that does not
    pickle, such as a featomic calculator made outside of it) is refused by name."""
    from distributed.protocol.pickle import dumps

    try:
        return dumps(function)
    except Exception as error:
        raise MetatensorDaskError(
            f"the function given to write_batches ({function_name(function)}) can not be sent "
            f"to the workers of the distributed client: pickling it failed "
            f"({type(error).__name__}: {error}); it refers to an object that can not be "
            "pickled, such as a featomic calculator created outside of it: create such "
            "objects in the function (once per worker with functools.cache), or in a "
            "module that the workers import"
        ) from None


def send_function(client: Any, function: bytes) -> Any:
    """The task whose result is ``function`` (pickled, see :func:`shipped`), which every
    batch takes: submitted with each batch, it would be pickled, sent and unpickled
    again every time, with every object it refers to (the list of all structures,
    say). Each worker unpickles it once (see :func:`.ingest_worker.call`), and a worker
    lost with it gets it again from that task."""
    digest = hashlib.blake2b(function, digest_size=16).hexdigest()
    return client.submit(Shipped, digest, function, key=f"write_batches-function-{digest}")


def check_sendable(items: list[Any], size: int, index: int, committed: int | None) -> None:
    """Refuse the batch ``index`` (of ``size`` items) when its items do not pickle, so
    can not reach a worker (distributed's own error names neither the batch nor the
    remedy); ``committed``: the batches committed, ``None`` before anything is written."""
    from distributed.protocol.pickle import dumps

    try:
        dumps(items[index * size : (index + 1) * size])
    except Exception as error:
        written = (
            "nothing was written"
            if committed is None
            else f"the {committed} batches committed stay (resume=True continues after them)"
        )
        raise MetatensorDaskError(
            f"batch {index} (first item {items[index * size]!r}) can not be sent to the "
            f"workers of the distributed client: pickling its items failed "
            f"({type(error).__name__}: {error}); on a cluster every item must pickle: pass "
            f"items that do (indices, file names) and make the objects in the function; "
            f"{written}"
        ) from None


def function_name(function: Any) -> str:
    """The name of ``function`` (the tasks of the batches are named after it)."""
    return getattr(function, "__qualname__", None) or type(function).__name__


def compute(client: Any, batches: Batches, index: int, worker: str | None, function: Any) -> Any:
    """The computation of batch ``index`` on ``worker``, and there only: work stealing
    would move it to an idle worker, and its commit (pinned to ``worker``) would then
    fetch the whole batch from there."""
    pin = {"workers": [worker], "allow_other_workers": False} if worker else {}
    key = f"{function_name(batches.function)}-{uuid.uuid4().hex}"
    try:
        return client.submit(call, function, batches.batch(index), key=key, **pin)
    except Exception:
        # when the batch's items are what could not be sent, say so with the remedy
        check_sendable(batches.items, batches.size, index, batches.committed)
        raise


def start(client: Any, batches: Batches, function: bytes) -> None:
    """The ``function`` (pickled, see :func:`shipped`) sent, and the first window of
    batches computed on the workers of ``client``, each worker its share: their
    commits are submitted by :func:`.ingest_cluster.on_cluster`. No batch is started
    without workers yet.

    Every worker, and every one joining later, first loads metatensor-core's library
    (see :mod:`._core_library_plugin`): the items of a batch may be metatensor
    objects, which a worker unpickles outside the threads computing batches."""
    if batches.function_task is None:
        from ._core_library_plugin import LoadCoreLibrary

        client.register_plugin(LoadCoreLibrary())
        batches.function_task = send_function(client, function)
    workers = client.nthreads()
    while workers and batches.wanted(sum(workers.values())):
        worker = batches.next_worker(workers)
        future = compute(client, batches, batches.submitted, worker, batches.function_task)
        batches.started(future, worker)
