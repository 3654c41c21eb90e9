"""Unusual data through appends, ``write_batches``, ``convert --append`` and the
operations on maps opened from the stores they write, against metatensor."""

from __future__ import annotations

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.execution.cli import main


def _labels(names: list[str], rows: list[list[int]]) -> metatensor.Labels:
    return metatensor.Labels(names, np.array(rows, dtype=np.int32).reshape(-1, len(names)))


def _source(keys: list[int], samples: list[list[list[int]]], names: list[str]):
    """A map of one block per key of ``keys``, whose samples (``names``) are the rows of
    ``samples`` for that key, with a positions gradient of one row per sample."""
    blocks = []
    for rows in samples:
        values = np.arange(len(rows) * 2, dtype=np.float64).reshape(-1, 2) - 1.5
        block = metatensor.TensorBlock(values, _labels(names, rows), [], _labels(["p"], [[0], [1]]))
        gradient_rows = [[i, rows[i][names.index("system")]] for i in range(len(rows))]
        gradient = metatensor.TensorBlock(
            np.ones((len(rows), 3, 2)),
            _labels(["sample", "system"], gradient_rows),
            [_labels(["xyz"], [[0], [1], [2]])],
            block.properties,
        )
        block.add_gradient("positions", gradient)
        blocks.append(block)
    return metatensor.TensorMap(_labels(["k"], [[k] for k in keys]), blocks)


@pytest.mark.parametrize("names", [["system", "atom"], ["atom", "system"]])
def test_convert_of_sources_repeating_a_sample_names_the_sample_and_the_convert_remedy(
    tmp_path, capsys, names
):
    """Sources holding the same sample (two featomic files, both numbered from 0,
    appended without --renumber) were refused with the remedy of Python's ``join``,
    ``pass add_dimension="tensor"``: no option of ``convert``, and a store whose samples
    have no such dimension refuses it. The message names the sample, its block, both
    sources, and --renumber."""
    first, second = tmp_path / "a.mts", tmp_path / "b.mts"
    metatensor.save(str(first), _source([0, 1], [[[5, 0], [6, 0]], [[0, 0]]], names))
    metatensor.save(str(second), _source([1, 0], [[[1, 1]], [[1, 0], [5, 0]]], names))
    store = tmp_path / "all.zarr"
    stored = _source([0], [[[9, 0]]], names)
    mtd.from_metatensor(stored).to_zarr(store, chunks=2)
    before = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}

    assert main(["convert", str(first), str(second), str(store), "--append", "--quiet"]) == 1

    error = capsys.readouterr().err
    assert f"the sources can not be appended together, from {second} on" in error
    entry = dict(zip(names, [5, 0], strict=True))
    assert f"the block (k=0) of {second} has the sample {entry}, which {first} has too" in error
    assert "--renumber system" in error
    assert "add_dimension" not in error
    assert {p: p.read_bytes() for p in store.rglob("*") if p.is_file()} == before
    assert mtd.verify(store).ok
    assert metatensor.equal(mtd.to_metatensor(mtd.open_zarr(store)), stored)
