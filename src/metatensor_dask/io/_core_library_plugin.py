"""metatensor-core's library loaded by every worker of the cluster that
:func:`~metatensor_dask.io.ingest.write_batches` sends batches to, as the worker joins,
before any of its tasks or data reach it.

A worker unpickles what it receives (the items of a task, a batch fetched from another
worker) in its event loop, outside the threads computing batches: a metatensor-core
map, block or Labels among them is rebuilt by metatensor, whose first use in the
process loads its library without the lock of :func:`._core_library.load_core_library`.
Meanwhile a thread starting a batch loads it through that lock, and one of them could
use the functions that the other had published before declaring their signatures (a
segmentation fault: 2 crashes in 60 fresh processes where a thread unpickled a map while
another loaded the library, with a switch interval of a microsecond and 16 threads).
Loaded by the worker's plugin, the library is loaded once, before anything is
unpickled there.
"""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from ._core_library import load_core_library

__all__ = ["LoadCoreLibrary"]


class LoadCoreLibrary(WorkerPlugin):
    """A worker plugin loading metatensor-core's library (when installed) in each
    worker, as it joins the cluster."""

    name = "metatensor-dask-core-library"
    #: Registered once: the workers of a cluster used again have it already.
    idempotent = True

    def setup(self, worker: Any) -> None:
        """Load metatensor-core's library in the process of ``worker``."""
        load_core_library()
