"""Cost of the read-side integrity checks, against a store -> store ``multiply``.

Writes a featomic-like store, then times (best of ``--repeats``):

* ``open``: ``open_zarr`` (the root document, small Labels, digests and row pointers);
* ``samples``: reading and checking every sample Labels array (digest, repeated entries,
  gradient ``"sample"`` column vs row pointer), the work added on first use of samples;
* ``multiply``: ``mtd.multiply(t, t).to_zarr(out)`` from the opened store, which reads
  every chunk through the missing-chunk checks;
* ``verify``: ``mtd.verify(store)``, which reads and checks everything.

Run it on two source trees to compare with a version without the checks::

    PYTHONPATH=src .venv/bin/python benchmarks/zarr_read_checks.py --systems 40
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import dask

import metatensor_dask as mtd
from metatensor_dask.datasets import featomic_like


def _best(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def _all_samples(tensor) -> None:
    def visit(block) -> None:
        block.samples.values  # noqa: B018 - loads and checks the Labels
        for _, gradient in block.gradients():
            visit(gradient)

    for block in tensor.blocks():
        visit(block)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mtd-read-checks-"))
    try:
        source = work / "in.zarr"
        featomic_like(args.systems, 48, chunks="16MiB").to_zarr(source)
        size = sum(p.stat().st_size for p in source.rglob("*") if p.is_file())

        def multiply() -> None:
            tensor = mtd.open_zarr(source)
            shutil.rmtree(work / "out.zarr", ignore_errors=True)
            mtd.multiply(tensor, tensor).to_zarr(work / "out.zarr")

        with dask.config.set(scheduler="threads"):
            timings = {
                "open": _best(lambda: mtd.open_zarr(source), args.repeats),
                "samples": _best(lambda: _all_samples(mtd.open_zarr(source)), args.repeats),
                "multiply": _best(multiply, args.repeats),
                "verify": _best(lambda: mtd.verify(source), args.repeats),
            }
        print(f"store: {size / 2**20:.1f} MiB, {args.systems} systems")
        for name, seconds in timings.items():
            print(f"{name:>9}: {seconds:.3f} s")
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
