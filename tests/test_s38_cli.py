"""The command line's messages: the remedy of `submit` into an output that exists, a
resume that finds its write done, one spelling of byte sizes, and the temporary files
that a killed save of a metatensor file leaves."""

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

import metatensor_dask as mtd
from metatensor_dask.datasets import featomic_like
from metatensor_dask.errors import MetatensorDaskWarning
from metatensor_dask.execution.cli import main
from metatensor_dask.io._lock import pid_space, process_start


def _tensor():
    return featomic_like(2, 6, neighbors=(2, 4), chunks=4)


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The store of :func:`_tensor`, written once for the module's tests to copy."""
    path = tmp_path_factory.mktemp("s38-cli") / "f.zarr"
    _tensor().to_zarr(str(path))
    return path


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stored: Path) -> Path:
    """A folder with a small featomic-like store, f.zarr (a copy of the module's: its
    files as written), and a pipeline of one step into out.zarr; the current
    directory."""
    shutil.copytree(stored, tmp_path / "f.zarr")
    (tmp_path / "p.yaml").write_text(
        "inputs: {x: f.zarr}\nsteps: [{op: pow, args: {B: 2}}]\noutput: out.zarr\n"
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit:
        code = int(exit.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_submit_into_an_existing_output_names_its_own_options(work, capsys):
    """`submit` into an output that exists named `--resume` alone, as `run` does: for
    a job, `--requeue` resumes too (at every start), and both are options of `submit`."""
    assert _run(capsys, "run", "p.yaml", "-q")[0] == 0
    code, _, err = _run(capsys, "submit", "p.yaml", "--dry-run")
    assert code == 1
    assert "already exists" in err
    assert "--requeue resumes too" in err and "--resume" in err
    # `run` has no --requeue: its message names --resume only
    code, _, err = _run(capsys, "run", "p.yaml")
    assert code == 1 and "--requeue" not in err and "pass --resume to" in err
    # and what it names is accepted: the script resumes
    code, out, _ = _run(capsys, "submit", "p.yaml", "--dry-run", "--requeue")
    assert code == 0 and "--resume" in out


@pytest.mark.parametrize(
    "command",
    [
        ["run", "p.yaml"],
        ["apply", "pow", "f.zarr", "--arg", "B=2", "-o", "out.zarr"],
        ["convert", "f.zarr", "out.zarr"],
    ],
    ids=["run", "apply", "convert"],
)
def test_resume_of_a_complete_output_says_nothing_was_written(work, capsys, command):
    """A resume that finds its write complete reported the whole store's size as
    written now ("finished out.zarr in ...: 1.91 MiB, 72 chunks")."""
    assert _run(capsys, *command, "-q")[0] == 0
    before = sorted(os.listdir(work / "out.zarr"))
    code, _, err = _run(capsys, *command, "--resume")
    assert code == 0, err
    assert "out.zarr was already complete: nothing was written" in err
    assert "finished" not in err and "MiB" not in err
    assert sorted(os.listdir(work / "out.zarr")) == before


def test_resume_of_an_append_stored_says_nothing_was_written(work, capsys):
    mtd.save("a.mts", _tensor())
    assert _run(capsys, "convert", "a.mts", "all.zarr", "--append", "-q")[0] == 0
    code, _, err = _run(capsys, "convert", "a.mts", "all.zarr", "--append", "--resume")
    assert code == 0, err
    assert "all.zarr already holds this append: nothing was written" in err
    # another source is appended by --resume as without it, and its size reported
    mtd.save("b.mts", featomic_like(1, 6, neighbors=(2, 4), seed=1))
    argv = ["convert", "b.mts", "all.zarr", "--append", "--resume", "--renumber", "system"]
    code, _, err = _run(capsys, *argv)
    assert code == 0, err
    assert "nothing was written" not in err and "finished all.zarr" in err


def test_sizes_have_one_spelling(work, capsys):
    """`info` printed dask's "kiB" where a tensor's repr prints "KiB"."""
    code, out, _ = _run(capsys, "info", "f.zarr", "--max-blocks", "-1")
    assert code == 0
    assert "kiB" not in out and re.search(r"\d KiB", out)
    assert "KiB" in repr(mtd.open_zarr("f.zarr").block(0))


def _gone_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _boot() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")


def _named(
    pid: int,
    start: str,
    host: str | None = None,
    token: str = "0123456789ab",
    boot: str | None = "",
) -> str:
    """A temporary file's name; ``boot``: "" for this boot, None for none named."""
    space = "".join(ch for ch in pid_space() if ch.isdigit())
    owner = f"{pid}-{start}-{space}" + ("" if boot is None else f"-{boot or _boot()}")
    return f".k.mts.{owner}@{host or socket.gethostname()}.{token}.tmp"


# a save whose values take a minute to compute: killed while it writes
_SLOW_SAVE = """
import time
import dask
import dask.array as da
import numpy as np
import metatensor_dask as mtd

def slow():
    time.sleep(60)
    return np.zeros((2, 1))

values = da.from_delayed(dask.delayed(slow)(), (2, 1), np.float64)
samples = mtd.Labels(["s"], np.array([[0], [1]], dtype=np.int32))
mtd.save("k.mts", mtd.TensorBlock(values, samples, [], mtd.Labels.range("p", 1)))
"""


def test_a_killed_save_leaves_nothing_behind_the_next_one(work, capsys):
    """SIGKILL of a save (`convert` to .mts, `mtd.save`) left its hidden temporary file
    next to the output forever: the next save removes it."""
    process = subprocess.Popen([sys.executable, "-c", _SLOW_SAVE], cwd=work)
    # its imports alone may take 10 to 20 s on a loaded machine: waited for until the
    # save ends by itself (its values take a minute), two minutes at most
    deadline = time.monotonic() + 120
    try:
        while True:
            left = [name for name in os.listdir(work) if name.endswith(".tmp")]
            if left or process.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        process.kill()
        process.wait()
    assert left, "the save ended before its temporary file was seen"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _run(capsys, "convert", "f.zarr", "k.mts", "--overwrite", "-q")[0] == 0
    assert [name for name in os.listdir(work) if name.startswith(".k.mts")] == []
    assert mtd.equal(mtd.load("k.mts"), mtd.open_zarr("f.zarr"))


def test_a_save_leaves_the_temporary_files_it_can_not_prove_stale(work):
    """Never delete the file of a save that may be running: another host's, a live
    process's, or one of an older version (which names no process); each is said."""
    live = subprocess.Popen(["sleep", "60"])
    try:
        kept = [
            _named(live.pid, process_start(live.pid)),
            _named(_gone_pid(), "1", host="another-host"),
            ".k.mts.0123456789ab.tmp",
        ]
        stale = [
            _named(_gone_pid(), "1"),
            # a pid given to another process since: started at another time
            _named(live.pid, "1", token="ba9876543210"),
        ]
        for name in kept + stale + [".k.mts.x.mts.0123456789ab.tmp"]:
            (work / name).write_bytes(b"partial")
        with pytest.warns(MetatensorDaskWarning) as record:
            mtd.save("k.mts", _tensor())
    finally:
        live.kill()
        live.wait()
    left = sorted(name for name in os.listdir(work) if name.endswith(".tmp"))
    assert left == sorted([*kept, ".k.mts.x.mts.0123456789ab.tmp"])
    messages = [str(w.message) for w in record]
    assert len(messages) == 3
    assert all("delete it once no other save of k.mts runs" in m for m in messages)
    assert any(f"process {live.pid} on host" in m for m in messages)


@pytest.mark.skipif(
    not Path("/proc/sys/kernel/random/boot_id").exists(), reason="a boot id is needed"
)
def test_a_save_on_another_host_of_the_same_name_is_left_alone(work):
    """Host names are shared (clones, containers: ``localhost``) and the first pid
    namespace has one number on every Linux host: a save of a same-named host, whose
    pid is free here, was removed while it ran there. Its boot tells it apart; a name
    without one (an earlier version's) proves nothing."""
    kept = [
        _named(_gone_pid(), "1", boot="0123456789abcdef0123456789abcdef"),
        _named(_gone_pid(), "1", boot=None, token="ba9876543210"),
    ]
    for name in kept:
        (work / name).write_bytes(b"partial")
    with pytest.warns(MetatensorDaskWarning, match="may still be running") as record:
        mtd.save("k.mts", _tensor())
    assert sorted(name for name in os.listdir(work) if name.endswith(".tmp")) == sorted(kept)
    assert len(record) == 2


def test_a_stale_temporary_file_that_can_not_be_removed_is_said(work):
    """A stale temporary file that this process may not remove (another user's, in a
    folder whose sticky bit keeps it; here a folder of its name) failed the save."""
    stale = work / _named(_gone_pid(), "1")
    stale.mkdir()
    with pytest.warns(MetatensorDaskWarning, match="delete it once no other save"):
        mtd.save("k.mts", _tensor())
    assert stale.is_dir()
    assert mtd.equal(mtd.load("k.mts"), _tensor())


@pytest.mark.parametrize("chunks", ["1.5", "1e3", " 12", "1_000", "1 000"])
def test_chunks_without_a_unit_are_refused(work, capsys, chunks):
    """`--chunks 1.5` was read by dask as a size of 1 byte: the store was written in
    chunks of one row, without a word. A number without a unit is refused, from the
    command line, pipelines and Python alike."""
    code, _, err = _run(capsys, "convert", "f.zarr", "x.zarr", "--chunks", chunks)
    assert code == 2 and "has no unit" in err and "64MiB" in err
    assert not (work / "x.zarr").exists()
    (work / "c.yaml").write_text(
        f"inputs: {{x: {{path: f.zarr, chunks: '{chunks}'}}}}\n"
        "steps: [{op: pow, args: {B: 2}}]\noutput: y.zarr\n"
    )
    code, _, err = _run(capsys, "run", "c.yaml")
    assert code == 1 and "has no unit" in err and not (work / "y.zarr").exists()
    with pytest.raises(mtd.MetatensorDaskError, match="has no unit"):
        mtd.open_zarr("f.zarr", chunks=chunks)


@pytest.mark.parametrize(
    "command",
    [
        ["apply", "pow", "data/f.zarr", "--arg", "B=2", "-o", "data"],
        ["convert", "data/f.zarr", "data"],
    ],
    ids=["apply", "convert"],
)
def test_resume_into_a_folder_of_other_data_names_no_deletion(work, capsys, command):
    """A resume into a folder that holds other data (here the input itself) was refused
    with "delete data to start over" (apply, run), or --overwrite (convert), which
    refuses too: the folder holds no store to delete or write again."""
    (work / "data").mkdir()
    os.rename(work / "f.zarr", work / "data" / "f.zarr")
    code, _, err = _run(capsys, *command, "--resume")
    assert code == 1 and "holds no Zarr store" in err
    assert "delete data" not in err and "--overwrite" not in err
    assert os.listdir(work / "data") == ["f.zarr"]


@pytest.mark.parametrize(
    "command",
    [
        ["convert", "f.zarr", "x.zarr", "--cluster", "local"],
        ["run", "p.yaml", "--cluster", "local", "--workers", "1"],
        ["submit", "p.yaml", "--dry-run"],
    ],
    ids=["convert", "run", "submit"],
)
def test_a_memory_limit_no_worker_can_run_in_is_refused(work, capsys, command):
    """`--cluster local --memory-limit 1KiB` waited forever while the nanny restarted
    its workers (160MiB too; 100MiB failed as KilledWorker), after making the output."""
    code, out, err = _run(capsys, *command, "--memory-limit", "100MiB")
    assert code == 2 and "too little for a worker process" in err and "256MiB" in err
    assert out == "" and not (work / "x.zarr").exists() and not (work / "out.zarr").exists()


@pytest.mark.parametrize("size", ["0", "0MiB", "-5MB"])
def test_a_demo_of_no_size_is_refused(work, capsys, size):
    """`demo --size 0` generated one system (46 MiB) without a word."""
    code, _, err = _run(capsys, "demo", f"--size={size}", "--workdir", "d")
    assert code == 2 and f"expected a size such as 4GiB or 500MB, got '{size}'" in err
    assert not (work / "d").exists()


@pytest.mark.parametrize(
    ("options", "least"),
    [(["--mem", "200M"], "256M"), (["--mem", "700M", "--workers", "3"], "768M")],
)
def test_a_job_memory_its_workers_can_not_run_in_is_refused(work, capsys, options, least):
    """`submit --mem` without `--memory-limit` shares the job's memory between its
    workers: too little each, and the job's workers would restart without end."""
    code, out, err = _run(capsys, "submit", "p.yaml", "--dry-run", *options)
    assert code == 2 and "too little for a worker process" in err and f"at least {least}" in err
    assert out == ""


def test_a_job_memory_shared_by_its_default_workers_is_checked(work, capsys):
    # 4 cores: 4 workers by default, 1000M / 4 is too little for each
    code, _, err = _run(capsys, "submit", "p.yaml", "--dry-run", "--cpus", "4", "--mem", "1000M")
    assert code == 2 and "shared between its 4 workers" in err
    code, out, _ = _run(capsys, "submit", "p.yaml", "--dry-run", "--cpus", "4", "--mem", "1G")
    assert code == 0 and "#SBATCH --mem=1G" in out


@pytest.mark.parametrize(
    "command",
    [
        ["convert", "f.zarr", "out.zarr"],
        ["run", "p.yaml"],
        ["apply", "pow", "f.zarr", "--arg", "B=2", "-o", "out.zarr"],
    ],
    ids=["convert", "run", "apply"],
)
def test_an_empty_folder_is_an_output_as_nothing_is(work, capsys, command):
    """An output folder made beforehand (by hand, by a job script) and empty was refused
    as "already exists ... pass --resume", with nothing to resume."""
    (work / "out.zarr").mkdir()
    code, _, err = _run(capsys, *command)
    assert code == 0, err
    assert mtd.verify(work / "out.zarr").ok
    (work / "full").mkdir()
    (work / "full" / "notes.txt").write_text("mine")
    (work / "q.yaml").write_text((work / "p.yaml").read_text().replace("out.zarr", "full"))
    into_full = {"out.zarr": "full", "p.yaml": "q.yaml"}
    code, _, err = _run(capsys, *[into_full.get(c, c) for c in command])
    assert code != 0 and "already exists" in err
    assert os.listdir(work / "full") == ["notes.txt"]
