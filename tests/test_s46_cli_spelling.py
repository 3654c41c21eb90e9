"""The command line takes what a user types as written: numbers as YAML 1.2 reads them
(never another number than the one typed), options spelled in full (never an
abbreviation taken for another option), and a batch script it named itself removed
when the batch system refuses the job."""

import glob
import os

import metatensor
import pytest
from pipeline_support import RADIAL, run, write_pipeline, write_store
from slurm_support import require_slurm

import metatensor_dask as mtd
from metatensor_dask.execution.pipeline import load_yaml_value
from metatensor_dask.testing import assert_equal_to_metatensor


@pytest.mark.parametrize(
    "text, value",
    [
        ("010", 10),  # YAML 1.1: the octal 8
        ("-010", -10),
        ("0o10", 8),
        ("0x1F", 31),
        ("0b101", 5),
        ("1_000", 1000),
        ("1:30", "1:30"),  # YAML 1.1: the base-60 number 90
        ("12:30:00", "12:30:00"),  # YAML 1.1: 45000
        ("1:30.5", "1:30.5"),  # YAML 1.1: the float 90.5
        ("-.5", -0.5),
        ("2.5e3", 2500.0),
        ("1e-3", 0.001),
        (".inf", float("inf")),
    ],
)
def test_numbers_are_read_as_yaml_1_2_reads_them(text, value):
    read = load_yaml_value(text)
    assert (type(read), read) == (type(value), value)


def test_a_number_with_a_leading_zero_multiplies_by_the_number_typed(tmp_path, capsys):
    store = write_store(tmp_path / "r.zarr")
    out = tmp_path / "out.zarr"
    code, _, err = run(capsys, "apply", "multiply", store, "--arg", "B=010", "-o", out, "-q")
    assert code == 0, err
    expected = metatensor.multiply(metatensor.load(RADIAL), 10)
    assert_equal_to_metatensor(mtd.open_zarr(str(out)), expected)


def test_a_base_60_looking_value_in_a_pipeline_is_a_string_the_operation_refuses(tmp_path, capsys):
    store = write_store(tmp_path / "r.zarr")
    pipeline = write_pipeline(
        tmp_path,
        """
        inputs: {{x: {store}}}
        steps:
          - op: multiply
            inputs: x
            args: {{B: 1:30}}
        output: {out}
        """,
        store=store,
        out=tmp_path / "out.zarr",
    )
    code, _, err = run(capsys, "run", pipeline, "-q")
    assert code == 1
    assert "the value '1:30' of `B` is read as a string, as YAML 1.2 reads it" in err
    assert not os.path.exists(tmp_path / "out.zarr")


@pytest.mark.parametrize(
    "typed, meant",
    [
        ("--over", "--overwrite"),
        ("--chunk=3", "--chunks"),
        ("--work", "--workers"),
        ("--apend", "--append"),
    ],
)
def test_an_abbreviated_option_is_refused_with_its_full_spelling(tmp_path, capsys, typed, meant):
    out = tmp_path / "out.zarr"
    code, _, err = run(capsys, "convert", typed, *(["2"] if typed == "--work" else []), RADIAL, out)
    assert code == 2
    assert f"unrecognized arguments: {typed}" in err
    assert f"did you mean {meant}? (options are spelled in full)" in err
    assert not os.path.exists(out)


def test_an_unknown_option_like_no_other_gets_no_suggestion(tmp_path, capsys):
    code, _, err = run(capsys, "convert", "--bogus", RADIAL, tmp_path / "out.zarr")
    assert code == 2
    assert err.endswith("unrecognized arguments: --bogus\n")


def test_a_job_sbatch_refuses_leaves_no_script_of_its_own_and_keeps_a_named_one(tmp_path, capsys):
    require_slurm()
    pipeline = write_pipeline(tmp_path, input="x.zarr", output="out.zarr")
    refused = ("submit", pipeline, "--partition", "no-such-partition")
    code, _, err = run(capsys, *refused)
    assert code == 1
    assert "sbatch refused the job (the script was removed; `submit --dry-run` prints it)" in err
    assert "partition" in err
    assert glob.glob(str(tmp_path / "*.sbatch")) == []

    named = tmp_path / "job.sh"
    code, _, err = run(capsys, *refused, "--script", named)
    assert code == 1
    assert f"the script is kept in {named}" in err
    assert named.read_text().startswith("#!")
    assert "#SBATCH --partition=no-such-partition" in named.read_text()


def test_a_submit_command_that_fails_to_start_leaves_no_script(tmp_path, capsys, monkeypatch):
    """An ``sbatch`` that can not be started (here: its interpreter is missing) raised
    the bare OSError and left the script named for the submission."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    broken = bin_dir / "sbatch"
    broken.write_text("#!/no/such/interpreter\n")
    broken.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    pipeline = write_pipeline(tmp_path, input="x.zarr", output="out.zarr")
    code, _, err = run(capsys, "submit", pipeline)
    assert code == 1
    assert "could not be started" in err and "nothing was submitted" in err
    assert glob.glob(str(tmp_path / "*.sbatch")) == []
