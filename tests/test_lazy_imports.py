"""What importing the package costs: the public names are imported on first use, and a
worker writing batches to a store (``write_batches``, the first batch, which creates
the store, included) never imports ``dask.array`` (which imports xarray and pandas),
the operations or the dask readers.

Each check runs in a fresh interpreter, where nothing is imported yet.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import metatensor_dask as mtd

# LocalClusters of worker processes: one such test at a time (2 cores)
pytestmark = pytest.mark.xdist_group("serial")

#: Imported by ``dask.array`` (xarray and pandas when installed), never by an append.
HEAVY = ["dask.array", "xarray", "pandas"]


def _run(code: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _imported_by(code: str) -> list[str]:
    """The modules of ``HEAVY`` and of this package that ``code`` imports."""
    out = _run(
        f"""
        import sys
        {code}
        print(sorted(m for m in sys.modules if m in {HEAVY!r} or m.startswith("metatensor_dask")))
        """
    )
    return json.loads(out.strip().replace("'", '"'))


def test_the_package_imports_no_dask_array():
    found = _imported_by("import metatensor_dask")
    assert not set(HEAVY) & set(found), found
    assert "metatensor_dask.operations._add" not in found
    assert "metatensor_dask.io.zarr_read" not in found


def test_what_a_worker_imports_to_append_batches():
    found = _imported_by(
        "import metatensor_dask.io.ingest_batch, metatensor_dask.io.ingest_cluster"
    )
    assert not set(HEAVY) & set(found), found
    for module in ("block", "tensor", "_graph", "_collection", "io.zarr_read", "io.zarr_write"):
        assert f"metatensor_dask.{module}" not in found


def test_what_a_worker_imports_to_compute_a_batch():
    """A worker computes its first batch once it has imported ``ingest_worker`` and the
    two small modules it needs (metatensor-core's loader, the first call alone): no
    zarr, no writer (those come with the first append, while the batch computes)."""
    found = _run(
        """
        import sys, metatensor
        import metatensor_dask.io.ingest_worker
        from dask.sizeof import sizeof
        print(sorted(m for m in sys.modules if m == "zarr" or m.startswith("metatensor_dask.io")))
        block = metatensor.TensorBlock(
            values=__import__("numpy").zeros((5, 2)),
            samples=metatensor.Labels.range("s", 5),
            components=[],
            properties=metatensor.Labels.range("p", 2),
        )
        print(sizeof(metatensor.TensorMap(metatensor.Labels.single(), [block])))
        """
    ).split("\n")
    light = [
        "metatensor_dask.io",
        "metatensor_dask.io._core_library",
        "metatensor_dask.io._first_call",
        "metatensor_dask.io.ingest_worker",
    ]
    assert found[0] == str(light), found[0]
    assert found[1] == "80"  # the bytes of its values


#: A metatensor-core batch of 4 rows with positions gradients, by its first item; a
#: file ``STOP`` next to the store makes every batch but the first fail.
_BATCH = """
import os
import numpy as np
import metatensor

def batch(items):
    if items[0] > 0 and os.path.exists(STOP):
        raise RuntimeError("stopped")
    rng = np.random.default_rng(items[0])
    samples = metatensor.Labels(
        ["system", "atom"], np.array([[i // 2, i % 2] for i in range(4)], np.int32)
    )
    properties = metatensor.Labels.range("n", 3)
    block = metatensor.TensorBlock(rng.random((4, 3)), samples, [], properties)
    rows = np.array([[i, i // 2, 0] for i in range(4)], np.int32)
    gradient = metatensor.TensorBlock(
        rng.random((4, 3, 3)),
        metatensor.Labels(["sample", "system", "atom"], rows),
        [metatensor.Labels.range("xyz", 3)],
        properties,
    )
    block.add_gradient("positions", gradient)
    return metatensor.TensorMap(metatensor.Labels.range("key", 1), [block])
"""


def _check_store(path):
    stored = mtd.open_zarr(path)
    assert len(stored.block(0)) == 16
    expected = [np.random.default_rng(first).random((4, 3)) for first in range(0, 8, 2)]
    np.testing.assert_array_equal(stored.block(0).values.compute(), np.concatenate(expected))


def test_a_run_on_threads_imports_no_dask_array(tmp_path):
    """A whole run of metatensor-core batches on threads, the store created by its first
    batch: the process imports none of ``HEAVY``, nor the writer of whole tensors."""
    pytest.importorskip("metatensor")
    store = str(tmp_path / "t.zarr")
    found = _imported_by(
        f"""
        STOP = {str(tmp_path / "stop")!r}
        exec({_BATCH!r})
        import metatensor_dask as mtd
        mtd.write_batches(batch, range(8), {store!r}, batch_size=2, quiet=True)
        """
    )
    assert not set(HEAVY) & set(found), found
    assert "metatensor_dask.io.zarr_plan" in found
    for module in ("block", "tensor", "_graph", "io.zarr_read", "io.zarr_write"):
        assert f"metatensor_dask.{module}" not in found
    _check_store(store)


def test_workers_writing_batches_import_no_dask_array(tmp_path):
    """A run on a cluster stopped after its first batch (the store created by the
    worker), then resumed: the worker process, which wrote every batch of
    metatensor-core results, the first one included, imports none of ``HEAVY``, and the
    store holds every batch."""
    pytest.importorskip("metatensor")
    store = str(tmp_path / "t.zarr")
    stop = tmp_path / "stop"
    code = f"""
        import os, sys
        STOP = {str(stop)!r}
        exec({_BATCH!r})
        from distributed import Client, LocalCluster
        import metatensor_dask as mtd

        if __name__ == "__main__":
            with LocalCluster(
                n_workers=1, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
            ) as cluster:
                with Client(cluster) as client:
                    open(STOP, "w").close()
                    try:
                        mtd.write_batches(batch, range(8), {store!r}, batch_size=2, quiet=True)
                    except mtd.MetatensorDaskError:
                        os.remove(STOP)
                    assert not os.path.exists(STOP), "the first run did not stop"
                    first = client.run(lambda: sorted(sys.modules)).popitem()[1]
                    mtd.write_batches(
                        batch, range(8), {store!r}, batch_size=2, resume=True, quiet=True
                    )
                    print(first)
                    print(client.run(lambda: sorted(sys.modules)).popitem()[1])
    """
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(code))
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    first, imported = (
        json.loads(line.replace("'", '"')) for line in result.stdout.strip().splitlines()[-2:]
    )
    # the first run wrote the first batch on the worker: the store, its blocks whole
    assert not set(HEAVY) & set(first), first
    assert "metatensor_dask.io.zarr_plan" in first
    assert "metatensor_dask.io.ingest_batch" in imported
    assert not set(HEAVY) & set(imported), imported
    assert "metatensor_dask.io.zarr_write" not in imported
    _check_store(store)
