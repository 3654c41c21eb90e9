"""Refusals of the command line name a remedy its user can apply from the command that
was run: an option of it or another path, not an argument of the Python API."""

from __future__ import annotations

from pathlib import Path

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.execution.cli import main


def _source(systems: list[int]) -> metatensor.TensorMap:
    """A one-block map whose samples are ``(system, atom)`` with ``systems``."""
    rows = np.array([[s, 0] for s in systems], dtype=np.int32).reshape(-1, 2)
    samples = metatensor.Labels(["system", "atom"], rows)
    properties = metatensor.Labels(["p"], np.array([[0]], dtype=np.int32))
    block = metatensor.TensorBlock(np.ones((len(systems), 1)), samples, [], properties)
    return metatensor.TensorMap(metatensor.Labels(["k"], np.array([[0]], dtype=np.int32)), [block])


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """The message of the command ``argv``, which fails with exit code 1."""
    assert main([*argv, "--quiet"]) == 1
    return capsys.readouterr().err


def test_repeated_samples_name_the_option_of_convert_first(tmp_path, capsys):
    """The remedy named ``renumber=`` of to_zarr and write_batches before --renumber."""
    source = tmp_path / "a.mts"
    metatensor.save(str(source), _source([0, 1]))
    store = str(tmp_path / "all.zarr")
    assert main(["convert", str(source), store, "--append", "--quiet"]) == 0
    error = _error(capsys, "convert", str(source), store, "--append")
    assert "which is already stored; nothing was written. Number the batches apart: " in error
    assert error.index("--renumber system (convert --append)") < error.index("renumber=")


def test_a_metatensor_file_with_a_trailing_slash_names_the_paths_that_work(tmp_path, capsys):
    """`convert f.mts dir/x.mts/` advised `mtd.save`, which the command line has not."""
    source = tmp_path / "f.mts"
    metatensor.save(str(source), _source([0]))
    destination = f"{tmp_path / 'x.mts'}/"
    error = _error(capsys, "convert", str(source), destination)
    assert "mtd.save" not in error
    assert "ends with '/'" in error
    assert f"without the trailing '/' ({tmp_path / 'x.mts'})" in error
    assert f"ending in '.zarr' ({tmp_path / 'x.zarr'})" in error
    # the remedy works
    assert main(["convert", str(source), destination.rstrip("/"), "--quiet"]) == 0
    assert (tmp_path / "x.mts").is_file()


def test_a_pipeline_file_of_two_documents_says_it_holds_one(tmp_path, capsys, monkeypatch):
    """yaml's own text, "found another document", said neither rule nor remedy."""
    metatensor.save(str(tmp_path / "f.mts"), _source([0]))
    step = "inputs: {x: f.mts}\nsteps: [{op: pow, args: {B: 2}}]\noutput: out.zarr\n"
    (tmp_path / "p.yaml").write_text(f"---\n{step}---\n{step}")
    monkeypatch.chdir(tmp_path)
    error = _error(capsys, "run", "p.yaml")
    assert "p.yaml, line 5: a second YAML document starts here" in error
    assert "a pipeline file holds one pipeline (one document)" in error
    assert "found another document" not in error
    assert not (tmp_path / "out.zarr").exists()


def test_renumbering_past_the_stored_int32_range_words_the_command_line_remedy(tmp_path, capsys):
    """The store holds a system near 2**31 - 1: the remedy was to_zarr's ("renumber by a
    smaller offset"), which convert has no option for."""
    high, low = tmp_path / "high.mts", tmp_path / "low.mts"
    metatensor.save(str(high), _source([2**31 - 2]))
    metatensor.save(str(low), _source([0, 1]))
    store = str(tmp_path / "all.zarr")
    assert main(["convert", str(high), store, "--quiet"]) == 0
    error = _error(capsys, "convert", str(low), store, "--append", "--renumber", "system")
    assert "goes past the int32 range of Labels" in error
    assert "smaller offset" not in error and "'next'" not in error
    assert f"(one past the largest 'system' stored in {store})" in error
    assert "nothing was written. Append to another store" in error
    assert "--append --renumber system" in error
    assert "number it from 0 in each source" in error
    assert len(mtd.open_zarr(store).block(0).samples) == 1


@pytest.mark.parametrize(
    ("op", "argument", "names"),
    [
        ("sum_over_samples", "sample_names=nope", "samples of its input are named ['system', "),
        ("mean_over_samples", "sample_names=[atom, nope]", "samples of its input are named ["),
        ("sum_over_properties", "property_names=nope", "properties of its input are named ['p']"),
    ],
)
def test_an_unknown_name_to_reduce_over_lists_the_names_there_are(
    tmp_path: Path, capsys, op, argument, names
):
    """metatensor's text names the unknown name, not the ones that exist."""
    source = tmp_path / "f.zarr"
    mtd.from_metatensor(_source([0, 1])).to_zarr(str(source))
    output = str(tmp_path / "s.zarr")
    error = _error(capsys, "apply", op, str(source), "--arg", argument, "-o", output)
    assert "is not part of this TensorMap; the " + names in error
