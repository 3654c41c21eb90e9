"""Races between threads, checked by the precondition each fix establishes (the races
themselves show only now and then, on a loaded machine or a node of many threads).

write_batches computes the first batch of a process alone: libraries set themselves up
on first use without a lock (featomic loads its compiled library and publishes it
before declaring its functions' signatures: ``ctypes.ArgumentError: expected
LP_featomic_calculator_t instance instead of int`` in batches computed beside the
first one; ase reads its molecules half way), so the batches computed beside the first
one failed now and then, on threads and on the threads of a cluster's worker.

Conversions to metatensor load metatensor-core's library through the loader's lock:
threads converting at once in a fresh process used its functions before their
signatures were declared (``TypeError: expected LP_mts_block_t instance, got int``).
"""

from __future__ import annotations

import subprocess
import sys
import threading

import dask
import numpy as np
import pytest

import metatensor_dask as mtd

#: How long the first batch waits for another one to start beside it.
WAIT = 1.0
#: Added to the values of the first batch when another batch started beside it.
BESIDE = 100.0


class FirstBatchWatch:
    """A batch function whose first call in a process waits for another one to start
    (at most :data:`WAIT`), and marks its values when one did (a copy unpickled by a
    worker records the calls of that worker's threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        self.other_started = threading.Event()

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()

    def __call__(self, items: list[int]) -> mtd.TensorMap:
        with self.lock:
            self.calls += 1
            first = self.calls == 1
        beside = False
        if first:
            beside = self.other_started.wait(WAIT)
        else:
            self.other_started.set()
        return _tensor(items, BESIDE if beside else 0.0)


def _tensor(items: list[int], added: float) -> mtd.TensorMap:
    samples = mtd.Labels(["system"], np.array([[i] for i in items], np.int32))
    values = np.array([[float(i) + added] for i in items])
    block = mtd.TensorBlock(values, samples, [], mtd.Labels.range("p", 1))
    return mtd.TensorMap(mtd.Labels.range("k", 1), [block])


def _stored_values(path) -> list[float]:
    return mtd.open_zarr(path).block(0).values.compute().ravel().tolist()


def test_write_batches_computes_the_first_batch_alone_on_threads(tmp_path):
    with dask.config.set(scheduler="threads", num_workers=4):
        mtd.write_batches(FirstBatchWatch(), list(range(8)), tmp_path / "t.zarr", quiet=True)
    assert _stored_values(tmp_path / "t.zarr") == [float(i) for i in range(8)]


@pytest.mark.xdist_group("serial")
def test_write_batches_computes_the_first_batch_alone_on_a_workers_threads(tmp_path):
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=4,
            processes=False,
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster),
    ):
        mtd.write_batches(FirstBatchWatch(), list(range(8)), tmp_path / "t.zarr", quiet=True)
    assert _stored_values(tmp_path / "t.zarr") == [float(i) for i in range(8)]


CONVERSION = """
import subprocess
import sys
import threading
import numpy as np
import metatensor
from metatensor._c_lib import _get_library
import metatensor_dask as mtd
from metatensor_dask.io import _core_library, convert

assert _get_library._cached_dll is None, "loaded already: nothing tested"
labels = mtd.Labels(["system"], np.array([[0], [1]], np.int32))
converted = []
with _core_library._LOCK:  # as while another thread loads the library
    thread = threading.Thread(target=lambda: converted.append(convert.to_metatensor(labels)))
    thread.start()
    thread.join(1.0)
    loaded = _get_library._cached_dll is not None
    print("loaded meanwhile" if loaded or not thread.is_alive() else "waited for the load")
thread.join()
assert converted[0].values.tolist() == [[0], [1]]
"""


def test_conversions_wait_for_metatensor_core_to_be_loaded_by_one_thread():
    """Threads converting at once in a fresh process crashed it (metatensor-core's
    library used before its functions' signatures were declared)."""
    finished = subprocess.run(
        [sys.executable, "-c", CONVERSION], capture_output=True, text=True, timeout=120
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout.split() == ["waited", "for", "the", "load"]
