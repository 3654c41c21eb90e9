"""metatensor files: metatensor-dask's lazy load and streamed save against metatensor.

Each measurement runs in its own Python process, which reports its wall time and peak
resident memory (``VmHWM`` on Linux, else ``ru_maxrss``); the baseline is a process
that only imports both libraries. The data is featomic-like (float64 values
``(n, 180)``, a ``positions`` gradient of 36 rows per sample with an ``xyz``
component, a ``strain`` gradient of one row per sample with ``xyz_2, xyz_1``
components), so gradients are ~99% of the bytes.

Sizes come from environment variables, so that CI runs this quickly::

    MTD_BENCH_MTS_MIB=512 MTD_BENCH_MTS_CHUNK=16MiB \\
        .venv/bin/python -m pytest benchmarks/bench_mts.py --benchmark-enable -s

``MTD_BENCH_MTS_MIB`` is the file size in MiB (default 8), ``MTD_BENCH_MTS_CHUNK``
metatensor-dask's chunk size (default 16MiB). ``-s`` shows the summary table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import metatensor
import pytest
from bench_support import featomic_like, samples_per_block

SIZE_MIB = float(os.environ.get("MTD_BENCH_MTS_MIB", "8"))
CHUNK_SIZE = os.environ.get("MTD_BENCH_MTS_CHUNK", "16MiB")
N_BLOCKS = 4

_RESULTS: dict[str, dict[str, float]] = {}


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A featomic-like file of about ``SIZE_MIB`` MiB, written by metatensor."""
    tensor = featomic_like(samples_per_block(SIZE_MIB, N_BLOCKS), N_BLOCKS)
    path = tmp_path_factory.mktemp("bench-mts") / "data.mts"
    metatensor.save(path, tensor)
    return path


_PRELUDE = """
import json, resource, sys, time
import dask, metatensor, numpy as np
import metatensor_dask as mtd
dask.config.set({"metatensor_dask.chunk-size": sys.argv[3]})
source, target = sys.argv[1], sys.argv[2]
start = time.perf_counter()
"""

_REPORT = """
seconds = time.perf_counter() - start
try:
    # the high-water mark of this program (ru_maxrss would include the forking parent)
    with open("/proc/self/status") as status:
        peak = next(int(l.split()[1]) for l in status if l.startswith("VmHWM")) / 1024
except OSError:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mib": peak}))
"""

SCRIPTS = {
    "imports only": "",
    "metatensor load": "metatensor.load(source)",
    # reads every value, one chunk at a time, keeping nothing
    "mtd load + compute": """
        tensor = mtd.load(source)
        dask.compute([b.values.sum() for b in tensor] + [
            g.values.sum() for b in tensor for _, g in b.gradients()
        ])
    """,
    "metatensor load + save": "metatensor.save(target, metatensor.load(source))",
    "mtd load + save": "mtd.save(target, mtd.load(source))",
}


def _run(name: str, source: Path, target: Path) -> dict[str, float]:
    code = _PRELUDE + textwrap.dedent(SCRIPTS[name]) + _REPORT
    done = subprocess.run(
        [sys.executable, "-c", code, str(source), str(target), CHUNK_SIZE],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    _RESULTS[name] = result
    return result


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_mts_files(benchmark, data_file, tmp_path, name):
    target = tmp_path / "copy.mts"
    result = benchmark.pedantic(_run, args=(name, data_file, target), rounds=1, iterations=1)
    benchmark.extra_info.update(result, size_mib=data_file.stat().st_size / 2**20)
    if name.endswith("save"):
        # both writers give the same bytes
        assert target.read_bytes() == data_file.read_bytes()


def test_summary(data_file):
    """Print the figures measured above (shown with ``pytest -s``)."""
    size = data_file.stat().st_size / 2**20
    print(f"\n{size:.0f} MiB file, metatensor-dask chunk size {CHUNK_SIZE}")
    for name, result in _RESULTS.items():
        print(f"{name:>24}: {result['seconds']:7.2f} s, peak RSS {result['peak_mib']:7.0f} MiB")
