"""Pipelines stopped as a batch system stops them, then restarted.

A ``run --cluster local`` is stopped with SIGTERM (what SLURM sends at the time limit
or on ``scancel``), then SIGKILL if it is still there; the restart with ``--resume``
must give metatensor's result (values and gradients) and a store that ``verify``
accepts. A restart whose inputs changed meanwhile must refuse, never mix two inputs in
one store. (A second SLURM job for the same output is in ``test_slurm_pipeline.py``,
beside the other submissions.)

The stopped run is a process of its own (the stop is what is tested), and one stopped
run serves every restart: each refused restart leaves the store as it was. The refused
and resumed runs that follow are ``main([...])`` in this process (both refusals come
before any cluster starts), the resume on the module's 2-worker LocalCluster
(``--cluster`` its scheduler address): a resume reads the stopped run's records the
same way on any cluster, and a new interpreter starting a LocalCluster took several
seconds. The run started over once the store is deleted runs on threads.
"""

import os
import shutil
import signal
import subprocess
import sys

import metatensor
import pytest
from pipeline_support import is_complete, recorded, run, wait_for_records

import metatensor_dask as mtd
from metatensor_dask.datasets import featomic_like
from metatensor_dask.execution.cli import main
from metatensor_dask.io.convert import to_metatensor
from metatensor_dask.operations import multiply

pytestmark = pytest.mark.xdist_group("slurm")

CLI = [sys.executable, "-m", "metatensor_dask"]
PIPELINE = """\
inputs: {x: x.zarr}
steps:
  - {op: pow, args: {B: 2}, name: squared}
  - {op: multiply, inputs: [squared, x]}
  - {op: sum_over_samples, args: {sample_names: atom}}
output: out.zarr
"""
TIMEOUT = 240


def _oracle(directory):
    """metatensor-operations' result of the pipeline on the input stored now."""
    x = to_metatensor(mtd.open_zarr(str(directory / "x.zarr")))
    return metatensor.sum_over_samples(metatensor.multiply(metatensor.pow(x, 2), x), "atom")


def _inputs(directory, systems, atoms):
    """An input store with gradients, of ``systems`` systems of ``atoms`` atoms, and the
    pipeline file in ``directory``."""
    x = featomic_like(systems, atoms, neighbors=(4, 8), chunks=2)
    x.to_zarr(str(directory / "x.zarr"))
    (directory / "p.yaml").write_text(PIPELINE)
    return directory


@pytest.fixture
def directory(tmp_path):
    """Inputs written by 108 tasks: a run on a LocalCluster takes a few seconds."""
    return _inputs(tmp_path, 2, 12)


def _refused(directory, capsys, *options):
    """``run --cluster local`` of the pipeline in ``directory`` (in this process: its
    refusals come before its LocalCluster starts), which must refuse; its stderr."""
    code, _, err = _run_in(directory, capsys, "--cluster", "local", "--workers", "2", *options)
    assert code == 1, err
    return err


def _resumed(directory, capsys, *options):
    """``run --resume *options`` of the pipeline in ``directory`` (in this process),
    which must succeed."""
    code, _, err = _run_in(directory, capsys, "--resume", *options)
    assert code == 0, err


def _run_in(directory, capsys, *options):
    """``run p.yaml -q *options`` from ``directory``: (exit code, stdout, stderr)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(directory)
        return run(capsys, "run", "p.yaml", "-q", *options)


def _stopped_run(directory, signals):
    """A run into ``out.zarr`` on a LocalCluster of one worker process (what is checked
    is the restart, and each worker process is a new interpreter), sent each of
    ``signals`` in turn (5 s apart while it lives) once it recorded a few chunks; its
    exit code."""
    store = str(directory / "out.zarr")
    process = subprocess.Popen(
        [*CLI, "run", "p.yaml", "--cluster", "local", "--workers", "1", "-q"],
        cwd=directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for_records(store, 5, TIMEOUT, process), "the run did not start writing"
        for number in signals:
            process.send_signal(number)
            try:
                return process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                continue
        return process.wait(timeout=5)
    finally:
        process.kill()
        process.wait()


def _assert_verified(store):
    """``metatensor-dask verify -q store`` accepts the store (run in this process: a new
    interpreter for it took a second or two)."""
    assert main(["verify", store, "-q"]) == 0


def _replace_input(directory, replacement):
    """Put the store ``replacement`` (in ``directory``) in place of the input
    ``x.zarr``, which is kept as ``x-before.zarr``."""
    os.rename(directory / "x.zarr", directory / "x-before.zarr")
    os.rename(directory / replacement, directory / "x.zarr")


def _restore_input(directory, kept_as):
    """Put the input kept as ``x-before.zarr`` back, keeping the current ``x.zarr`` as
    ``kept_as``."""
    os.rename(directory / "x.zarr", directory / kept_as)
    os.rename(directory / "x-before.zarr", directory / "x.zarr")


def _assert_refuses_other_input_values(directory, capsys):
    """With the input written again (the same labels and shapes, other values), a
    ``--resume`` of the stopped run refuses and leaves its store as it was."""
    store = str(directory / "out.zarr")
    written = recorded(store)
    multiply(mtd.open_zarr(str(directory / "x.zarr")), 2.0).to_zarr(str(directory / "x2.zarr"))
    _replace_input(directory, "x2.zarr")

    refused = _refused(directory, capsys, "--resume")
    assert f"cannot resume {store}" in refused
    assert "another computation" in refused
    assert f"delete {store} to start over" in refused
    assert not is_complete(store) and recorded(store) == written
    _restore_input(directory, "x2.zarr")


def _assert_metatensors_result(directory):
    """``out.zarr`` in ``directory`` passes ``verify`` and holds metatensor-operations'
    result of the pipeline on the input stored now (values and gradients)."""
    store = str(directory / "out.zarr")
    _assert_verified(store)
    metatensor.allclose_raise(
        _oracle(directory), to_metatensor(mtd.open_zarr(store)), rtol=1e-12, atol=1e-14
    )


def test_a_run_stopped_by_sigterm_resumes_to_metatensors_result(
    directory, capsys, two_worker_processes
):
    """One stopped run serves the three restarts a requeued job may make: without
    ``--resume`` (refused), with other input values (refused, nothing mixed), and the
    resume of the same input (metatensor's result). Then the store deleted, as the
    refusal tells, a ``--resume`` of the new input starts over (what a requeued job
    runs)."""
    store = str(directory / "out.zarr")
    code = _stopped_run(directory, [signal.SIGTERM, signal.SIGKILL])
    assert code in (143, -signal.SIGKILL)  # ended by itself, or killed 5 s later
    assert not is_complete(store), "the run ended before it could be stopped"

    assert "pass --resume to finish an interrupted run" in _refused(directory, capsys)
    _assert_refuses_other_input_values(directory, capsys)

    _resumed(directory, capsys, "--cluster", two_worker_processes.scheduler_address)
    _assert_metatensors_result(directory)

    # (on threads: this run starts over, and the 1,294 small tasks of the pipeline took
    # 5 to 10 s on the LocalCluster, half a second on threads)
    _replace_input(directory, "x2.zarr")
    shutil.rmtree(store)
    _resumed(directory, capsys)
    _assert_metatensors_result(directory)
