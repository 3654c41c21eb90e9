"""Every tutorial of examples/ runs as a script, warnings as errors (``make docs`` runs
them too, through sphinx-gallery; this keeps them checked by ``make test``)."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples")


def test_every_example_is_a_gallery_script():
    assert os.path.isfile(os.path.join(EXAMPLES, "GALLERY_HEADER.rst"))
    scripts = sorted(name for name in os.listdir(EXAMPLES) if name.endswith(".py"))
    assert scripts[0] == "managing_gradients.py"  # the seed tutorial is example 1
    for name in scripts:
        with open(os.path.join(EXAMPLES, name), encoding="utf-8") as file:
            text = file.read()
        title = text.split('"""')[1].strip().splitlines()
        assert len(title) > 1 and set(title[1]) == {"="}, f"{name}: no sphinx-gallery title"


def test_store_to_store_writes_and_checks_its_result(tmp_path):
    output = _run_example("store_to_store.py", tmp_path)
    assert output.split()[-1] == "True"
    assert "100% Completed" in output
    (work,) = [path for path in tmp_path.iterdir() if path.is_dir()]
    assert sorted(path.name for path in work.iterdir()) == ["descriptors.zarr", "squared.zarr"]


def _run_example(name, tmp_path, *warning_filters, logged=False):
    """The standard output of the example ``name``; ``logged``: run under a root logging
    handler at INFO level, as the docs build has (a theme's package configures one), and
    return the standard error too."""
    script = os.path.join(EXAMPLES, name)
    run = [script]
    if logged:
        run = [
            "-c",
            "import logging, runpy; logging.basicConfig(level=logging.INFO); "
            f"runpy.run_path({script!r}, run_name='__main__')",
        ]
    result = subprocess.run(
        [sys.executable, "-W", "error", *warning_filters, *run],
        cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return (result.stdout, result.stderr) if logged else result.stdout


def test_featomic_batches_make_one_verified_store(tmp_path):
    output = _run_example("one_store_from_featomic_batches.py", tmp_path)
    assert output.split()[-1] == "True"  # verify
    # the first block after the sum over atoms: one row per system that has such atoms
    assert "(7, 27) (24, 3, 27)" in output
    (work,) = [path for path in tmp_path.iterdir() if path.is_dir()]
    assert [path.name for path in work.iterdir()] == ["soap.zarr"]


# dask workers started as jobs of this machine: one such test at a time
@pytest.mark.xdist_group("clusters")
def test_the_pipeline_runs_on_jobqueue_workers(tmp_path):
    # dask-jobqueue's local jobs are killed without being waited for when the cluster
    # closes (ResourceWarning from its own code, after the result is printed)
    # run as the docs build runs it, under a root logging handler at INFO level
    output, errors = _run_example(
        "on_batch_system_workers.py", tmp_path, "-W", "ignore::ResourceWarning", logged=True
    )
    # distributed's INFO logs (each worker and client coming and going) are quieted
    assert "INFO:distributed" not in errors, errors
    # the job script: a dask worker with the memory asked for, on the loopback
    assert "distributed.cli.dask_worker tcp://127.0.0.1:" in output
    assert "--memory-limit 1.00GiB" in output
    assert output.split()[-1] == "True"
