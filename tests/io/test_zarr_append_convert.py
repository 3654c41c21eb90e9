"""``metatensor-dask convert a.mts b.mts ... out.zarr --append --renumber system``:
the files concatenated along samples, each numbered after the systems stored, into a
(sharded, chunked) store that later appends extend with its own codecs."""

from __future__ import annotations

import json

import metatensor
import numpy as np
from test_zarr_append import assert_equal_to_join, select, shifted
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.execution.cli import main


def _largest_system(batches: list[metatensor.TensorMap]) -> int:
    found = [int(s) for batch in batches for block in batch for s in block.samples.column("system")]
    return max(found, default=-1)


def test_convert_appends_files_with_renumbering(tmp_path):
    files = [
        make_metatensor(0, nested=False, dtype=np.float32),
        select(make_metatensor(1, nested=False, dtype=np.float32), [(6, 8), (1, 1)]),
        make_metatensor(2, nested=False, dtype=np.float32, n_samples=(5, 7, 0)),
    ]
    paths = []
    for i, tensor in enumerate(files):
        paths.append(str(tmp_path / f"{i}.mts"))
        metatensor.save(paths[-1], tensor)
    out = tmp_path / "all.zarr"
    common = ["--append", "--renumber", "system", "-q"]
    assert (
        main(["convert", *paths[:2], str(out), *common, "--chunks", "4", "--shard-chunks", "2"])
        == 0
    )
    # another run, other settings: the store's are kept
    assert main(["convert", paths[2], str(out), *common, "--shard-chunks", "3"]) == 0
    expected: list[metatensor.TensorMap] = []
    for tensor in files:
        expected.append(shifted(tensor, _largest_system(expected) + 1))
    report = mtd.verify(out)
    assert report.ok, report.problems
    assert_equal_to_join(mtd.open_zarr(out), expected)
    nodes = json.loads((out / "zarr.json").read_text())["consolidated_metadata"]["metadata"]
    for i in range(3):
        values = nodes[f"blocks/{i}/values"]
        assert values["codecs"][0]["name"] == "sharding_indexed"
        assert values["chunk_grid"]["configuration"]["chunk_shape"][0] == 8
