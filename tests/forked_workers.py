"""Worker processes of LocalClusters forked from a server that imported their modules
once (distributed's ``forkserver`` start method), for test modules that start many.

Started as new interpreters (distributed's default, ``spawn``), each worker process
costs its imports: on 2 loaded cores, a cluster of 2 workers took 5 to 6 s to start and
2 s to close, and a worker killed by a test as long to come back. Forked, a cluster
starts in under a second once the server runs. A forked worker is still a process of
its own (its own pid, killed without cleanup, restarted by its nanny), with the
environment and dask settings its nanny gives it; it imports what the server did not
preload when it unpickles its first task. The memory allocator's variables
(``MALLOC_*``) are those the server started with: a test of the workers' environment
or of a fresh interpreter's first imports keeps distributed's ``spawn``.

One server serves every ``forkserver`` process of the test process: ``forked_process``
asks it to preload modules of its own (metatensor-dask and its race helpers, so that
its race processes cost a fork), which distributed's first ``forkserver`` worker would
replace with its list (dask, distributed, numpy, pandas, ...); the modules asked for
before are kept beside distributed's.
"""

from __future__ import annotations

import contextlib
import multiprocessing.forkserver
from collections.abc import Iterator

import dask

#: The setting that makes distributed fork its worker processes from the server.
FORKED = {"distributed.worker.multiprocessing-method": "forkserver"}


@contextlib.contextmanager
def forked_workers() -> Iterator[None]:
    """Within the block, distributed forks the worker processes it starts (see the
    module docstring)."""
    from distributed.utils import get_mp_context

    server = multiprocessing.forkserver._forkserver
    asked = [name for name in server._preload_modules if name != "__main__"]
    with dask.config.set(FORKED):
        get_mp_context().set_forkserver_preload(sorted({*asked, *server._preload_modules}))
        yield
