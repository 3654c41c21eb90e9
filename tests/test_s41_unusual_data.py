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


def _repeating(where: str) -> mtd.TensorMap:
    """A map of one block whose ``where`` (samples, properties, a component, the
    gradient's samples, or keys) are Labels built with ``assume_unique=True`` holding
    an entry twice."""

    def labels(name: str, rows: list[list[int]], repeat: bool) -> mtd.Labels:
        values = np.array(rows, dtype=np.int32).reshape(-1, 1)
        return mtd.Labels([name], values, assume_unique=repeat)

    samples = labels("system", [[0], [1], [0]] if where == "samples" else [[0], [1], [2]], True)
    component = labels("c", [[0], [0]] if where == "component" else [[0], [1]], True)
    properties = labels("p", [[3], [3]] if where == "properties" else [[3], [4]], True)
    block = mtd.TensorBlock(np.ones((3, 2, 2)), samples, [component], properties)
    rows = [[0], [0]] if where == "gradient" else [[0], [2]]
    gradient_samples = mtd.Labels(["sample"], np.array(rows, dtype=np.int32), assume_unique=True)
    block.add_gradient(
        "positions", mtd.TensorBlock(np.ones((2, 2, 2)), gradient_samples, [component], properties)
    )
    blocks = [block, block.copy()] if where == "keys" else [block]
    keys = labels("k", [[0], [0]] if where == "keys" else [[0]], True)
    return mtd.TensorMap(keys, blocks)


_REPEATS = {
    "samples": "the samples of the block (k=0) hold the entry {'system': 0} twice",
    "component": "the component 'c' of the block (k=0) hold the entry {'c': 0} twice",
    "properties": "the properties of the block (k=0) hold the entry {'p': 3} twice",
    "gradient": "the samples of the block (k=0), gradient 'positions' hold the entry "
    "{'sample': 0} twice",
    "keys": "the keys hold the entry {'k': 0} twice",
}


@pytest.mark.parametrize("where", list(_REPEATS))
@pytest.mark.parametrize("how", ["to_zarr", "append", "save"])
def test_labels_built_with_assume_unique_repeating_an_entry_are_not_written(tmp_path, where, how):
    """Labels built with ``assume_unique=True`` that hold an entry twice were written:
    ``to_zarr`` (a write or an append) left a store that ``verify``, and ``open_zarr``
    once it reads those Labels, found damaged ("the Labels 'blocks/0/samples' have
    repeated entries"), and that later appends extended; ``save`` a file that neither
    metatensor's ``load`` nor this package's could read. Each is refused before anything
    is written, naming the Labels, the entry and the remedy."""
    tensor = _repeating(where)
    target = tmp_path / ("out.mts" if how == "save" else "out.zarr")
    with pytest.raises(mtd.MetatensorDaskError, match="nothing was written") as error:
        if how == "save":
            mtd.save(target, tensor)
        else:
            tensor.to_zarr(target, **({"append_dim": "samples"} if how == "append" else {}))
    assert _REPEATS[where] in str(error.value)
    assert "without assume_unique=True" in str(error.value)
    assert not target.exists()


def test_write_batches_refuses_a_batch_repeating_an_entry(tmp_path):
    """``write_batches`` of a function returning such Labels stored them: the batch is
    refused, the store left without it."""
    store = tmp_path / "out.zarr"
    with pytest.raises(mtd.MetatensorDaskError, match=r"batch 0 .*hold the entry"):
        mtd.write_batches(_batch_repeating_samples, [0, 1], store, batch_size=2, quiet=True)
    assert mtd.verify(store).problems == [
        "the store is incomplete: a write stopped before the end (0 of 1 batch committed); "
        "finish it with `write_batches(..., resume=True)` and the same arguments"
    ]


def _batch_repeating_samples(items: list[int]) -> mtd.TensorMap:
    return _repeating("samples")
