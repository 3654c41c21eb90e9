"""The code blocks of the documentation run as a newcomer copies them, in an empty
folder, with nothing but what the text around them says; what they write is checked
against metatensor."""

import os
import re
import shlex

import metatensor
import pytest
from forked_workers import forked_workers

import metatensor_dask as mtd
from metatensor_dask.datasets import tutorial_file
from metatensor_dask.execution.cli import main
from metatensor_dask.testing import assert_equal_to_metatensor

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "docs")


def _blocks(page: str, language: str, after: str) -> list[str]:
    """The ``language`` code blocks of ``docs/page`` that follow the line ``after``."""
    with open(os.path.join(DOCS, page), encoding="utf-8") as file:
        text = file.read()
    text = text[text.index(after + "\n") :]
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.S | re.M)


def _tutorial() -> metatensor.TensorMap:
    return metatensor.load(tutorial_file("spherical-expansion.npz"))


def test_the_metatensor_files_example_runs_in_an_empty_folder(tmp_path, monkeypatch):
    # the page loaded "spherical-expansion.mts", a file nothing had made
    monkeypatch.chdir(tmp_path)
    example = _blocks("mts-files.md", "python", "# metatensor files (`.mts`, `.npz`)")[0]
    exec(compile(example, "mts-files.md", "exec"), {})
    tensor = _tutorial()
    expected = metatensor.multiply(tensor, tensor)
    metatensor.save(str(tmp_path / "theirs.mts"), expected)
    assert (tmp_path / "squared.mts").read_bytes() == (tmp_path / "theirs.mts").read_bytes()


@pytest.mark.xdist_group("clusters")
def test_the_command_line_quick_start_runs_in_an_empty_folder(tmp_path, monkeypatch):
    # the quick start converted "spectrum.mts", which nothing had made, and its pipeline
    # read "other.mts", which nothing made either
    monkeypatch.chdir(tmp_path)
    (commands,) = _blocks("cli.md", "bash", "## Quick start")[:1]
    (pipeline,) = _blocks(
        "cli.md", "yaml", "## Pipelines: `run PIPELINE` and `apply OP INPUT... -o OUTPUT`"
    )[:1]
    (tmp_path / "pipeline.yaml").write_text(pipeline)
    with forked_workers():  # run's local cluster: a second to start, not seconds
        for line in commands.splitlines():
            words = shlex.split(line, comments=True)
            assert words[0] == "metatensor-dask", line
            if words[1] == "demo":
                # the demo's stores without its generated tensor (seconds of data): the
                # demo converts the shipped tutorial files the same way
                demo_store = "metatensor-dask-demo/spherical-expansion.zarr"
                words = [
                    "metatensor-dask",
                    "convert",
                    tutorial_file("spherical-expansion.npz"),
                    demo_store,
                ]
            if words[1] == "submit":
                words.append("--dry-run")  # no batch system here; the script is checked
            assert main(words[1:]) == 0, line
    tensor = _tutorial()
    expected = metatensor.sum_over_samples(
        metatensor.multiply(metatensor.pow(tensor, 2), tensor), sample_names="atom"
    )
    assert_equal_to_metatensor(mtd.open_zarr("result.zarr"), expected)
