"""The command line as the docs show it: what a newcomer runs first."""

import os
import shutil
import textwrap

import dask
import pytest
from pipeline_support import SPHERICAL, run, write_pipeline, write_store

from metatensor_dask.execution.pipeline import Pipeline, PipelineError


@pytest.fixture
def store(tmp_path):
    return write_store(tmp_path / "x.zarr", source=SPHERICAL)


def _without_values(store):
    """Remove the value chunks of the first block: a store any read of values fails on."""
    values = os.path.join(store, "blocks", "0", "values")
    for entry in os.listdir(values):
        if entry not in ("zarr.json", ".zarray", ".zattrs"):
            path = os.path.join(values, entry)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


@pytest.mark.parametrize(
    ("op", "returned", "remedy"),
    [
        ("equal", "bool", "call it from Python"),
        ("allclose_raise", "None", "call it from Python"),
        ("split", "list[TensorMap]", "call it from Python"),
        ("sum_over_samples_block", "TensorBlock", "use 'sum_over_samples'"),
        ("unique_metadata", "Labels", "call it from Python"),
    ],
)
def test_a_step_that_gives_no_tensor_is_refused_with_the_file(tmp_path, op, returned, remedy):
    text = f"""\
        inputs: {{x: x.zarr}}
        steps:
          - op: {op}
            inputs: [x, x]
        output: out.zarr
    """
    path = write_pipeline(tmp_path, textwrap.dedent(text))
    with pytest.raises(PipelineError) as error:
        Pipeline.from_file(path)
    message = str(error.value)
    assert "line 3 (steps[0].op)" in message, message
    assert f"'{op}' returns {returned}, not a TensorMap" in message, message
    assert remedy in message, message
    assert "equal," not in message.split("can use are")[1], message
    assert "sum_over_samples," in message.split("can use are")[1], message


def test_apply_of_an_operation_giving_no_tensor_reads_no_value(capsys, tmp_path, store):
    _without_values(store)
    out = tmp_path / "out.zarr"
    code, _, err = run(capsys, "apply", "equal", store, store, "-o", out, "-q")
    assert code == 1
    assert "'equal' returns bool, not a TensorMap" in err, err
    assert not os.path.exists(out)


def test_unknown_operations_list_only_those_a_step_can_use(capsys, tmp_path, store):
    code, _, err = run(capsys, "apply", "multiplyy", store, "-o", tmp_path / "o.zarr")
    assert code == 1
    assert "did you mean 'multiply'?" in err, err
    listed = set(err.split("give a TensorMap (")[1].strip().rstrip(")").split(", "))
    assert {"multiply", "sum_over_samples", "join", "drop_blocks"} <= listed, err
    assert not listed & {"equal", "allclose_raise", "split", "sum_over_samples_block"}, err


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [("progress", 1, "true or false"), ("window-tasks", 0, "a positive number of tasks")],
)
@pytest.mark.parametrize("command", ["convert", "apply"])
def test_a_wrong_setting_is_refused_before_the_output_is_created(
    capsys, tmp_path, store, setting, value, expected, command
):
    out = tmp_path / "out.zarr"
    argv = [store, out] if command == "convert" else ["abs", store, "-o", out]
    with dask.config.set({f"metatensor_dask.{setting}": value}):
        code, _, err = run(capsys, command, *argv)
    assert code == 1
    assert f"invalid setting metatensor_dask.{setting}={value!r}: use {expected}" in err, err
    assert "left incomplete" not in err, err
    assert not os.path.exists(out)
