"""The ``metatensor-dask`` command line: every command, its messages and exit codes."""

import glob
import json
import os
import stat
import subprocess
import sys
import urllib.parse

import dask
import metatensor
import pytest
from pipeline_support import (
    RADIAL,
    SPHERICAL,
    expected_cube,
    run,
    write_pipeline,
    write_store,
)

import metatensor_dask as mtd
from metatensor_dask.execution.cli import main
from metatensor_dask.execution.pipeline import describe
from metatensor_dask.testing import assert_equal_to_metatensor

CLI = [sys.executable, "-m", "metatensor_dask"]
COMMANDS = ["info", "convert", "run", "apply", "submit", "verify", "demo"]


@pytest.fixture
def store(tmp_path):
    return write_store(tmp_path / "x.zarr")


# -- usage ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_command(capsys, command):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    assert out.startswith(f"usage: metatensor-dask {command}")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["run", "p.yaml", "--jobs", "2"], "--jobs only applies to batch-system clusters"),
        (
            ["run", "p.yaml", "--cluster", "slurm", "--workers", "2"],
            "--workers does not apply to --cluster slurm",
        ),
        (["run", "p.yaml", "--memory-limit", "2GiB"], "--memory-limit needs worker processes"),
        (["run", "p.yaml", "--cluster", "lcoal"], "unknown cluster 'lcoal'"),
        (["run", "p.yaml", "--workers", "0"], "expected a number of at least 1, got 0"),
        (
            ["convert", "a.mts", "b.zarr", "--chunks", "lots"],
            "`chunks` must be a size such as '64MiB' or a number of rows, got 'lots'",
        ),
        (["convert", "a.zarr", "b.npz"], "metatensor files are written as .mts"),
        (
            ["convert", "a.zarr", "b.mts", "--shard-chunks", "2"],
            "--shard-chunks applies to Zarr destinations",
        ),
        (
            ["apply", "pow", "x.zarr", "-o", "y.zarr", "--arg", "B"],
            "--arg expects NAME=VALUE (e.g. --arg B=2)",
        ),
        (["apply", "pow", "x.zarr"], "the following arguments are required: -o/--output"),
        (["demo", "--size", "big"], "expected a size such as 4GiB or 500MB, got 'big'"),
    ],
)
def test_usage_errors_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.startswith("usage: metatensor-dask")
    assert message in err
    assert "Traceback" not in err


def test_failures_exit_1_with_a_message(capsys, tmp_path):
    code, out, err = run(capsys, "run", tmp_path / "missing.yaml")
    assert (code, out) == (1, "")
    assert (
        err == "metatensor-dask run: error: cannot read the pipeline file "
        f"'{tmp_path / 'missing.yaml'}': No such file or directory\n"
    )
    code, _, err = run(capsys, "info", tmp_path / "nothing.zarr")
    assert code == 1
    assert err.startswith("metatensor-dask info: error: no Zarr store found at")


def test_traceback_option_shows_the_error(capsys, tmp_path):
    with pytest.raises(mtd.MetatensorDaskError, match="cannot read the pipeline file"):
        main(["--traceback", "run", str(tmp_path / "missing.yaml")])


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.strip() == f"metatensor-dask {mtd.__version__}"


@pytest.mark.parametrize("launcher", [["-m", "metatensor_dask"], None])
def test_entry_points(launcher):
    """Each launcher runs this command line, whose exit code reaches the shell (one
    new interpreter each: what ``--version`` prints is checked in this process)."""
    if launcher is None:
        command = [os.path.join(os.path.dirname(sys.executable), "metatensor-dask")]
    else:
        command = [sys.executable, *launcher]
    result = subprocess.run([*command, "info"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: metatensor-dask info")
    assert "the following arguments are required: STORE" in result.stderr


# -- info ---------------------------------------------------------------------------------------


def test_info(capsys, store):
    code, out, err = run(capsys, "info", store, "--max-blocks", "2")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"store:       {store} (format 5, complete)"
    assert lines[1] == "keys:        5 blocks, names [center_type, neighbor_type]"
    assert lines[5] == "gradients:   [positions]"
    assert lines[8].split() == [
        "block",
        "key",
        "array",
        "shape",
        "dtype",
        "chunks",
        "memory",
        "disk",
    ]
    assert lines[9].split()[:8] == ["0", "6", "6", "values", "(1,", "3)", "float64", "1"]
    assert lines[10].split()[:5] == ["positions", "(1,", "3,", "3)", "float64"]
    assert lines[-1] == "... and 3 more blocks (--max-blocks -1 shows all)"


def test_info_reads_no_values_or_samples(capsys, store):
    removed = 0
    for root, _, files in os.walk(os.path.join(store, "blocks")):
        if os.path.basename(root) in ("values", "samples"):
            for name in files:
                if name != "zarr.json":
                    os.remove(os.path.join(root, name))
                    removed += 1
    assert removed >= 20  # 5 blocks: values, samples, gradient values and samples
    code, out, _ = run(capsys, "info", store, "--json")
    assert code == 0
    report = json.loads(out)
    assert report["complete"] is True
    assert report["keys"] == metatensor.load(RADIAL).keys.values.tolist()
    assert [a["shape"] for a in report["blocks"][0]] == [[1, 3], [1, 3, 3]]


def test_info_of_an_incomplete_store(capsys, tmp_path):
    mtd.load(RADIAL).to_zarr(str(tmp_path / "x.zarr"), compute=False)  # data never written
    code, out, _ = run(capsys, "info", tmp_path / "x.zarr")
    assert code == 0
    # the remedy of the write left: its Delayed, never computed, in this process
    assert "INCOMPLETE: a write did not finish (to_zarr of user" in out.splitlines()[0]
    assert "compute it (dask.compute) to finish the write" in out.splitlines()[0]


def test_info_of_a_metatensor_file(capsys):
    code, out, _ = run(capsys, "info", SPHERICAL, "--max-blocks", "-1")
    assert code == 0
    assert out.splitlines()[0] == f"store:       {SPHERICAL} (metatensor file, complete)"
    assert out.splitlines()[3] == "components:  [o3_mu]"
    assert len([line for line in out.splitlines() if "positions" in line]) == 1 + 12


# -- convert ------------------------------------------------------------------------------------


def test_convert_round_trip(capsys, tmp_path):
    zarr_store, mts = tmp_path / "x.zarr", tmp_path / "back.mts"
    code, out, err = run(capsys, "convert", SPHERICAL, zarr_store, "--chunks", "1")
    assert (code, out) == (0, "")
    assert err.splitlines()[-1].startswith(f"wrote {zarr_store} in ")
    code, _, _ = run(capsys, "convert", zarr_store, mts, "--quiet")
    assert code == 0
    original = metatensor.load(SPHERICAL)
    back = metatensor.load(str(mts))
    assert metatensor.equal(original, back)
    code, _, err = run(capsys, "convert", SPHERICAL, zarr_store)
    assert code == 1
    assert "already exists: delete it, choose another destination, or pass --overwrite" in err
    assert run(capsys, "convert", SPHERICAL, zarr_store, "--overwrite", "-q")[0] == 0


def test_convert_many_files_into_one_store(capsys, tmp_path):
    """featomic numbers the systems of every file from 0: --renumber system makes them
    follow each other."""
    from ingest_support import renumbered, soap

    batches = [soap([0, 1]), soap([2]), soap([3, 4, 5])]
    paths = []
    for i, batch in enumerate(batches):
        paths.append(tmp_path / f"{i}.mts")
        metatensor.save(str(paths[-1]), batch)
    out = tmp_path / "all.zarr"
    code, _, err = run(capsys, "convert", *paths[:2], out, "--append", "--renumber", "system")
    assert code == 0, err
    assert run(capsys, "convert", paths[2], out, "--append", "--renumber", "system", "-q")[0] == 0
    expected = metatensor.join(
        [renumbered(batches[0], 0), renumbered(batches[1], 2), renumbered(batches[2], 3)],
        axis="samples",
        different_keys="union",
    )
    assert_equal_to_metatensor(mtd.open_zarr(out).compute(), expected)
    code, _, err = run(capsys, "convert", *paths, tmp_path / "other.zarr")
    assert code == 2 and "several sources go into one store with --append" in err
    code, _, err = run(capsys, "convert", paths[0], tmp_path / "x.mts", "--append")
    assert code == 2 and "DST must be one" in err


def test_convert_with_shards(capsys, tmp_path):
    code, _, _ = run(
        capsys, "convert", RADIAL, tmp_path / "x.zarr", "--chunks", "1", "--shard-chunks", "2", "-q"
    )
    assert code == 0
    _, out, _ = run(capsys, "info", tmp_path / "x.zarr")
    assert "(shards of 2)" in out or "1 x 1 rows" in out  # one-row blocks are one shard
    assert_equal_to_metatensor(
        mtd.open_zarr(tmp_path / "x.zarr").compute(), metatensor.load(RADIAL)
    )


# -- run and apply ------------------------------------------------------------------------------


def test_run(capsys, tmp_path, store):
    pipeline = write_pipeline(tmp_path, input="x.zarr", output="out.zarr")
    code, out, err = run(capsys, "run", pipeline)
    assert (code, out) == (0, "")
    lines = err.splitlines()
    assert lines[
        0
    ] == f"writing {tmp_path / 'out.zarr'} (2 steps) on threads ({os.cpu_count()})" or lines[
        0
    ].startswith(f"writing {tmp_path / 'out.zarr'} (2 steps) on threads (")
    assert any(line.startswith("progress: 100% (") for line in lines)
    assert lines[-1].startswith(f"wrote {tmp_path / 'out.zarr'} in ")
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "out.zarr").compute(), expected_cube())

    code, _, err = run(capsys, "run", pipeline)
    assert code == 1
    assert "already exists: delete it or choose another output, or pass --resume" in err
    assert run(capsys, "run", pipeline, "--resume", "--quiet") == (0, "", "")


def test_run_quiet_prints_nothing(capfd, tmp_path, store):
    pipeline = write_pipeline(tmp_path, input="x.zarr", output="out.zarr")
    assert main(["run", pipeline, "--quiet"]) == 0
    assert capfd.readouterr() == ("", "")


def test_progress_setting_turns_the_bars_off(capsys, tmp_path, store):
    pipeline = write_pipeline(tmp_path, input="x.zarr", output="out.zarr")
    with dask.config.set({"metatensor_dask.progress": False}):
        code, _, err = run(capsys, "run", pipeline)
    assert code == 0
    assert "progress:" not in err
    assert err.splitlines()[-1].startswith(f"wrote {tmp_path / 'out.zarr'} in ")


def test_progress_bar_in_a_terminal(capsys, monkeypatch, tmp_path, store):
    pipeline = write_pipeline(tmp_path, input="x.zarr", output="out.zarr")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, out, err = run(capsys, "run", pipeline)
    assert (code, out) == (0, "")
    assert "] | 100% Completed |" in err  # dask's ProgressBar
    assert "progress:" not in err


def test_run_on_a_local_cluster(capsys, tmp_path, store):
    pipeline = write_pipeline(tmp_path, input="x.zarr", output="out.zarr")
    code, _, err = run(
        capsys, "run", pipeline, "--cluster", "local", "--workers", "1", "--memory-limit", "1GiB"
    )
    assert code == 0, err
    assert "on LocalCluster (1 worker x " in err
    assert "1.00 GiB each" in err
    assert any(line.startswith("progress: 100% (") for line in err.splitlines())
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "out.zarr").compute(), expected_cube())


def test_apply(capsys, tmp_path, store):
    out = tmp_path / "out.zarr"
    code, _, err = run(capsys, "apply", "multiply", store, store, "-o", out, "-q")
    assert (code, err) == (0, "")
    x = metatensor.load(RADIAL)
    assert_equal_to_metatensor(mtd.open_zarr(out).compute(), metatensor.multiply(x, x))
    code, _, _ = run(capsys, "apply", "pow", store, "-o", tmp_path / "p.zarr", "--arg", "B=3", "-q")
    assert code == 0
    assert_equal_to_metatensor(
        mtd.open_zarr(tmp_path / "p.zarr").compute(), metatensor.pow(x, 3), rtol=1e-15
    )


def test_apply_errors(capsys, tmp_path, store):
    code, _, err = run(capsys, "apply", "pow", store, "-o", tmp_path / "o.zarr", "--arg", "C=2")
    assert code == 1
    assert "pow(A, B) cannot be called with 1 input tensor(s) and args {'C': 2}" in err
    code, _, err = run(
        capsys, "apply", "pow", tmp_path / "none.zarr", "-o", tmp_path / "o.zarr", "--arg", "B=2"
    )
    assert code == 1
    assert f"input '{tmp_path / 'none.zarr'}' not found: check the path" in err
    assert "input0" not in err
    code, _, err = run(capsys, "apply", "abs", store, "-o", store)
    assert code == 1
    assert f"the output store {store} is one of its inputs" in err


def test_apply_names_the_yaml_words_read_as_booleans(capsys, tmp_path, store):
    arguments = ["--arg", "axis=samples", "--arg", "old=system", "--arg", "new=on"]
    code, _, err = run(
        capsys, "apply", "rename_dimension", store, "-o", tmp_path / "o.zarr", *arguments
    )
    assert code == 1
    assert "--arg new=on was read as True; to pass the string, quote it: --arg \"new='on'\"" in err
    assert "old=system" not in err.split("(")[-1]
    assert not (tmp_path / "o.zarr").exists()
    # not for a refusal that is not the operation's
    code, _, err = run(
        capsys,
        "apply",
        "rename_dimension",
        tmp_path / "none.zarr",
        "-o",
        tmp_path / "o.zarr",
        *arguments,
    )
    assert code == 1 and "not found" in err and "was read as" not in err
    arguments[-1:] = ["new='on'", "-q"]
    code, _, err = run(
        capsys, "apply", "rename_dimension", store, "-o", tmp_path / "o.zarr", *arguments
    )
    assert (code, err) == (0, "")
    assert "on" in mtd.open_zarr(tmp_path / "o.zarr").sample_names


# -- verify -------------------------------------------------------------------------------------


def test_verify(capsys, store):
    code, out, err = run(capsys, "verify", store)
    assert (code, out) == (0, "")
    assert err.splitlines()[-1].startswith(f"{store} is complete and intact (")


def test_verify_prints_its_notes(capsys, store):
    # a temporary file of an atomic write, as a writer killed before its rename leaves it
    leftover = os.path.join(store, "blocks", "0", "values", f"zarr.json.{'ab' * 16}.partial")
    with open(leftover, "wb") as file:
        file.write(b"{")
    code, _, err = run(capsys, "verify", store)
    assert code == 0
    (note,) = [line for line in err.splitlines() if ": note: " in line]
    assert note.startswith(f"metatensor-dask verify: {store}: note: 1 temporary file of")
    assert "zarr.json." in note and "delete them" in note


def test_verify_finds_corrupted_chunks(capsys, store):
    array = os.path.join(store, "blocks", "2", "gradients", "positions", "values")
    (chunk,) = [
        f
        for f in glob.glob(os.path.join(array, "**"), recursive=True)
        if os.path.isfile(f) and not f.endswith("zarr.json")
    ]
    with open(chunk, "rb") as file:
        data = bytearray(file.read())
    data[5] ^= 0xFF
    with open(chunk, "wb") as file:
        file.write(data)
    code, _, err = run(capsys, "verify", store)
    assert code == 1
    assert (
        f"damaged: the checksum of the chunk '{os.path.basename(chunk)}' of the array "
        "'blocks/2/gradients/positions/values' is wrong" in err
    )
    assert err.splitlines()[-1] == f"1 problem(s) found in {store}"


def test_verify_finds_wrong_labels(capsys, store):
    import zarr

    samples = zarr.open_array(
        os.path.join(store, "blocks", "0", "gradients", "positions", "samples"), mode="r+"
    )
    samples[0, 0] = 7  # the block has one sample: 'sample' must be 0
    code, _, err = run(capsys, "verify", store, "-q")
    assert code == 1
    assert (
        "the Labels 'blocks/0/gradients/positions/samples' do not match the digest recorded" in err
    )


def test_verify_finds_repeated_labels_and_wrong_row_pointers(capsys, tmp_path):
    import zarr

    from metatensor_dask.datasets import featomic_like

    store = str(tmp_path / "f.zarr")
    featomic_like(1, 6, neighbors=(2, 3), chunks=2).to_zarr(store)
    samples = zarr.open_array(os.path.join(store, "blocks", "0", "samples"), mode="r+")
    samples[1] = samples[0]
    pointer = zarr.open_array(
        os.path.join(store, "blocks", "1", "gradients", "positions", "row_pointer"), mode="r+"
    )
    pointer[1] += 1
    code, _, err = run(capsys, "verify", store, "-q")
    assert code == 1
    assert "the Labels 'blocks/0/samples' do not match the digest recorded" in err
    assert (
        "the gradient samples 'blocks/1/gradients/positions/samples' disagree with the "
        "stored row pointer"
    ) in err


def test_verify_finds_incomplete_stores(capsys, tmp_path):
    mtd.load(RADIAL).to_zarr(str(tmp_path / "x.zarr"), compute=False)
    code, _, err = run(capsys, "verify", tmp_path / "x.zarr")
    assert code == 1
    assert "the store is incomplete: a write stopped before the end" in err


def test_verify_counts_the_chunks_an_incomplete_store_recorded(capsys, tmp_path):
    store = tmp_path / "x.zarr"
    mtd.load(RADIAL).to_zarr(str(store), compute=False)
    # the record a storing task writes once its one chunk is stored
    (store / ".progress").mkdir(exist_ok=True)
    marker = ".progress/" + urllib.parse.quote("blocks/0/values/0", safe="")
    (store / ".progress" / "batch-one.json").write_text(json.dumps({"chunks": [marker]}))
    code, _, err = run(capsys, "verify", store)
    assert code == 1
    assert "the store is incomplete: a write stopped before the end" in err
    assert "1 chunk recorded" in err and "1 chunks" not in err, err


def test_verify_of_something_else(capsys, tmp_path):
    import zarr

    zarr.open_group(str(tmp_path / "other.zarr"), mode="w")
    code, _, err = run(capsys, "verify", tmp_path / "other.zarr")
    assert code == 1
    assert "is not a metatensor-dask store" in err


# -- submit -------------------------------------------------------------------------------------


def test_submit_dry_run(capsys, tmp_path, store):
    pipeline = write_pipeline(tmp_path, input="x.zarr", output="out.zarr")
    code, out, _ = run(
        capsys,
        "submit",
        pipeline,
        "--requeue",
        "--cpus",
        "4",
        "--mem",
        "8G",
        "--time",
        "01:00:00",
        "--sbatch-option=--qos=long",
        "--dry-run",
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "#!/bin/bash"
    for directive in [
        "--cpus-per-task=4",
        "--mem=8G",
        "--time=01:00:00",
        "--requeue",
        "--open-mode=append",
        "--qos=long",
    ]:
        assert f"#SBATCH {directive}" in lines
    assert f"#SBATCH --output={tmp_path}/metatensor-dask-%j.log" in lines
    assert (
        lines[-1]
        == f"exec {sys.executable} -m metatensor_dask run {pipeline} --cluster local --resume"
    )


def test_submit_refuses_broken_pipelines(capsys, tmp_path):
    pipeline = write_pipeline(tmp_path, "inputs: {x: x.zarr}\nsteps: []\noutput: o.zarr\n")
    code, _, err = run(capsys, "submit", pipeline, "--dry-run")
    assert code == 1
    assert "`steps` must be a non-empty list" in err


def _fake_sbatch(directory, body):
    path = os.path.join(directory, "sbatch")
    with open(path, "w") as file:
        file.write("#!/bin/sh\n" + body)
    os.chmod(path, os.stat(path).st_mode | stat.S_IEXEC)


def test_submit_prints_the_job_id(capsys, monkeypatch, tmp_path, store):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_sbatch(bin_dir, f'cp "$2" {tmp_path}/submitted.sh\necho "4242;cluster"\n')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    pipeline = write_pipeline(tmp_path, input="x.zarr", output="out.zarr")
    code, out, err = run(capsys, "submit", pipeline)
    assert (code, out) == (0, "4242\n")
    assert "as SLURM job 4242" in err
    script = (tmp_path / "submitted.sh").read_text()
    assert "--requeue" not in script
    assert script.splitlines()[-1].endswith(f"run {pipeline} --cluster local")


def test_submit_errors(capsys, monkeypatch, tmp_path, store):
    pipeline = write_pipeline(tmp_path, input="x.zarr", output="out.zarr")
    monkeypatch.setenv("PATH", str(tmp_path))
    code, _, err = run(capsys, "submit", pipeline)
    assert code == 1
    assert "sbatch not found: run `submit --scheduler slurm` on a login node" in err
    _fake_sbatch(tmp_path, 'echo "sbatch: error: invalid partition" >&2\nexit 1\n')
    code, _, err = run(capsys, "submit", pipeline)
    assert code == 1
    assert "sbatch refused the job" in err and "invalid partition" in err


# -- demo ---------------------------------------------------------------------------------------


def test_demo(capsys, tmp_path):
    code, out, err = run(capsys, "demo", "--workdir", tmp_path / "demo", "--size", "3MiB")
    assert (code, out) == (0, ""), err
    assert "[4/5] featomic-like: result equals numpy on" in err
    assert err.splitlines()[-1].startswith("[5/5] demo finished in ")
    for name in [
        "radial-spectrum.zarr",
        "spherical-expansion.zarr",
        "featomic-like.zarr",
        "featomic-like-result.zarr",
    ]:
        assert os.path.isdir(tmp_path / "demo" / name)
    # the demo's pipeline file runs as it is
    code, _, _ = run(
        capsys, "run", tmp_path / "demo" / "featomic-like-pipeline.yaml", "--resume", "-q"
    )
    assert code == 0


def test_demo_refuses_a_wrong_setting_before_making_its_folder(capsys, tmp_path):
    with dask.config.set({"metatensor_dask.window-tasks": 0}):
        code, _, err = run(capsys, "demo", "--workdir", tmp_path / "demo")
    assert code == 1 and "window-tasks=0" in err
    assert not (tmp_path / "demo").exists()


def test_demo_check_catches_a_wrong_result():
    from metatensor_dask.datasets import featomic_like
    from metatensor_dask.execution.demo import check_against_numpy

    def cube_summed(x):
        return mtd.sum_over_samples(mtd.multiply(mtd.pow(x, 2), x), "atom")

    x = featomic_like(2, 12, neighbors=(3, 5), chunks=4)
    assert check_against_numpy(x, cube_summed(x), max_rows=2) == (3, 6)
    with pytest.raises(AssertionError, match=r"block .*, row \d+: values differ from numpy"):
        check_against_numpy(x, mtd.sum_over_samples(mtd.multiply(x, x), "atom"))
    # same values, positions gradients twice too large
    doubled = mtd.TensorMap(
        x.keys,
        [
            b._with_arrays([a * 2 if i == 1 else a for i, a in enumerate(b._arrays())])
            for b in x.blocks()
        ],
    )
    with pytest.raises(AssertionError, match=r"gradient 'positions' values differ from numpy"):
        check_against_numpy(x, cube_summed(doubled))


# -- failures inside pipelines: one line, no traceback --------------------------------------


def _damage_a_chunk(store):
    with open(os.path.join(store, "blocks", "0", "values", "c.0.0"), "wb") as file:
        file.write(b"garbage")


def test_quiet_failure_on_a_local_cluster_prints_one_line(tmp_path, store):
    _damage_a_chunk(store)
    pipeline = write_pipeline(tmp_path, input="x.zarr", output="out.zarr")
    result = subprocess.run(
        [*CLI, "run", pipeline, "--cluster", "local", "--workers", "1", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (result.returncode, result.stdout) == (1, "")
    # without the silenced worker logs, "distributed.worker - ERROR - Compute Failed" and
    # its traceback came first
    assert result.stderr.splitlines() == [
        "metatensor-dask run: error: computing the steps (pow, multiply) into "
        f"{tmp_path / 'out.zarr'} failed: the store at {tmp_path / 'x.zarr'} is damaged: "
        "the chunk 'c.0.0' of the array 'blocks/0/values' has 3 bytes, not 24; "
        "`metatensor-dask verify` lists every problem; write or convert the tensor again "
        "from its source"
    ]


def test_a_failing_step_is_one_line_naming_the_step(capsys, tmp_path, store):
    # the operation refuses its argument while the pipeline is built
    code, out, err = run(
        capsys, "apply", "sum_over_samples", store, "-o", tmp_path / "o.zarr", "--arg",
        "sample_names=[nothing]",
    )  # fmt: skip
    assert (code, out) == (1, "")
    assert err.startswith("metatensor-dask apply: error: operation sum_over_samples: "), err
    assert len(err.splitlines()) == 1 and "Traceback" not in err

    # an exception that is not a user error is one line too, with its type
    assert describe(KeyError("x")) == "KeyError: 'x'"
    assert describe(ValueError("no such dimension")) == "no such dimension"

    # an operation that gives no TensorMap (one_hot: an array) is refused with the line
    # of the step, before any data is read
    pipeline = write_pipeline(
        tmp_path,
        "inputs: {x: x.zarr}\nsteps:\n  - {op: one_hot, args: {dimension: 1}}\noutput: o.zarr\n",
    )
    code, _, err = run(capsys, "run", pipeline, "-q")
    assert code == 1
    assert err.startswith(
        f"metatensor-dask run: error: {pipeline}, line 3 (steps[0].op): operation 'one_hot' "
        "returns np.ndarray, not a TensorMap"
    ), err


def test_a_pipeline_file_that_is_not_text_is_named(capsys, tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"inputs: \xff\xfe\n")
    code, _, err = run(capsys, "run", path)
    assert code == 1
    assert err == (
        f"metatensor-dask run: error: {path}: the pipeline file is not UTF-8 text (byte 8): "
        "save it as UTF-8\n"
    )


@pytest.mark.parametrize("given", ["spectrum.mts", "spectrum.zarr"])
def test_a_tensor_given_to_run_is_named(capsys, tmp_path, given):
    path = tmp_path / given
    if given.endswith(".mts"):
        path.write_bytes(b"PK")
    else:
        path.mkdir()
    code, _, err = run(capsys, "run", path)
    assert code == 1
    what = "a metatensor file" if given.endswith(".mts") else "a directory"
    assert err == (
        f"metatensor-dask run: error: '{path}' is {what}, not a pipeline: `run` takes a YAML "
        "pipeline file; to apply one operation to a tensor use `metatensor-dask apply OP "
        "INPUT -o OUTPUT`, to convert it `metatensor-dask convert`\n"
    )


def test_broken_json_inside_a_store_names_the_store(capsys, tmp_path, store):
    # an interrupted write (metadata and plan written, no chunk) whose plan is then damaged
    mtd.open_zarr(store).to_zarr(str(tmp_path / "out.zarr"), compute=False)
    (tmp_path / "out.zarr" / ".progress" / "plan.json").write_text("{not json")
    pipeline = write_pipeline(
        tmp_path, "inputs: {x: x.zarr}\nsteps: [{op: abs}]\noutput: out.zarr\n"
    )
    code, _, err = run(capsys, "run", pipeline, "--resume", "-q")
    assert code == 1
    assert err.startswith(
        f"metatensor-dask run: error: cannot resume {tmp_path / 'out.zarr'}: the "
        f"interrupted write at {tmp_path / 'out.zarr'} left a damaged record of "
        "its plan ('.progress/plan.json', cut short while it was written)"
    ), err


# -- operations taking a list of tensors: join ----------------------------------------------


def test_apply_join_equals_metatensor(capsys, tmp_path, store):
    x = metatensor.load(RADIAL)
    code, _, err = run(
        capsys, "apply", "join", store, store, "-o", tmp_path / "s.zarr",
        "--arg", "axis=samples", "--arg", "add_dimension=tensor", "-q",
    )  # fmt: skip
    assert (code, err) == (0, "")
    expected = metatensor.join([x, x], axis="samples", add_dimension="tensor")
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "s.zarr").compute(), expected)

    # different keys: the second input lacks two blocks
    fewer = metatensor.drop_blocks(x, metatensor.Labels(x.keys.names, x.keys.values[:2]))
    metatensor.save(str(tmp_path / "fewer.mts"), fewer)
    code, _, err = run(
        capsys, "apply", "join", store, tmp_path / "fewer.mts", "-o", tmp_path / "u.zarr",
        "--arg", "axis=properties", "--arg", "different_keys=union",
        "--arg", "add_dimension=tensor", "-q",
    )  # fmt: skip
    assert (code, err) == (0, "")
    expected = metatensor.join(
        [x, fewer], axis="properties", different_keys="union", add_dimension="tensor"
    )
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "u.zarr").compute(), expected)


def test_join_in_a_pipeline_with_several_inputs(capsys, tmp_path, store):
    metatensor.save(str(tmp_path / "y.mts"), metatensor.pow(metatensor.load(RADIAL), 2))
    pipeline = write_pipeline(
        tmp_path,
        """\
        inputs: {x: x.zarr, y: y.mts}
        steps:
          - {op: join, inputs: [x, y, x], args: {axis: samples, add_dimension: tensor}}
        output: joined.zarr
        """,
    )
    code, _, err = run(capsys, "run", pipeline, "-q")
    assert (code, err) == (0, "")
    x, y = metatensor.load(RADIAL), metatensor.load(str(tmp_path / "y.mts"))
    expected = metatensor.join([x, y, x], axis="samples", add_dimension="tensor")
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "joined.zarr").compute(), expected)


def test_join_arguments_are_checked_before_running(capsys, tmp_path, store):
    code, _, err = run(capsys, "apply", "join", store, store, "-o", tmp_path / "o.zarr")
    assert code == 1
    assert "join(tensors, axis, different_keys, add_dimension) cannot be called" in err
    assert "missing a required argument: 'axis'" in err


def test_bare_json_errors_name_the_store(capsys, tmp_path, store):
    # without consolidated metadata every node's zarr.json is read: a broken one raised a
    # JSONDecodeError whose message named no file
    root = os.path.join(store, "zarr.json")
    with open(root) as file:
        document = json.load(file)
    del document["consolidated_metadata"]
    # as a format 3 root, which has no store id (format 4 roots without inline metadata
    # are refused before any document is read)
    document["attributes"]["metatensor_dask"]["format"] = 3
    del document["attributes"]["metatensor_dask"]["store_id"]
    with open(root, "w") as file:
        json.dump(document, file)
    with open(os.path.join(store, "blocks", "0", "values", "zarr.json"), "w") as file:
        file.write("{not json")
    code, _, err = run(capsys, "convert", store, tmp_path / "x.mts", "-q")
    assert code == 1
    assert err == (
        f"metatensor-dask convert: error: the store at {store} is damaged: "
        "'blocks/0/values/zarr.json' is not valid JSON (Expecting property name enclosed in "
        "double quotes: line 1 column 2 (char 1)); `metatensor-dask verify` lists every "
        "problem; write or convert the tensor again from its source\n"
    )
    code, _, err = run(capsys, "apply", "abs", store, "-o", tmp_path / "o.zarr", "-q")
    assert code == 1
    assert f"cannot open '{store}': the store at {store} is damaged: " in err
    assert "'blocks/0/values/zarr.json' is not valid JSON (Expecting property name" in err
