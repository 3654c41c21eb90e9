"""Interrupted writes: a writer killed by SIGKILL, then resumed in this process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dask
import metatensor
import numpy as np
import pytest
from zarr_writer_process import Counter, make_metatensor, slow_tensor

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

SCRIPT = Path(__file__).with_name("zarr_writer_process.py")
N_CHUNKS = 40


def _recorded(path: Path) -> int:
    """Chunks of ``blocks/0/values`` recorded as stored (in the tasks' records)."""
    folder = path / ".progress"
    if not folder.exists():
        return 0
    chunks = set()
    for name in os.listdir(folder):
        if name.startswith("batch-"):
            try:
                chunks.update(json.loads((folder / name).read_text())["chunks"])
            except (ValueError, FileNotFoundError):
                continue  # being written (or deleted)
    return len([c for c in chunks if c.startswith(".progress/blocks%2F0%2Fvalues%2F")])


def _assert_same(a: mtd.TensorMap, b: mtd.TensorMap) -> None:
    a, b = dask.compute(a, b)
    assert a.keys == b.keys
    for x, y in zip(a.blocks(), b.blocks(), strict=True):
        np.testing.assert_array_equal(x.values, y.values)
        assert x.samples == y.samples and x.properties == y.properties
        for parameter, gradient in x.gradients():
            np.testing.assert_array_equal(gradient.values, y.gradient(parameter).values)
            assert gradient.samples == y.gradient(parameter).samples


def test_killed_writer_resumes_and_refuses_another_computation(tmp_path):
    """One killed writer for the refusals before a resume (the killed writer's lock is
    stale, another computation would mix both), then the resume, then the refusal of
    another computation by the complete store."""
    path = tmp_path / "killed.zarr"
    log = tmp_path / "writer.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, str(SCRIPT), str(path), str(N_CHUNKS), "0.1"],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while _recorded(path) < 3:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the writer made no progress"
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    recorded = _recorded(path)
    assert 3 <= recorded < N_CHUNKS
    records = sorted(os.listdir(path / ".progress"))

    with pytest.raises(mtd.MetatensorDaskError, match=r"incomplete.*resume=True"):
        mtd.open_zarr(path)
    # the killed writer's lock is stale: only resume=True (or mode="w") takes it over
    holder = json.loads((path / ".lock").read_text())
    assert holder["pid"] == process.pid
    with pytest.raises(
        mtd.StoreLockedError,
        match=rf"looks gone.*pid {process.pid}.*no process {process.pid} runs.*resume=True",
    ):
        slow_tensor(N_CHUNKS, 0.0).to_zarr(path)
    with pytest.raises(mtd.StoreLockedError, match="looks gone"):
        slow_tensor(N_CHUNKS, 0.0).to_zarr(path, mode="a")
    _another_computation_is_refused_before_the_lock(path, records)

    counter = Counter()
    slow_tensor(N_CHUNKS, 0.0, counter).to_zarr(path, resume=True)
    # only the chunks that were not recorded were computed again
    assert counter.count == N_CHUNKS - recorded
    assert not (path / ".progress").exists()
    assert not (path / ".lock").exists()

    reference = tmp_path / "reference.zarr"
    slow_tensor(N_CHUNKS, 0.0).to_zarr(reference)
    _assert_same(mtd.open_zarr(path), mtd.open_zarr(reference))
    _a_complete_store_refuses_another_computation(path, tmp_path / "expected.zarr")


def _doubled() -> mtd.TensorMap:
    """The tensor of the writer process times two: same shapes, labels and dtypes, other
    values, that a resume would mix with the stored ones."""
    return mtd.multiply(slow_tensor(N_CHUNKS, 0.0), 2.0)


def _another_computation_is_refused_before_the_lock(path: Path, records: list[str]) -> None:
    """A resume of another computation onto the interrupted write at ``path`` (with
    these ``records`` of progress) is refused, before taking the lock over."""
    with pytest.raises(
        mtd.MetatensorDaskError, match=r"another computation.*use mode='w' to overwrite"
    ):
        _doubled().to_zarr(path, resume=True)
    assert sorted(os.listdir(path / ".progress")) == records
    assert (path / ".lock").exists()


def _a_complete_store_refuses_another_computation(path: Path, expected: Path) -> None:
    """The complete store at ``path`` refuses a resume of another computation, which
    ``mode="w"`` writes over it."""
    with pytest.raises(mtd.MetatensorDaskError, match=r"complete, but holds another computation"):
        _doubled().to_zarr(path, resume=True)
    _doubled().to_zarr(path, mode="w", resume=True)
    _doubled().to_zarr(expected)
    _assert_same(mtd.open_zarr(path), mtd.open_zarr(expected))


def test_resume_refuses_another_tensor(tmp_path):
    path = tmp_path / "t.zarr"
    slow_tensor(6, 0.0).to_zarr(path, compute=False)
    with pytest.raises(mtd.MetatensorDaskError, match=r"does not match this tensor.*mode='w'"):
        slow_tensor(7, 0.0).to_zarr(path, resume=True)
    # mode "w" overwrites the interrupted write instead
    slow_tensor(7, 0.0).to_zarr(path, mode="w")
    assert mtd.open_zarr(path).block(0).values.shape[0] == 28


def test_resume_a_complete_store_does_nothing(tmp_path):
    path = tmp_path / "t.zarr"
    slow_tensor(5, 0.0).to_zarr(path)
    counter = Counter()
    slow_tensor(5, 0.0, counter).to_zarr(path, resume=True)
    assert counter.count == 0
    assert mtd.to_zarr(slow_tensor(5, 0.0), path, resume=True, compute=False).compute() is None
    # resume of a fresh store is an ordinary write
    slow_tensor(5, 0.0, counter).to_zarr(tmp_path / "new.zarr", resume=True)
    assert counter.count == 5


def test_resume_an_interrupted_addition(tmp_path):
    theirs = make_metatensor(seed=8)
    path = tmp_path / "t.zarr"
    first = mtd.from_metatensor(theirs)

    def select(indices):
        keys = metatensor.Labels(theirs.keys.names, theirs.keys.values[indices])
        return metatensor.TensorMap(keys, [theirs.block(i).copy() for i in indices])

    mtd.from_metatensor(select([0])).to_zarr(path)
    # the metadata of the addition is written, its data never is
    mtd.from_metatensor(select([1, 2])).to_zarr(path, mode="a", compute=False)
    with pytest.raises(mtd.MetatensorDaskError, match="resume=True"):
        mtd.open_zarr(path)
    mtd.from_metatensor(select([1, 2])).to_zarr(path, mode="a", resume=True)
    assert_equal_to_metatensor(mtd.open_zarr(path), select([0, 1, 2]))
    # a requeued job resumes the finished addition: nothing to do, and no error
    mtd.from_metatensor(select([1, 2])).to_zarr(path, mode="a", resume=True)
    with pytest.raises(mtd.MetatensorDaskError, match="already stored"):
        mtd.from_metatensor(select([1, 2])).to_zarr(path, mode="a")
    assert_equal_to_metatensor(mtd.open_zarr(path), select([0, 1, 2]))
    assert first.keys == mtd.open_zarr(path).keys


def test_resume_an_interrupted_rewrite(tmp_path):
    path = tmp_path / "t.zarr"
    slow_tensor(5, 0.0).to_zarr(path)
    doubled = mtd.multiply(slow_tensor(5, 0.0), 3.0)
    doubled.to_zarr(path, mode="r+", compute=False)
    doubled.to_zarr(path, mode="r+", resume=True)
    expected = tmp_path / "expected.zarr"
    doubled.to_zarr(expected)
    _assert_same(mtd.open_zarr(path), mtd.open_zarr(expected))


def test_writes_are_recorded_per_chunk(tmp_path):
    path = tmp_path / "t.zarr"
    delayed = slow_tensor(6, 0.0).to_zarr(path, compute=False)
    assert _recorded(path) == 0
    plan = (path / ".progress" / "plan.json").read_text()
    assert "blocks/0/values" in plan and "blocks/0/gradients/positions/values" in plan
    delayed.compute()
    assert not (path / ".progress").exists()


def test_misaligned_dask_chunks_are_refused(tmp_path):
    from metatensor_dask.io.chunks import check_aligned

    check_aligned((4, 4, 2), 4, "blocks/0/values")
    with pytest.raises(mtd.MetatensorDaskError, match="would corrupt data; rechunk"):
        check_aligned((4, 3, 3), 4, "blocks/0/values")
    with pytest.raises(mtd.MetatensorDaskError, match="would corrupt data"):
        check_aligned((8, 2), 4, "blocks/0/values")


def _kill_after_progress(command: list[str], path: Path, log: Path, env: dict | None = None) -> int:
    """Run ``command``, SIGKILL it once it recorded a few chunks of ``path``; how many."""
    with open(log, "wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )

    def count() -> int:
        folder = path / ".progress"
        return len(os.listdir(folder)) if folder.exists() else 0

    try:
        deadline = time.monotonic() + 120
        while count() < 5:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the writer made no progress"
            time.sleep(0.01)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    return count()


def test_cli_resume_refuses_other_arguments(tmp_path, capsys):
    """The command killed is a process of its own; the commands after it run the same
    command line in this process (``main``), which saves starting Python three times."""
    from metatensor_dask.execution.cli import main

    source = tmp_path / "x.zarr"
    slow_tensor(300, 0.0, rows=1).to_zarr(source)
    output = tmp_path / "pow.zarr"

    def apply(b: int, *options: str) -> list[str]:
        return [
            "apply", "pow", str(source),
            "-o", str(output), "--arg", f"B={b}", "-q", "-w", "1", *options,
        ]  # fmt: skip

    command = [sys.executable, "-m", "metatensor_dask", *apply(2)]
    tiny = {"DASK_METATENSOR_DASK__CHUNK_SIZE": "256B"}  # one task per chunk
    _kill_after_progress(command, output, tmp_path / "apply.log", tiny)
    capsys.readouterr()
    for state in ("interrupted", "complete"):
        assert main(apply(3, "--resume")) == 1, state
        refused = capsys.readouterr().err
        assert "another computation" in refused and "mode='w'" in refused, refused
        if state == "interrupted":
            finished = main(apply(2, "--resume"))
            assert finished == 0, capsys.readouterr().err
    expected = mtd.pow(mtd.open_zarr(source), 2)
    _assert_same(mtd.open_zarr(output), expected)
