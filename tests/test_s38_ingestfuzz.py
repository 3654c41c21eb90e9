"""Defects found by a differential fuzz of appends, ``write_batches`` and ``convert
--append`` against metatensor's ``join`` of the renumbered batches."""

from __future__ import annotations

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.execution.cli import main


def _source(systems: list[int]) -> metatensor.TensorMap:
    """A one-block map whose samples are ``systems``."""
    samples = metatensor.Labels(["system"], np.array(systems, dtype=np.int32).reshape(-1, 1))
    properties = metatensor.Labels(["p"], np.array([[0]], dtype=np.int32))
    block = metatensor.TensorBlock(np.ones((len(systems), 1)), samples, [], properties)
    return metatensor.TensorMap(metatensor.Labels(["k"], np.array([[0]], dtype=np.int32)), [block])


def test_convert_renumbering_a_source_past_int32_names_it_and_its_remedy(tmp_path, capsys):
    """A source renumbered past the ones before it out of the int32 range was refused
    with the advice of ``to_zarr`` ("renumber by a smaller offset", which ``convert``
    has no option for) and without naming the source."""
    high, low = tmp_path / "high.mts", tmp_path / "low.mts"
    metatensor.save(str(high), _source([2**31 - 1]))
    metatensor.save(str(low), _source([0, 1]))
    store = tmp_path / "all.zarr"
    argv = ["convert", str(high), str(low), str(store), "--append", "--renumber", "system"]
    assert main([*argv, "--quiet"]) == 1
    error = capsys.readouterr().err
    assert f"of the sources before {low}, for --renumber" in error
    assert "number 'system' from 0 in each source" in error
    assert "smaller offset" not in error
    assert not store.exists()


def _with_gradient(systems: list[int], names: list[str]) -> metatensor.TensorMap:
    """:func:`_source` with a gradient of one row per sample, whose samples are
    ``names`` (``"sample"`` and one more)."""
    tensor = _source(systems)
    block = tensor.block(0).copy()
    rows = np.array([[i, 0] for i in range(len(systems))], dtype=np.int32).reshape(-1, 2)
    gradient = metatensor.TensorBlock(
        np.ones((len(systems), 1)), metatensor.Labels(names, rows), [], block.properties
    )
    block.add_gradient("positions", gradient)
    return metatensor.TensorMap(tensor.keys, [block])


def test_join_refuses_gradients_of_other_sample_names():
    """metatensor stacks the rows of a gradient named ``["sample", "other"]`` under the
    first block's ``["sample", "atom"]``; the join relabelled them so."""
    first = mtd.from_metatensor(_with_gradient([0], ["sample", "atom"]))
    second = mtd.from_metatensor(_with_gradient([1], ["sample", "other"]))
    with pytest.raises(ValueError, match=r"'positions' .* different sample names"):
        mtd.join([first, second], axis="samples")


def test_convert_refuses_sources_whose_gradients_have_other_sample_names(tmp_path, capsys):
    """Appended one by one, the second source is refused; converted together, it was
    stored under the first source's gradient sample names."""
    first, second = tmp_path / "a.mts", tmp_path / "b.mts"
    metatensor.save(str(first), _with_gradient([0], ["sample", "atom"]))
    metatensor.save(str(second), _with_gradient([0], ["sample", "other"]))
    store = tmp_path / "all.zarr"
    argv = ["convert", str(first), str(second), str(store), "--append", "--renumber", "system"]
    assert main([*argv, "--quiet"]) == 1
    assert f"the sources can not be appended together, from {second} on" in capsys.readouterr().err
    assert not store.exists()


class _Batch:
    """A batch function: systems numbered from ``2**31 - 2`` in every batch."""

    def __call__(self, items: list[int]) -> metatensor.TensorMap:
        return _source([2**31 - 2 + i for i in range(len(items))])


def test_write_batches_renumbering_past_int32_words_its_own_remedy(tmp_path):
    """The error advised "renumber by a smaller offset", which write_batches has no
    argument for (it adds the index of the batch's first item)."""
    with pytest.raises(mtd.MetatensorDaskError) as error:
        mtd.write_batches(_Batch(), [0, 1, 2], tmp_path / "t.zarr", quiet=True)
    message = str(error.value)
    assert "by 2 (the index of the batch's first item) goes past the int32 range" in message
    assert "pass renumber=None if the batches number it apart already" in message
    assert "smaller offset" not in message
