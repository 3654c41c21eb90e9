"""Numbers in exponent notation without a dot (`1e-3`) in pipeline arguments: YAML 1.1,
which PyYAML implements, reads them as strings, which the operations refuse. Pipelines
and `--arg` read them as numbers, as YAML 1.2 does."""

import metatensor
import pytest
from pipeline_support import RADIAL, run, write_pipeline

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


@pytest.mark.parametrize(("text", "number"), [("1e-3", 1e-3), ("-2E2", -200.0), ("+3e0", 3.0)])
def test_apply_reads_exponent_notation_as_a_number(capsys, tmp_path, text, number):
    output = tmp_path / "out.zarr"
    code, _, err = run(capsys, "apply", "multiply", RADIAL, "--arg", f"B={text}", "-o", output)
    assert code == 0, err
    expected = metatensor.multiply(metatensor.load(RADIAL), number)
    assert_equal_to_metatensor(mtd.open_zarr(str(output)), expected)


def test_a_pipeline_reads_exponent_notation_as_a_number(capsys, tmp_path):
    pipeline = write_pipeline(
        tmp_path,
        """\
        inputs: {{x: {input}}}
        steps:
          - {{op: pow, args: {{B: 2e0}}}}
          - {{op: add, args: {{B: 5E-1}}}}
        output: out.zarr
        """,
        input=RADIAL,
    )
    code, _, err = run(capsys, "run", pipeline, "--quiet")
    assert code == 0, err
    expected = metatensor.add(metatensor.pow(metatensor.load(RADIAL), 2.0), 0.5)
    assert_equal_to_metatensor(mtd.open_zarr(str(tmp_path / "out.zarr")), expected)


@pytest.mark.parametrize("text", ["1e", "e3", "1e3e3", "abc"])
def test_other_words_stay_strings(capsys, tmp_path, text):
    output = tmp_path / "out.zarr"
    code, _, err = run(capsys, "apply", "multiply", RADIAL, "--arg", f"B={text}", "-o", output)
    assert code == 1
    assert "not <class 'str'>" in err
