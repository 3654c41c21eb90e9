"""write_batches loads metatensor-core's library before its batches run in parallel.

metatensor-core 0.2 loads its compiled library on first use and publishes it before it
declares its functions' signatures: a thread making metatensor objects meanwhile got
functions returning ints for pointers and crashed the process (SIGSEGV, or ``TypeError:
expected LP_mts_labels_t instance, got int``), seen in the kill tests of write_batches
on a loaded machine. Reproduced by hand (four threads making Labels in a fresh process,
``sys.setswitchinterval(1e-6)``): 4 crashes in 20 processes, none with the library
loaded first. Whether the crash happens depends on thread switches; what these tests
check is its cause: no batch starts before the library is loaded, in a fresh process
on threads and in fresh worker processes of a cluster.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import sys
import dask, metatensor, numpy as np
import metatensor_dask as mtd
from metatensor._c_lib import _get_library

def batch(items):
    # imported here: a reference from outside would be pickled with the function by
    # value to the workers, a copy of metatensor's loader rather than theirs
    from metatensor._c_lib import _get_library as workers_loader

    loaded = workers_loader._cached_dll is not None
    labels = metatensor.Labels(["system"], np.array([[i] for i in items], np.int32))
    block = metatensor.TensorBlock(
        np.full((len(items), 1), float(loaded)), labels, [], metatensor.Labels.range("p", 1)
    )
    return metatensor.TensorMap(metatensor.Labels.range("k", 1), [block])

def loaded_in_every_batch(path):
    values = mtd.open_zarr(path).block(0).values.compute()
    return bool(values.size) and bool((values == 1.0).all())

path, where = sys.argv[1], sys.argv[2]
assert _get_library._cached_dll is None, "loaded before write_batches: nothing tested"
if where == "threads":
    with dask.config.set(scheduler="threads", num_workers=4):
        mtd.write_batches(batch, list(range(8)), path, batch_size=1, quiet=True)
else:
    from distributed import Client, LocalCluster
    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=True, dashboard_address="127.0.0.1:0"
    ) as cluster, Client(cluster):
        mtd.write_batches(batch, list(range(4)), path, batch_size=1, quiet=True)
print("loaded in every batch" if loaded_in_every_batch(path) else "a batch ran first")
"""


@pytest.mark.xdist_group("clusters")
@pytest.mark.parametrize("where", ["threads", "cluster"])
def test_no_batch_runs_before_metatensor_core_is_loaded(tmp_path, where):
    finished = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "t.zarr"), where],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout.strip().splitlines()[-1] == "loaded in every batch"
