"""Pipeline files: parsing, validation with line numbers, building and writing."""

import os
import textwrap

import dask
import metatensor
import numpy as np
import pytest
from pipeline_support import PIPELINE, RADIAL, SPHERICAL, expected_cube, write_pipeline, write_store

import metatensor_dask as mtd
from metatensor_dask.execution.pipeline import Pipeline, PipelineError
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes


@pytest.fixture
def store(tmp_path):
    return write_store(tmp_path / "x.zarr")


def test_run_equals_metatensor(tmp_path, store):
    pipeline = Pipeline.from_file(write_pipeline(tmp_path, input="x.zarr", output="out.zarr"))
    pipeline.check_paths()
    result = pipeline.build()
    dask.compute(pipeline.write(result))
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "out.zarr").compute(), expected_cube())


def test_paths_are_relative_to_the_pipeline_file(tmp_path, store):
    path = write_pipeline(tmp_path, input="x.zarr", output="sub/out.zarr")
    pipeline = Pipeline.from_file(os.path.relpath(path))
    assert pipeline.inputs[0].path == str(tmp_path / "x.zarr")
    assert pipeline.output == str(tmp_path / "sub" / "out.zarr")


def test_building_reads_no_values(tmp_path, store):
    pipeline = Pipeline.from_file(write_pipeline(tmp_path, input="x.zarr", output="out.zarr"))
    with raise_if_dask_computes():
        pipeline.build()


def test_steps_default_to_the_previous_result_and_output_can_name_a_step(tmp_path, store):
    text = """\
        inputs: {x: x.zarr}
        steps:
          - op: multiply
            args: {B: 3.0}
            name: tripled
          - op: add
            args: {B: 1}
        output: {path: out.zarr, from: tripled}
    """
    pipeline = Pipeline.from_file(write_pipeline(tmp_path, text))
    assert [s.inputs for s in pipeline.steps] == [("x",), ("tripled",)]
    assert pipeline.output_from == "tripled"
    dask.compute(pipeline.write(pipeline.build()))
    expected = metatensor.multiply(metatensor.load(RADIAL), 3.0)
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "out.zarr").compute(), expected)


def test_two_inputs_and_chunks(tmp_path, store):
    write_store(tmp_path / "y.zarr")
    text = """\
        inputs:
          x: {path: x.zarr, chunks: 1}
          y: y.zarr
        steps:
          - op: add
            inputs: [x, y]
        output: out.zarr
    """
    pipeline = Pipeline.from_file(write_pipeline(tmp_path, text))
    assert pipeline.inputs[0].chunks == 1
    dask.compute(pipeline.write(pipeline.build()))
    x = metatensor.load(RADIAL)
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "out.zarr").compute(), metatensor.add(x, x))


def test_metatensor_file_inputs_with_components(tmp_path):
    pipeline = Pipeline.from_text(
        PIPELINE.format(input=SPHERICAL, output="out.zarr"), base=str(tmp_path)
    )
    dask.compute(pipeline.write(pipeline.build()))
    assert_equal_to_metatensor(
        mtd.open_zarr(tmp_path / "out.zarr").compute(), expected_cube(SPHERICAL)
    )


def test_single_operation(tmp_path, store):
    pipeline = Pipeline.single("pow", [store], str(tmp_path / "out.zarr"), {"B": 3})
    dask.compute(pipeline.write(pipeline.build()))
    expected = metatensor.pow(metatensor.load(RADIAL), 3)
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "out.zarr").compute(), expected, rtol=1e-15)


def test_single_operation_checks_its_arguments(tmp_path):
    with pytest.raises(
        PipelineError, match=r"operation pow: pow\(A, B\) cannot be called with 1 input"
    ):
        Pipeline.single("pow", ["x.zarr"], "out.zarr", {"C": 2})
    with pytest.raises(PipelineError, match="unknown operation 'muliply': did you mean 'multiply'"):
        Pipeline.single("muliply", ["x.zarr"], "out.zarr")


def test_resume_finishes_an_interrupted_write(tmp_path, store):
    pipeline = Pipeline.from_file(write_pipeline(tmp_path, input="x.zarr", output="out.zarr"))
    pipeline.write(pipeline.build())  # metadata written, data never computed: interrupted
    with pytest.raises(PipelineError, match=r"already exists: delete it .* or pass --resume"):
        pipeline.check_paths()
    with pytest.raises(mtd.MetatensorDaskError, match="incomplete"):
        mtd.open_zarr(tmp_path / "out.zarr")
    pipeline.check_paths(resume=True)
    dask.compute(pipeline.write(pipeline.build(), resume=True))
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "out.zarr").compute(), expected_cube())


def test_missing_input(tmp_path):
    pipeline = Pipeline.from_file(write_pipeline(tmp_path, input="nowhere.zarr", output="out.zarr"))
    with pytest.raises(
        PipelineError, match=r"line 2 \(inputs.x\): input 'x' not found: .*nowhere.zarr"
    ):
        pipeline.check_paths()


def test_operation_errors_name_the_step(tmp_path, store):
    write_store(tmp_path / "r.zarr", SPHERICAL)
    text = """\
        inputs: {x: x.zarr, r: r.zarr}
        steps:
          - op: multiply
            inputs: [x, r]
        output: out.zarr
    """
    pipeline = Pipeline.from_file(write_pipeline(tmp_path, text))
    with pytest.raises(PipelineError, match=r"line 3 \(steps\[0\]\): multiply failed: "):
        pipeline.build()


HEADER = "inputs: {x: x.zarr}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("inputs: [\n", r"line 2: this is not valid YAML"),
        ("", r"the pipeline is empty; it needs `inputs`, `steps` and `output`"),
        (
            "- 1\n",
            r"line 1 \(top level\): a pipeline must be a mapping with the fields inputs, steps, "
            r"output",
        ),
        (HEADER + "output: o.zarr\n", r"line 1 \(top level\): the pipeline has no `steps`"),
        (
            HEADER + "stpes: []\n",
            r"line 2 \(stpes\): unknown field 'stpes' in a pipeline: did you mean 'steps'\?",
        ),
        (
            "inputs: {}\nsteps: [{op: pow}]\noutput: o.zarr\n",
            r"line 1 \(inputs\): `inputs` must be a non-empty mapping",
        ),
        (
            HEADER + "steps: []\noutput: o.zarr\n",
            r"line 2 \(steps\): `steps` must be a non-empty list",
        ),
        (
            HEADER + "steps:\n  - op: multiplyy\noutput: o.zarr\n",
            r"line 3 \(steps\[0\].op\): unknown operation 'multiplyy': did you mean 'multiply'\?",
        ),
        (
            HEADER + "steps:\n  - args: {B: 2}\noutput: o.zarr\n",
            r"line 3 \(steps\[0\]\): this step has no `op`",
        ),
        (
            HEADER + "steps:\n  - op: pow\n    inputs: [x, y]\noutput: o.zarr\n",
            r"line 4 \(steps\[0\].inputs\[1\]\): unknown tensor 'y': inputs and named steps "
            r"defined above are x",
        ),
        (
            HEADER + "steps:\n  - op: pow\n    args: {C: 2}\noutput: o.zarr\n",
            r"line 4 \(steps\[0\].args\): pow\(A, B\) cannot be called with 1 input tensor\(s\) "
            r"and args \{'C': 2\}: missing a required argument: 'B'",
        ),
        (
            HEADER + "steps:\n  - op: pow\n    args: [2]\noutput: o.zarr\n",
            r"line 4 \(steps\[0\].args\): `args` must be a mapping of keyword arguments",
        ),
        (
            HEADER + "steps:\n  - {op: pow, args: {B: 2}, name: x}\noutput: o.zarr\n",
            r"line 3 \(steps\[0\].name\): the name 'x' is already used at line 1",
        ),
        (
            "inputs: {x: a.zarr, y: b.zarr}\nsteps:\n  - {op: pow, args: {B: 2}}\noutput: o.zarr\n",
            r"line 3 \(steps\[0\]\): the first step must name its `inputs`: the pipeline has 2 "
            r"inputs \(x, y\)",
        ),
        (
            HEADER + "steps:\n  - {op: pow, args: {B: 2}, colour: red}\noutput: o.zarr\n",
            r"line 3 \(steps\[0\].colour\): unknown field 'colour' in step 0: use op, inputs, "
            r"args, name",
        ),
        (
            HEADER + "steps:\n  - {op: pow, args: {B: 2}}\noutput: o.mts\n",
            r"line 4 \(output\): pipelines write Zarr stores .* `metatensor-dask convert`",
        ),
        (
            HEADER + "steps:\n  - {op: pow, args: {B: 2}}\noutput: {path: o.zarr, from: z}\n",
            r"line 4 \(output.from\): unknown tensor 'z': use one of x, step 0",
        ),
        (
            HEADER + "steps:\n  - {op: pow, args: {B: 2}}\noutput: {from: x}\n",
            r"line 4 \(output\): `output` has no `path`",
        ),
        (
            "inputs:\n  x: {path: x.zarr, chunks: [1]}\nsteps:\n  - {op: pow, args: {B: "
            "2}}\noutput: o.zarr\n",
            r"line 2 \(inputs.x.chunks\): `chunks` must be a number of rows or a size",
        ),
        (
            "inputs:\n  x: 3\nsteps:\n  - {op: pow, args: {B: 2}}\noutput: o.zarr\n",
            r"line 2 \(inputs.x\): input 'x' must be a path or URL \(a string\), got 3",
        ),
    ],
)
def test_invalid_pipelines(text, message):
    with pytest.raises(PipelineError, match=message) as info:
        Pipeline.from_text(text, source="p.yaml")
    assert str(info.value).startswith("p.yaml")


def test_unreadable_pipeline_file(tmp_path):
    with pytest.raises(
        PipelineError, match=r"cannot read the pipeline file '.*nothing\.yaml': No such file"
    ):
        Pipeline.from_file(str(tmp_path / "nothing.yaml"))


def test_steps_must_give_tensors(tmp_path, store):
    text = """\
        inputs: {x: x.zarr}
        steps:
          - op: equal
            inputs: [x, x]
        output: out.zarr
    """
    path = write_pipeline(tmp_path, textwrap.dedent(text))
    with pytest.raises(PipelineError, match=r"'equal' returns bool, not a TensorMap"):
        Pipeline.from_file(path)


def test_output_written_by_steps_is_chunked_as_the_input(tmp_path):
    write_store(tmp_path / "x.zarr", chunks=1)
    pipeline = Pipeline.from_file(write_pipeline(tmp_path, input="x.zarr", output="out.zarr"))
    dask.compute(pipeline.write(pipeline.build()))
    out = mtd.open_zarr(tmp_path / "out.zarr")
    x = mtd.open_zarr(tmp_path / "x.zarr")
    for a, b in zip(out.blocks(), x.blocks(), strict=True):
        assert a.values.chunks == b.values.chunks
        np.testing.assert_allclose(a.values.compute(), b.values.compute() ** 3, rtol=1e-15)
