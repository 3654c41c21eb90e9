"""Workers giving their free heap memory back to the system."""

import sys
import time

import psutil
import pytest
from distributed import Client, LocalCluster

from metatensor_dask.execution._trim import TrimHeap


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_workers_trim_their_heap_periodically():
    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address="127.0.0.1:0") as cluster,
        Client(cluster) as client,
    ):
        (worker,) = cluster.workers.values()
        client.register_plugin(TrimHeap(interval=0.05))
        assert "metatensor-dask-trim-heap" in worker.periodic_callbacks
        process = psutil.Process()
        # blocks freed in the middle of the heap (one in a hundred kept, so that the
        # heap's top cannot shrink) stay resident until trimmed
        blocks = [bytearray(1000) for _ in range(200_000)]
        kept = blocks[::100]
        before = process.memory_info().rss
        del blocks
        deadline = time.monotonic() + 10
        while process.memory_info().rss > before - 100 * 2**20 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert process.memory_info().rss < before - 100 * 2**20
        assert len(kept) == 2000
        client.unregister_worker_plugin(TrimHeap.name)
        assert "metatensor-dask-trim-heap" not in worker.periodic_callbacks
