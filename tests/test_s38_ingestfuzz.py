"""Defects found by a differential fuzz of appends, ``write_batches`` and ``convert
--append`` against metatensor's ``join`` of the renumbered batches."""

from __future__ import annotations

import metatensor
import numpy as np

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
