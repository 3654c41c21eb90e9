"""A command stopped by SIGTERM (a batch system's time limit, ``scancel``) or Ctrl-C.

The command must end by itself with one line naming what it left unfinished and the
remedy, with 128 plus the signal's number as exit code, its lock released (a restart
needs no wait for the lock to go stale) and no process of its cluster left behind.
"""

import shutil
import signal
import subprocess
import sys

import psutil
import pytest
from pipeline_support import is_complete, run, wait_for_records

import metatensor_dask as mtd
from metatensor_dask.datasets import featomic_like
from metatensor_dask.execution import cli
from metatensor_dask.execution._stopping import Terminated, stop_message, unfinished

CLI = [sys.executable, "-m", "metatensor_dask"]
PIPELINE = """\
inputs: {x: x.zarr}
steps:
  - {op: pow, args: {B: 2}, name: squared}
  - {op: multiply, inputs: [squared, x]}
output: out.zarr
"""
TIMEOUT = 240


@pytest.fixture
def directory(tmp_path):
    """An input store with gradients whose pipeline takes a few seconds to write: on a
    quiet machine, a run of half as many systems could finish between its third chunk
    and the signal."""
    directory = tmp_path
    featomic_like(2, 24, neighbors=(4, 8), chunks=2).to_zarr(str(directory / "x.zarr"))
    (directory / "p.yaml").write_text(PIPELINE)
    return directory


def _stopped(directory, number, options):
    """A run into ``out.zarr`` sent the signal ``number`` once it recorded a few chunks:
    its exit code, its standard error, and the processes it had started."""
    store = str(directory / "out.zarr")
    process = subprocess.Popen(
        [*CLI, "run", "p.yaml", "-q", *options],
        cwd=directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for_records(store, 3, TIMEOUT, process), "the run did not start writing"
        children = psutil.Process(process.pid).children(recursive=True)
        process.send_signal(number)
        _, err = process.communicate(timeout=60)
        return process.returncode, err, children
    finally:
        process.kill()
        process.wait()


def _assert_left_resumable(directory, err, capsys):
    store = str(directory / "out.zarr")
    assert not is_complete(store), "the run ended before it could be stopped"
    assert (
        err.strip()
        .splitlines()[-1]
        .endswith(
            f"{store} is incomplete; run the pipeline again with --resume "
            "(or submit it with --resume) to finish it"
        )
    ), err
    # released: a resume starts at once, where a lock left behind would be refused
    # (in this process: a new interpreter took a second or two and checks the same lock)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(directory)
        code, _, resumed = run(capsys, "run", "p.yaml", "-q", "--resume")
    assert code == 0, resumed
    assert is_complete(store)


@pytest.mark.xdist_group("serial")
def test_sigterm_ends_a_run_on_a_local_cluster_with_its_remedy(directory, capsys):
    code, err, children = _stopped(
        directory, signal.SIGTERM, ["--cluster", "local", "--workers", "2"]
    )
    assert code == 143, err
    assert "metatensor-dask run: terminated (SIGTERM): " in err
    assert children, "the run started no worker processes"
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"worker processes left behind: {alive}"
    _assert_left_resumable(directory, err, capsys)


@pytest.mark.xdist_group("serial")
def test_ctrl_c_ends_a_threaded_run_with_its_remedy(directory, capsys):
    code, err, _ = _stopped(directory, signal.SIGINT, ["--workers", "2"])
    assert code == 130, err
    assert "metatensor-dask run: interrupted: " in err
    _assert_left_resumable(directory, err, capsys)


def test_a_stop_before_the_output_exists_says_nothing_was_written(tmp_path):
    output = str(tmp_path / "never.zarr")
    with pytest.raises(Terminated) as raised:
        with unfinished(output, "run it again"):
            raise Terminated
    assert stop_message(raised.value) == f"terminated (SIGTERM) before writing {output}"


@pytest.mark.parametrize("command", ["run", "convert --append"])
def test_a_stop_once_the_output_is_complete_says_it_is_complete(
    tmp_path, capsys, monkeypatch, command
):
    # SIGTERM while the cluster closes, after the write finished (the computation
    # returned), leaves nothing to resume
    featomic_like(2, 4, neighbors=(2, 3), chunks=1).to_zarr(str(tmp_path / "x.zarr"))
    (tmp_path / "p.yaml").write_text(PIPELINE)
    monkeypatch.chdir(tmp_path)
    computed = cli._compute

    def computed_then_terminated(*args, **kwargs):
        computed(*args, **kwargs)
        raise Terminated

    monkeypatch.setattr(cli, "_compute", computed_then_terminated)
    if command == "run":
        output, argv = "out.zarr", ["run", "p.yaml", "-q"]
    else:
        featomic_like(2, 4, neighbors=(2, 3), chunks=1, seed=1).to_zarr("all.zarr")
        output, argv = "all.zarr", ["convert", "x.zarr", "all.zarr", "--append", "-q"]
        argv += ["--renumber", "system"]
    code, _, err = run(capsys, *argv)
    assert code == 143, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"metatensor-dask {command.split()[0]}: terminated (SIGTERM) after ")
    assert last.endswith(f"{output} was written whole; it is complete"), err
    assert is_complete(output)
    assert mtd.open_zarr(output).block(0).values.shape[0] > 0

    # stopped before its computation returned, it is left to resume
    monkeypatch.setattr(cli, "_compute", lambda *args, **kwargs: _raise(Terminated()))
    if command == "run":
        shutil.rmtree(output)
    else:  # another source: the same one again is an append the store already holds
        featomic_like(2, 4, neighbors=(2, 3), chunks=1, seed=2).to_zarr("y.zarr")
        argv[1] = "y.zarr"
    code, _, err = run(capsys, *argv)
    assert code == 143, err
    assert "is incomplete; " in err.strip().splitlines()[-1], err


def _raise(error):
    raise error


def test_main_restores_the_handler_of_sigterm(tmp_path, capsys):
    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(["info", str(tmp_path / "missing.zarr")]) == 1
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.xdist_group("serial")
def test_ctrl_c_in_an_append_names_both_of_its_remedies(tmp_path):
    # an interrupted append is finished with --resume or given up with discard_append
    # (the store then reads as before it), not only finished as a new store is
    store, source = str(tmp_path / "all.zarr"), str(tmp_path / "more.zarr")
    featomic_like(2, 24, neighbors=(4, 8), chunks=2).to_zarr(store)
    featomic_like(2, 24, neighbors=(4, 8), chunks=2, seed=1).to_zarr(source)
    before = mtd.open_zarr(store).compute()
    process = subprocess.Popen(
        [*CLI, "convert", source, store, "--append", "--renumber", "system", "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for_records(store, 3, TIMEOUT, process), "the append did not start"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 130, err
    assert (
        err.strip()
        .splitlines()[-1]
        .endswith(
            f"{store} is incomplete; run the same command with --resume to finish the append, "
            "or give it up with metatensor_dask.discard_append (the store then reads as before it)"
        )
    ), err
    mtd.discard_append(store)
    assert mtd.equal(mtd.open_zarr(store), before)
