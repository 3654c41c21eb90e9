"""Element-wise operations store to store, median and best of several runs.

For ``multiply(t, t)``, ``pow(t, 2)`` and ``add(t, t)`` on a featomic-like map, times

* metatensor-dask: ``open_zarr -> op -> to_zarr`` (default codecs: bytes + crc32c);
* plain dask: ``da.from_zarr -> op -> to_zarr`` on every values array of the same
  store, same chunks, written without compression (``compressors=None``);
* metatensor: ``load -> op -> save`` of the same data as an ``.mts`` file.

Outputs are deleted after each run; the process first runs one warm-up operation (the
first large allocations of a process are slower). Run as a script (not collected by
pytest)::

    .venv/bin/python benchmarks/elementwise_throughput.py SIZE_MIB CHUNK REPEATS WORKDIR

e.g. ``2048 64MiB 2 /tmp/ops``; the input stores are made once in ``WORKDIR``.
"""

from __future__ import annotations

import gc
import os
import shutil
import statistics
import sys
import time

import dask
import dask.array as da
import metatensor
import zarr
from bench_support import ELEMENTWISE_OPERATIONS as OPERATIONS
from bench_support import featomic_like, samples_per_block

import metatensor_dask as mtd

N_BLOCKS = 2
KINDS = ("metatensor-dask", "plain dask", "metatensor")


def _values_paths(group: zarr.Group, prefix: str = "") -> list[str]:
    paths = []
    for key, child in group.members():
        if isinstance(child, zarr.Array):
            if key == "values":
                paths.append(prefix + key)
        else:
            paths.extend(_values_paths(child, f"{prefix}{key}/"))
    return paths


def main(size_mib: float, chunk: str, repeats: int, work: str) -> None:
    os.makedirs(work, exist_ok=True)
    source, mts = os.path.join(work, "input.zarr"), os.path.join(work, "input.mts")
    if not os.path.exists(mts):
        tensor = featomic_like(samples_per_block(size_mib, N_BLOCKS), N_BLOCKS)
        with dask.config.set({"metatensor_dask.chunk-size": chunk}):
            mtd.from_metatensor(tensor).to_zarr(source)
        metatensor.save(mts, tensor)
        del tensor

    def ours(op: str) -> None:
        OPERATIONS[op][0](mtd.open_zarr(source)).to_zarr(os.path.join(work, "out.zarr"))

    def plain(op: str) -> None:
        group = zarr.open_group(source, mode="r")
        targets = [
            OPERATIONS[op][2](da.from_zarr(group[path])).to_zarr(
                os.path.join(work, f"plain-{i}.zarr"), compute=False, compressors=None
            )
            for i, path in enumerate(_values_paths(group))
        ]
        dask.compute(*targets)

    def eager(op: str) -> None:
        metatensor.save(os.path.join(work, "out.mts"), OPERATIONS[op][1](metatensor.load(mts)))

    def clean() -> None:
        for name in os.listdir(work):
            if name.startswith(("out", "plain-")):
                path = os.path.join(work, name)
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        gc.collect()

    ours("add")
    clean()
    times: dict[tuple[str, str], list[float]] = {}
    for run in range(repeats):
        for op in OPERATIONS:
            for kind, function in zip(KINDS, (ours, plain, eager), strict=True):
                start = time.perf_counter()
                function(op)
                seconds = time.perf_counter() - start
                clean()
                times.setdefault((op, kind), []).append(seconds)
                print(f"run {run} {op:8s} {kind:16s} {seconds:7.2f} s", flush=True)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n{size_mib:g} MiB, chunks {chunk}, median of {repeats}, load average {load}")
    print(
        "| operation | metatensor-dask | plain dask | metatensor "
        "| mtd / plain throughput, median (best) |"
    )
    print("|---|---|---|---|---|")
    for op in OPERATIONS:
        a, b, c = (statistics.median(times[op, kind]) for kind in KINDS)
        best = min(times[op, KINDS[1]]) / min(times[op, KINDS[0]])
        print(f"| `{op}` | {a:.2f} s | {b:.2f} s | {c:.2f} s | {b / a:.0%} ({best:.0%}) |")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(
            "usage: elementwise_throughput.py SIZE_MIB CHUNK REPEATS WORKDIR "
            "(e.g. 2048 64MiB 2 /tmp/ops)"
        )
    main(float(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4])
