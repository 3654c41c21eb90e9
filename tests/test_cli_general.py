"""The command line as a new user meets it: arguments a YAML file or ``--arg`` can give,
outputs and inputs of the wrong kind, and messages that say what to do."""

import os

import metatensor
import numpy as np
import pytest
from pipeline_support import SPHERICAL, run, write_pipeline, write_store

import metatensor_dask as mtd
from metatensor_dask.execution.pipeline import Pipeline, PipelineError
from metatensor_dask.testing import assert_equal_to_metatensor


@pytest.fixture
def store(tmp_path):
    return write_store(tmp_path / "x.zarr", source=SPHERICAL)


@pytest.mark.parametrize("name", ["out.mts", "out.npz"])
def test_apply_refuses_a_metatensor_file_as_output(capsys, tmp_path, store, name):
    out = tmp_path / name
    code, _, err = run(capsys, "apply", "abs", store, "-o", out, "-q")
    assert code == 1
    assert "pipelines write Zarr stores" in err
    assert "metatensor-dask convert" in err
    assert not os.path.exists(out)


def _labels(names, rows):
    return metatensor.Labels(names, np.array(rows, dtype=np.int32).reshape(-1, len(names)))


def test_labels_arguments_are_given_as_columns(capsys, tmp_path, store):
    x = metatensor.load(SPHERICAL)
    out = tmp_path / "sliced.zarr"
    code, _, err = run(
        capsys, "apply", "slice", store, "--arg", "axis=samples",
        "--arg", "selection={atom: [1, 2]}", "-o", out, "-q",
    )  # fmt: skip
    assert (code, err) == (0, "")
    expected = metatensor.slice(x, "samples", _labels(["atom"], [[1], [2]]))
    assert_equal_to_metatensor(mtd.open_zarr(out).compute(), expected)

    out = tmp_path / "dropped.zarr"
    code, _, err = run(
        capsys, "apply", "drop_blocks", store,
        "--arg", "keys={center_type: [6, 8], neighbor_type: [6, 6]}", "-o", out, "-q",
    )  # fmt: skip
    assert (code, err) == (0, "")
    keys = _labels(["center_type", "neighbor_type"], [[6, 6], [8, 6]])
    expected = metatensor.drop_blocks(x, keys)
    assert_equal_to_metatensor(mtd.open_zarr(out).compute(), expected)


def test_array_arguments_are_given_as_lists(capsys, tmp_path, store):
    x = metatensor.load(SPHERICAL)
    out = tmp_path / "appended.zarr"
    n = len(x.block(0).properties)
    code, _, err = run(
        capsys, "apply", "append_dimension", store, "--arg", "axis=properties",
        "--arg", "name=extra", "--arg", f"values={list(range(10, 10 + n))}", "-o", out, "-q",
    )  # fmt: skip
    assert (code, err) == (0, "")
    expected = metatensor.append_dimension(x, "properties", "extra", np.arange(10, 10 + n))
    assert_equal_to_metatensor(mtd.open_zarr(out).compute(), expected)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{atom: [1, 2], system: [0]}", "every dimension needs as many values"),
        ("{atom: [a]}", "integers"),
        ("{}", "at least one dimension"),
    ],
)
def test_malformed_labels_arguments_are_refused_before_reading(capsys, tmp_path, value, message):
    out = tmp_path / "out.zarr"
    code, _, err = run(
        capsys, "apply", "slice", tmp_path / "absent.zarr", "--arg", "axis=samples",
        "--arg", f"selection={value}", "-o", out,
    )  # fmt: skip
    assert code == 1
    assert "selection" in err and message in err, err
    assert "{dimension: [values]" in err
    assert not os.path.exists(out)


def test_labels_arguments_in_a_pipeline_file(capsys, tmp_path, store):
    path = write_pipeline(
        tmp_path,
        """\
        inputs: {x: x.zarr}
        steps:
          - op: keys_to_properties
            args: {keys_to_move: {neighbor_type: [1, 6, 8]}}
          - op: slice
            args: {axis: properties, selection: {n: [0, 2]}}
        output: out.zarr
        """,
    )
    code, _, err = run(capsys, "run", path, "-q")
    assert (code, err) == (0, "")
    x = metatensor.load(SPHERICAL)
    expected = x.keys_to_properties(_labels(["neighbor_type"], [[1], [6], [8]]))
    expected = metatensor.slice(expected, "properties", _labels(["n"], [[0], [2]]))
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "out.zarr").compute(), expected)


def test_a_malformed_labels_argument_names_its_line(capsys, tmp_path):
    path = write_pipeline(
        tmp_path,
        """\
        inputs: {x: x.zarr}
        steps:
          - op: slice
            args: {axis: samples, selection: {atom: [1], system: [1, 2]}}
        output: out.zarr
        """,
    )
    code, _, err = run(capsys, "run", path)
    assert code == 1
    assert "pipeline.yaml, line 4 (steps[0].args): `selection`: every dimension" in err


@pytest.mark.parametrize(
    ("text", "where", "key"),
    [
        ("inputs: {x: x.zarr, x: y.zarr}\nsteps: [{op: abs}]\noutput: o.zarr\n", "line 1", "x"),
        (
            "inputs: {x: x.zarr}\nsteps:\n  - op: pow\n    args: {B: 2, B: 3}\noutput: o.zarr\n",
            "line 4",
            "B",
        ),
        (
            "inputs: {x: x.zarr}\nsteps: [{op: abs}]\noutput: o.zarr\noutput: p.zarr\n",
            "line 4",
            "output",
        ),
    ],
)
def test_a_key_given_twice_in_a_pipeline_is_refused(capsys, tmp_path, store, text, where, key):
    path = write_pipeline(tmp_path, text)
    code, _, err = run(capsys, "run", path)
    assert code == 1
    assert f"pipeline.yaml, {where}" in err and f"'{key}' is given twice" in err, err
    assert not os.path.exists(tmp_path / "o.zarr") and not os.path.exists(tmp_path / "p.zarr")


def test_an_arg_given_twice_is_refused(capsys, tmp_path, store):
    out = tmp_path / "o.zarr"
    code, _, err = run(capsys, "apply", "pow", store, "--arg", "B=2", "--arg", "B=3", "-o", out)
    assert code == 2
    assert "--arg B is given twice" in err
    assert not os.path.exists(out)


def test_an_arg_that_is_not_yaml_is_refused_with_the_quoted_form(capsys, tmp_path, store):
    out = tmp_path / "o.zarr"
    code, _, err = run(capsys, "apply", "pow", store, "--arg", "B=[1", "-o", out)
    assert code == 2
    assert "--arg B=[1: the value is not valid YAML" in err
    assert "--arg \"B='[1'\"" in err
    assert not os.path.exists(out)


def test_reduced_names_of_another_type_are_named(capsys, tmp_path, store):
    out = tmp_path / "o.zarr"
    code, _, err = run(
        capsys, "apply", "sum_over_samples", store, "--arg", "sample_names=3", "-o", out
    )
    assert code == 1
    assert "sample names to reduce over must be a string or a list of strings, got 3" in err


@pytest.mark.parametrize("chunks", ["lots", -5, 0])
def test_input_chunks_are_checked_with_the_file(tmp_path, chunks):
    path = write_pipeline(
        tmp_path,
        f"inputs:\n  x: {{path: absent.zarr, chunks: {chunks}}}\n"
        "steps: [{op: abs}]\noutput: o.zarr\n",
    )
    with pytest.raises(PipelineError, match=r"pipeline.yaml, line 2 \(inputs.x.chunks\): `chunks`"):
        Pipeline.from_file(path)


def test_verify_of_a_metatensor_file_says_what_was_checked(capsys, tmp_path):
    path = tmp_path / "x.mts"
    metatensor.save(path, metatensor.load(SPHERICAL))
    code, _, err = run(capsys, "verify", path)
    assert code == 0
    assert "0 arrays" not in err and "0 B" not in err, err
    assert f"{path} is intact: every member's CRC-32 and metatensor's rules checked" in err, err


@pytest.mark.parametrize("kind", ["block", "labels"])
@pytest.mark.parametrize("command", ["info", "convert", "apply"])
def test_a_block_or_labels_file_is_named_with_a_remedy(capsys, tmp_path, kind, command):
    block = metatensor.load(SPHERICAL).block(0)
    path = tmp_path / f"{kind}.mts"
    metatensor.save(path, block if kind == "block" else block.samples)
    argv = {
        "info": ["info", path],
        "convert": ["convert", path, tmp_path / "out.zarr"],
        "apply": ["apply", "abs", path, "-o", tmp_path / "out.zarr"],
    }[command]
    code, _, err = run(capsys, *argv)
    assert code == 1
    what = "a TensorBlock" if kind == "block" else "Labels"
    assert f"'{path}' holds {what}, not a TensorMap" in err, err
    assert "metatensor.TensorMap" in err and "load_block" not in err
    assert not os.path.exists(tmp_path / "out.zarr")


@pytest.mark.parametrize("spelling", ["x.zarr", "./x.zarr/"])
@pytest.mark.parametrize("resume", [[], ["--resume"]])
def test_an_output_that_is_an_input_is_refused_before_anything_is_written(
    capsys, monkeypatch, tmp_path, store, spelling, resume
):
    before = sorted(os.listdir(store))
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "apply", "pow", store, "--arg", "B=2", "-o", spelling, "-q", *resume)
    assert code == 1
    assert "is one of its inputs" in err and "choose another output" in err
    assert sorted(os.listdir(store)) == before
    assert mtd.verify(store).ok


def test_resume_of_another_pipeline_is_refused_with_a_command_line_remedy(capsys, tmp_path, store):
    out = tmp_path / "out.zarr"
    # an interrupted run: the metadata written, the Delayed never computed
    Pipeline.single("pow", [store], str(out), {"B": 2}).write(mtd.pow(mtd.open_zarr(store), 2))
    code, _, err = run(capsys, "apply", "pow", store, "--arg", "B=3", "-o", out, "--resume", "-q")
    assert code == 1
    assert "computing" not in err  # nothing was computed
    assert f"cannot resume {out}" in err and "another computation" in err
    assert f"from the command line, delete {out} to start over" in err


def _submit_pipeline(tmp_path, inputs, output):
    text = f"inputs: {{x: {inputs}}}\nsteps: [{{op: abs}}]\noutput: {output}\n"
    return write_pipeline(tmp_path, text)


@pytest.mark.parametrize(
    ("output", "options", "message"),
    [
        ("x.zarr", [], "is the input 'x'"),
        ("x.zarr", ["--resume"], "is the input 'x'"),
        ("done.zarr", [], "already exists"),
    ],
)
def test_submit_refuses_an_output_the_job_would_refuse(
    capsys, tmp_path, store, output, options, message
):
    # found only once the job had waited in the queue
    os.mkdir(tmp_path / "done.zarr")
    (tmp_path / "done.zarr" / "zarr.json").write_text("{}")  # (an empty folder is nothing)
    pipeline = _submit_pipeline(tmp_path, "x.zarr", output)
    code, out, err = run(capsys, "submit", pipeline, "--dry-run", *options)
    assert (code, out) == (1, "")
    assert message in err


def test_submit_resumes_an_existing_output_and_warns_of_a_missing_input(capsys, tmp_path, store):
    os.mkdir(tmp_path / "done.zarr")
    pipeline = _submit_pipeline(tmp_path, "x.zarr", "done.zarr")
    for option in ("--resume", "--requeue"):
        code, out, _ = run(capsys, "submit", pipeline, "--dry-run", option)
        assert code == 0 and "metatensor_dask run" in out
    # an input that an earlier job (--option=--dependency=...) may still make
    pipeline = _submit_pipeline(tmp_path, "later.zarr", "new.zarr")
    code, out, err = run(capsys, "submit", pipeline, "--dry-run")
    assert code == 0 and "metatensor_dask run" in out
    assert "warning" in err and "later.zarr" in err and "does not exist now" in err


def test_convert_refuses_to_overwrite_its_source(capsys, tmp_path, store):
    # it emptied the store, then failed reading it ('the store is damaged')
    before = sorted(os.listdir(store))
    code, _, err = run(capsys, "convert", store, store, "--chunks", "3", "--overwrite", "-q")
    assert code == 1
    assert "is the source" in err and "another destination" in err
    assert sorted(os.listdir(store)) == before and mtd.verify(store).ok
