"""Element-wise operations store to store, median and best of several runs.

For ``multiply(t, t)``, ``pow(t, 2)`` and ``add(t, t)`` on a featomic-like map, times

* metatensor-dask: ``open_zarr -> op -> to_zarr`` (default codecs: bytes + crc32c);
* plain dask: ``da.from_zarr -> op -> to_zarr`` on every values array of the same
  store, same chunks, written without compression (``compressors=None``);
* metatensor: ``load -> op -> save`` of the same data as an ``.mts`` file.

Each run is timed in wall-clock seconds and in CPU seconds of the process (all its
threads, user + system: on a shared machine the steadier figure); the three kinds run
one after the other for each operation, so that ours and plain dask see the same load.
Outputs are deleted after each run; the process first runs one warm-up operation (the
first large allocations of a process are slower). Run as a script (not collected by
pytest)::

    .venv/bin/python benchmarks/elementwise_throughput.py \\
        SIZE_MIB CHUNK REPEATS WORKDIR [--no-metatensor]

e.g. ``2048 64MiB 2 /tmp/ops``; the input stores are made once in ``WORKDIR``.
``--no-metatensor`` leaves metatensor's eager runs out (they take 10x longer).
"""

from __future__ import annotations

import gc
import os
import resource
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


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(size_mib: float, chunk: str, repeats: int, work: str, kinds: tuple[str, ...]) -> None:
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
    functions = dict(zip(KINDS, (ours, plain, eager), strict=True))
    times: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    start_load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    for run in range(repeats):
        for op in OPERATIONS:
            for kind in kinds:
                start, start_cpu = time.perf_counter(), _cpu_seconds()
                functions[kind](op)
                seconds, cpu_seconds = time.perf_counter() - start, _cpu_seconds() - start_cpu
                clean()
                times.setdefault((op, kind), []).append(seconds)
                cpu.setdefault((op, kind), []).append(cpu_seconds)
                print(
                    f"run {run} {op:8s} {kind:16s} {seconds:7.2f} s  {cpu_seconds:7.2f} s CPU",
                    flush=True,
                )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\n{size_mib:g} MiB, chunks {chunk}, median of {repeats}, "
        f"load average {start_load} at the start, {load} at the end"
    )
    print(
        "| operation | "
        + " | ".join(f"{kind} (CPU)" for kind in kinds)
        + " | mtd / plain throughput, median (best) |"
    )
    print("|---|" + "---|" * len(kinds) + "---|")
    for op in OPERATIONS:
        cells = [
            f"{statistics.median(times[op, kind]):.2f} s ({statistics.median(cpu[op, kind]):.2f} s)"
            for kind in kinds
        ]
        ours_s, plain_s = (times[op, kind] for kind in KINDS[:2])
        ratio = statistics.median(plain_s) / statistics.median(ours_s)
        best = min(plain_s) / min(ours_s)
        print(f"| `{op}` | {' | '.join(cells)} | {ratio:.0%} ({best:.0%}) |")


if __name__ == "__main__":
    arguments = [a for a in sys.argv[1:] if a != "--no-metatensor"]
    if len(arguments) != 4:
        sys.exit(
            "usage: elementwise_throughput.py SIZE_MIB CHUNK REPEATS WORKDIR [--no-metatensor] "
            "(e.g. 2048 64MiB 2 /tmp/ops)"
        )
    chosen = KINDS[:2] if "--no-metatensor" in sys.argv else KINDS
    main(float(arguments[0]), arguments[1], int(arguments[2]), arguments[3], chosen)
