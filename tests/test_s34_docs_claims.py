"""What the documentation says the command line does, where the code did otherwise.

* configuration.md: a wrong ``progress`` or ``window-tasks`` fails ``submit`` before it
  queues a job (whose ``run`` reads them as it starts, and would fail in the queue);
* the pipeline files that ``metatensor-dask demo`` leaves say how to run them again,
  and following that note works;
* cli.md: a ``convert --resume`` finishes what was left (nothing, when the write or
  append is done): its summary says so rather than that it wrote the whole store.
"""

import re
import shlex
import shutil

import dask
import pytest

from metatensor_dask.datasets import tutorial_file
from metatensor_dask.execution import demo
from metatensor_dask.execution.cli import main


def _pipeline(tmp_path):
    """A pipeline file of the demo's, on the tutorial's spherical expansion."""
    source = tmp_path / "spherical-expansion.npz"
    shutil.copy(tutorial_file("spherical-expansion.npz"), source)
    path = tmp_path / "pipeline.yaml"
    text = demo.PIPELINE.format(name=path, input=source.name, output="result.zarr")
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("setting", "value"), [("progress", 1), ("window-tasks", 0), ("progress", "yes")]
)
def test_submit_refuses_a_wrong_setting_before_anything(tmp_path, capsys, setting, value):
    pipeline = _pipeline(tmp_path)
    with dask.config.set({f"metatensor_dask.{setting}": value}):
        code = main(["submit", str(pipeline), "--dry-run"])
    captured = capsys.readouterr()
    assert code == 1, captured
    assert f"invalid setting metatensor_dask.{setting}" in captured.err
    assert captured.out == ""  # no job script


def test_the_note_of_a_demo_pipeline_runs_it_again(tmp_path, capsys):
    pipeline = _pipeline(tmp_path)
    assert main(["run", str(pipeline), "--quiet"]) == 0
    note = " ".join(line for line in pipeline.read_text().splitlines() if line[:1] == "#")
    (command,) = re.findall(r"`(metatensor-dask run [^`]*)`", note)
    for deleted in re.findall(r"delete (\S+?)[,;:]? ", note):
        shutil.rmtree(tmp_path / deleted)
    capsys.readouterr()
    assert main([*shlex.split(command)[1:], "--quiet"]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("append", [False, True])
def test_a_resume_of_a_finished_convert_says_nothing_was_written(tmp_path, capsys, append):
    source = str(tmp_path / "spherical-expansion.npz")
    shutil.copy(tutorial_file("spherical-expansion.npz"), source)
    store = str(tmp_path / "all.zarr")
    command = ["convert", source, store, *(["--append"] if append else [])]
    assert main(command) == 0
    capsys.readouterr()
    assert main([*command, "--resume"]) == 0
    summary = capsys.readouterr().err.splitlines()[-1]
    # neither "wrote" nor the store's size as if written now
    state = "already holds this append" if append else "was already complete"
    assert summary == f"{store} {state}: nothing was written", summary
