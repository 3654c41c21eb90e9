"""Reductions over samples written store to store hold a few chunks at a time, whatever
the store's size.

Reducing atoms over ``"atom"`` leaves a gradient as large as the input's, in chunks
cut between systems (some of a few rows, where a system spans two input chunks); the
write rechunks it to the stored chunks, so that neighbouring storing tasks share
chunks. The write ends with one task that needs every storing task: dask's static
order walked back from it and ran the storing tasks sorted by how many tasks each
needs, scattered over the arrays, and every gap between the tasks run held chunks:
the results held grew with the store.

A fresh process builds two stores, the second eight times the first, reduces each and
writes the result to a store, counting the bytes of the task results that the
scheduler holds at any time (a scheduler callback). The arrays that are data of the
graph itself (which input row goes to which output row, built from the labels) are not
counted: they are held with the graph, as the labels are, and grow with the samples;
counted with the results, they made a bound that held at one run and failed at the next,
as the order of tasks of equal priority changes with their keys."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import dask, dask.array as da, numpy as np
    from dask.callbacks import Callback
    import metatensor_dask as mtd

    CHUNK = "8KiB"

    def labels(names, values):
        return mtd.Labels(names, np.asarray(values, dtype=np.int32).reshape(-1, len(names)))

    def store(path, n):
        index = np.arange(n)
        rng = da.random.default_rng(0)
        properties = labels(["p"], np.arange(8))
        samples = labels(["system", "atom"], np.stack([index // 8, index % 8], 1))
        block = mtd.TensorBlock(rng.standard_normal((n, 8)), samples, [], properties)
        rows = labels(["sample", "system", "atom"], np.stack([index, index // 8, index % 8], 1))
        xyz = [labels(["xyz"], np.arange(3))]
        gradient = mtd.TensorBlock(rng.standard_normal((n, 3, 8)), rows, xyz, properties)
        block.add_gradient("positions", gradient)
        mtd.TensorMap(labels(["k"], [0]), [block]).to_zarr(path, chunks=CHUNK)
        return mtd.open_zarr(path)

    class Held(Callback):
        "The most bytes of arrays among the results the scheduler holds."
        def __init__(self):
            super().__init__()
            self.most = 0
        def _start_state(self, dsk, state):
            # the graph's own data (index arrays built from the labels), held with it
            self.literals = set(state["cache"])
        def _posttask(self, key, result, dsk, state, id):
            held = sum(
                v.nbytes for k, v in state["cache"].items()
                if isinstance(v, np.ndarray) and k not in self.literals
            )
            self.most = max(self.most, held)

    folder, reductions = sys.argv[1], sys.argv[2:]
    held = {}
    with dask.config.set({"metatensor_dask.chunk-size": CHUNK}, scheduler="sync"):
        head = store(f"{folder}/head.zarr", 8)
        for n in (1000, 8000):
            tensor = store(f"{folder}/{n}.zarr", n)
            for reduction in reductions:
                reduced = getattr(mtd, f"{reduction}_over_samples")(tensor, "atom")
                write = reduced.to_zarr(f"{folder}/{reduction}-{n}.zarr", compute=False)
                counter = Held()
                with counter:
                    dask.compute(write)
                held[f"{reduction}-{n}"] = counter.most
                # appended after a first system, its "system" renumbered after it
                target = f"{folder}/{reduction}-{n}-appended.zarr"
                reduced_head = getattr(mtd, f"{reduction}_over_samples")(head, "atom")
                reduced_head.to_zarr(target, chunks=CHUNK)
                append = reduced.to_zarr(
                    target, append_dim="samples", renumber={"system": "next"}, compute=False
                )
                counter = Held()
                with counter:
                    dask.compute(append)
                held[f"{reduction}-{n}-appended"] = counter.most
    print(json.dumps(held))
    """
)

REDUCTIONS = ["sum", "var"]


@pytest.fixture(scope="module")
def held(tmp_path_factory) -> dict[str, int]:
    folder = tmp_path_factory.mktemp("reductions")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(folder), *REDUCTIONS],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("appended", [False, True], ids=["written", "appended"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_results_held_while_writing_do_not_grow_with_the_store(held, reduction, appended):
    end = "-appended" if appended else ""
    small, large = held[f"{reduction}-1000{end}"], held[f"{reduction}-8000{end}"]
    # the results of a few tasks per chunk: about the same on a store eight times larger
    # (up to twice as many, as the order of tasks of equal priority varies from run to
    # run); before the storing tasks were chained in the order of the rows, 6 to 9
    # times as many were held
    assert large < 3 * small, (small, large)
