"""Appends killed (SIGKILL, in subprocesses) at random moments, racing each other and
racing readers: the store always reads as one of its committed states (or refuses
with a clear error), ``resume=True`` finishes an interrupted append, even one killed
while resuming, and no row is lost.

The kills fall at random delays (seeded: ``MTD_RACE_SEED``) over the whole duration of
an append; the suite makes a few, ``MTD_RACE_KILLS=30`` makes more.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import time
from pathlib import Path

import cut_writers
import dask
import pytest
from forked_process import Forked, forked, forked_together, run_race_process
from kill_support import KILLS, SEED, ended, killed_after, seconds_to_done
from race_process import CHUNKS, fingerprint, race_tensor
from test_zarr_append import assert_equal_to_join, shifted
from test_zarr_append_codecs import codec_settings

import metatensor_dask as mtd

# processes killed, or locks aged, at chosen moments: one such test at a time
pytestmark = pytest.mark.xdist_group("serial")

#: Systems of a race tensor (its samples' largest ``system`` is 7, see ``SAMPLES``).
SYSTEMS = 8


def _writer(*arguments: str) -> Forked:
    """``race_process.py arguments...`` (a writer or a reader) in a process of its own,
    once it is ready."""
    return forked(run_race_process, *arguments)


def _writers(*arguments: list[str]):
    """``race_process.py arguments...`` for each list of ``arguments``, each in a
    process of its own, once each is ready; killed at the end if still running."""
    return forked_together(*arguments)


def _duration(path: Path) -> float:
    """Seconds an append to ``path`` takes in a subprocess, from ``ready`` to ``done``."""
    return seconds_to_done(_writer("append", str(path), "1"))


def _append(path: Path, seed: int, **kwargs) -> None:
    mtd.from_metatensor(race_tensor(seed)).to_zarr(
        path, append_dim="samples", renumber={"system": "next"}, chunks=CHUNKS, **kwargs
    )


def _state(path: Path) -> str:
    """The fingerprint of the store, or ``refused: ...`` for a clear error."""
    try:
        return fingerprint(mtd.open_zarr(path).compute())
    except mtd.IncompleteStoreError as error:
        return f"refused: {error}"


@dataclasses.dataclass(frozen=True)
class _Built:
    """A store of ``race_tensor(0)``, ``base``, and the fingerprints of it and of it
    after the appends of ``race_tensor(1)`` and ``race_tensor(2)``, made one after the
    other: ``states``. ``reference`` is a copy of ``base`` holding both appends (which
    tests copy to append more), ``duration`` the seconds the first took in a process of
    its own, from ``ready`` to ``done``."""

    base: Path
    states: list[str]
    reference: Path
    duration: float


def _build(codec: str, folder: Path) -> _Built:
    base = folder / "base.zarr"
    with dask.config.set(codec_settings(codec)):
        mtd.from_metatensor(race_tensor(0)).to_zarr(base, chunks=CHUNKS)
    reference = shutil.copytree(base, folder / "reference.zarr")
    states = [_state(reference)]
    # the first append in a process of its own, as the tests' writers (the appends
    # keep the stored codecs)
    duration = _duration(reference)
    states.append(_state(reference))
    _append(reference, 2)
    states.append(_state(reference))
    return _Built(base, states, reference, duration)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The stores and states of each codec (see ``_Built``), made on first use: once
    per module, whichever tests ask for them in any order."""
    found: dict[str, _Built] = {}

    def of(codec: str) -> _Built:
        if codec not in found:
            found[codec] = _build(codec, tmp_path_factory.mktemp(f"states-{codec}"))
        return found[codec]

    return of


@pytest.fixture(params=["default", "sharded-zstd"])
def codec(request, built) -> _Built:
    """The stores and states of a codec (see ``_Built``), written once per module and
    codec: the tests only copy them."""
    return built(request.param)


@pytest.fixture
def states(codec):
    """A store of ``race_tensor(0)`` (``base.zarr``), and the fingerprints of it and of
    it after the appends of ``race_tensor(1)`` and ``race_tensor(2)``, made one after
    the other."""
    return codec.base, codec.states


@pytest.fixture
def duration(codec):
    """Seconds an append of ``race_tensor(1)`` to the base store takes in a process of
    its own: the span over which the kills of the tests fall."""
    return codec.duration


@pytest.fixture
def sequential(codec, tmp_path_factory):
    """The orders of the appends of ``race_tensor(1)`` and ``race_tensor(2)`` to the base
    store made one after the other (one of them, or both in either order), by the
    fingerprint of the store each leaves (those of 1 then 2 are the built states)."""
    _, after, after_two = codec.states
    reference = {after: (1,), after_two: (1, 2)}
    path = shutil.copytree(codec.base, tmp_path_factory.mktemp("sequential") / "reference.zarr")
    for order in [(2,), (2, 1)]:
        _append(path, order[-1])
        reference[_state(path)] = order
    return reference


def _assert_readable(path: Path, allowed: list[str], what: str) -> None:
    state = _state(path)
    assert state in allowed, f"{what}: the store reads as none of its committed states: {state}"
    report = mtd.verify(path)
    # a killed append is named, and may leave node documents newer than the root, or
    # one cut short (documented)
    expected = ("was interrupted", "consolidated", "cut short by the unfinished write")
    unexpected = [p for p in report.problems if not any(e in p for e in expected)]
    assert not unexpected, f"{what}: {unexpected}"


def test_appends_killed_at_random_moments_resume(states, duration, tmp_path):
    """Each append killed at a random moment reads as before or after it; every other
    one is resumed in a subprocess killed at a random moment too; then resumed here,
    it equals the join, and a plain append after it works."""
    base, (before, after, after_two) = states
    rng = random.Random(SEED)
    for kill in range(KILLS):
        path = shutil.copytree(base, tmp_path / f"killed{kill}.zarr")
        delay = rng.uniform(0.0, 1.2 * duration)
        what = f"seed {SEED}, kill {kill}, append killed after {delay:.3f} s of {duration:.3f} s"
        go = [tmp_path / f"go{kill}-{which}" for which in ("append", "resume")]
        # the resume (of every other kill) waits for its turn, started with the append
        resumed = ["append", str(path), "1", "--resume", "--go", str(go[1])]
        appended = ["append", str(path), "1", "--go", str(go[0])]
        with _writers(appended, *([resumed] if kill % 2 else [])) as (writer, *resume):
            go[0].touch()
            killed_after(writer, delay)
            _assert_readable(path, [before, after], what)
            if kill % 2:
                delay = rng.uniform(0.0, 1.2 * duration)
                what += f", its resume killed after {delay:.3f} s"
                go[1].touch()
                killed_after(resume[0], delay)
                _assert_readable(path, [before, after], what)
        _append(path, 1, resume=True)
        assert _state(path) == after, what
        assert mtd.verify(path).ok, what
        assert not (path / ".progress").exists() and not (path / ".lock").exists(), what
        _append(path, 2)
        assert _state(path) == after_two, what
    first, second, third = (race_tensor(seed) for seed in range(3))
    assert_equal_to_join(
        mtd.open_zarr(path), [first, shifted(second, SYSTEMS), shifted(third, 2 * SYSTEMS)]
    )


def test_appends_creating_a_store_killed_at_random_moments_resume(tmp_path):
    """An append to a path where no store exists (it creates the store) killed at a
    random moment: nothing there, or refused as incomplete, or the store; resumed, the
    store; a plain append after it works."""
    # the store created in a process of its own, as the tests' writers
    reference = tmp_path / "reference.zarr"
    duration = _duration(reference)
    created = _state(reference)
    _append(reference, 2)
    both = _state(reference)
    rng = random.Random(SEED + 3)
    for kill in range(KILLS):
        path = tmp_path / f"killed{kill}.zarr"
        delay = rng.uniform(0.0, 1.2 * duration)
        what = (
            f"seed {SEED + 3}, kill {kill}, append killed after {delay:.3f} s of {duration:.3f} s"
        )
        killed_after(_writer("append", str(path), "1"), delay)
        if (path / "zarr.json").exists() or (path / ".lock").exists():
            state = _state(path)
            assert state == created or state.startswith("refused: "), f"{what}: {state}"
        _append(path, 1, resume=True)
        assert _state(path) == created, what
        assert mtd.verify(path).ok, what
        _append(path, 2)
        assert _state(path) == both, what


# one codec each for the two races below (a few seconds of processes per kill):
# the kills of one append above run with both
@pytest.mark.parametrize("codec", ["sharded-zstd"], indirect=True)
def test_two_appenders_at_random_moments_lose_no_rows(states, sequential, duration, tmp_path):
    """Two appends started at random moments of each other: one gets StoreLockedError
    before writing anything (or both append, one after the other); the store is one
    of the sequential outcomes, and the refused append, retried, completes it."""
    base, _ = states
    rng = random.Random(SEED + 1)
    for race in range(KILLS):
        path = shutil.copytree(base, tmp_path / f"raced{race}.zarr")
        go = tmp_path / f"go{race}"
        offset = rng.uniform(0.0, 1.2 * duration)
        what = f"seed {SEED + 1}, race {race}, the second append {offset:.3f} s after the first"
        with _writers(
            ["append", str(path), "1", "--go", str(go)],
            ["append", str(path), "2", "--go", str(go), "--after", str(offset)],
        ) as writers:
            go.touch()
            outputs = [ended(writer) for writer in writers]
        codes = [writer.returncode for writer in writers]
        assert set(codes) <= {0, 3} and 0 in codes, f"{what}: {outputs}"
        for code, output in zip(codes, outputs, strict=True):
            assert ("done" in output) if code == 0 else ("locked: " in output), f"{what}: {output}"
        order = sequential.get(_state(path))
        assert order is not None, f"{what}: the store is none of the sequential outcomes"
        assert len(order) == codes.count(0), f"{what}: {order} stored, exit codes {codes}"
        for seed, code in zip((1, 2), codes, strict=True):
            if code == 3:
                _append(path, seed)
                order = (*order, seed)
        assert sequential.get(_state(path)) == order and len(order) == 2, what
        assert mtd.verify(path).ok, what


@pytest.mark.parametrize("codec", ["default"], indirect=True)
def test_two_resumes_of_a_killed_append_at_random_moments(states, duration, tmp_path):
    """An append killed at a random moment, then resumed by two processes started at
    random moments of each other (two requeued jobs): one takes the killed writer's
    lock over, the other gets StoreLockedError or finds the append done; the store
    is the append once."""
    base, (_, after, after_two) = states
    rng = random.Random(SEED + 2)
    for race in range(KILLS):
        path = shutil.copytree(base, tmp_path / f"resumed{race}.zarr")
        delay, offset = rng.uniform(0.0, duration), rng.uniform(0.0, 1.2 * duration)
        what = (
            f"seed {SEED + 2}, race {race}, append killed after {delay:.3f} s, the second "
            f"resume {offset:.3f} s after the first"
        )
        start, go = tmp_path / f"start{race}", tmp_path / f"go{race}"
        # the resumes wait for the kill, started with the append (their imports overlap)
        with _writers(
            ["append", str(path), "1", "--go", str(start)],
            ["append", str(path), "1", "--resume", "--go", str(go)],
            ["append", str(path), "1", "--resume", "--go", str(go), "--after", str(offset)],
        ) as (writer, *resumes):
            start.touch()
            killed_after(writer, delay)
            go.touch()
            outputs = [ended(process) for process in resumes]
        codes = [process.returncode for process in resumes]
        assert set(codes) <= {0, 3} and 0 in codes, f"{what}: {outputs}"
        assert _state(path) == after, what
        assert mtd.verify(path).ok, what
        _append(path, 2)
        assert _state(path) == after_two, what


def _wait_for_reads(log: Path, reader: Forked, count: int) -> None:
    """Wait until the reader wrote ``count`` more lines to ``log``."""
    start = len(log.read_text().splitlines()) if log.exists() else 0
    deadline = time.monotonic() + 60
    while not log.exists() or len(log.read_text().splitlines()) < start + count:
        assert reader.poll() is None, "the reader stopped"
        assert time.monotonic() < deadline, "the reader made no progress"
        time.sleep(0.01)


def test_readers_during_appends_see_committed_states(codec, tmp_path):
    """A reader process computes values and gradients (sample labels too) in a loop
    while appends happen: each read equals a committed state; a reader that opened the
    store before the appends reads it as it was then, also when it reads its sample
    labels and row pointers after an append."""
    path = shutil.copytree(codec.base, tmp_path / "read.zarr")
    reference = shutil.copytree(codec.reference, tmp_path / "reference3.zarr")
    _append(reference, 3)
    committed = [*codec.states, _state(reference)]
    log = tmp_path / "reads.log"
    reader = _writer("read", str(path), str(log), "600")
    try:
        for seed in (1, 2, 3, None):
            # a few reads of each state (of each kind: fresh, stale, late)
            _wait_for_reads(log, reader, 6)
            if seed is not None:
                _append(path, seed)
    finally:
        reader.kill()
        ended(reader)
    lines = log.read_text().splitlines()[:-1]  # the last one may be cut short
    fresh = [line.split(" ", 1)[1] for line in lines if line.startswith("ok ")]
    stale = [line.split(" ", 1)[1] for line in lines if line.startswith("stale ")]
    late = [line.split(" ", 1)[1] for line in lines if line.startswith("late ")]
    assert len(fresh) + len(stale) + len(late) == len(lines), [
        line for line in lines if "error" in line.split(" ", 1)[0]
    ]
    assert set(fresh) <= set(committed) and len(set(fresh)) > 1, lines
    assert set(stale) == {committed[0]}, lines
    assert set(late) <= set(committed) and len(set(late)) > 1, lines
    assert _state(path) == committed[-1]


def _cut(path: Path, what: str) -> None:
    """``cut_writers.cut_while_writing_documents`` in a process of its own."""
    _killed_itself(Forked(cut_writers.cut_while_writing_documents, str(path), what))


def _killed_itself(process: Forked) -> None:
    output = ended(process, timeout=300)
    assert process.returncode == -9, output


def _cut_documents(path: Path) -> list[str]:
    """The node documents of the store at ``path`` that are not valid JSON."""
    found = []
    for document in path.rglob("zarr.json"):
        try:
            json.loads(document.read_bytes())
        except ValueError:
            found.append(str(document.relative_to(path)))
    return found


def test_verify_names_an_append_killed_while_writing_documents(states, tmp_path):
    """A node document cut short by the kill of an append is the append's, not damage:
    verify says the append was interrupted and how to finish it (not to write the
    store again from its source), and still compares the other documents."""
    base, (before, after, _) = states
    path = shutil.copytree(base, tmp_path / "cut.zarr")
    _cut(path, "append")
    assert _cut_documents(path), "the kill left no document cut short"
    assert _state(path) == before
    report = mtd.verify(path)
    text = "\n".join(report.problems)
    assert "from its source" not in text, text
    assert "an append to" in text and "was interrupted" in text and "resume=True" in text, text
    assert "not valid JSON" in text and "differs from the consolidated metadata" in text, text
    _append(path, 1, resume=True)
    assert _state(path) == after
    assert mtd.verify(path).ok


def test_verify_names_a_run_killed_while_writing_documents(tmp_path):
    """The same for a run of write_batches, whose store is incomplete: verify names
    ``write_batches(..., resume=True)``."""
    path = tmp_path / "cut.zarr"
    _cut(path, "batches")
    assert _cut_documents(path), "the kill left no document cut short"
    report = mtd.verify(path)
    text = "\n".join(report.problems)
    assert "from its source" not in text, text
    assert "the store is incomplete" in text and "write_batches(..., resume=True)" in text, text
    mtd.write_batches(
        lambda items: race_tensor(items[0]), [1, 2, 3], path, chunks=CHUNKS, resume=True, quiet=True
    )
    assert mtd.verify(path).ok


def test_an_append_killed_while_creating_a_store_is_incomplete(tmp_path):
    """An append that creates the store, killed before its root document is written,
    leaves a store that readers and verify call incomplete, naming resume=True (not a
    missing store to write again); resume=True finishes it."""
    path = tmp_path / "created.zarr"
    _cut(path, "append")
    assert not (path / "zarr.json").exists() and (path / ".progress").exists()
    with pytest.raises(mtd.IncompleteStoreError, match=r"did not finish.*resume=True"):
        mtd.open_zarr(path)
    (problem,) = mtd.verify(path).problems
    assert "did not finish" in problem and "resume=True" in problem, problem
    with pytest.raises(mtd.StoreLockedError, match="looks gone"):
        _append(path, 1)
    _append(path, 1, resume=True)
    assert _state(path) == fingerprint(race_tensor(1))
    assert mtd.verify(path).ok


def _killed_at(path: Path, seed: int, moment: str) -> None:
    """``cut_writers.killed_at`` in a process of its own."""
    _killed_itself(Forked(cut_writers.killed_at, str(path), seed, moment))


def test_chunk_records_left_by_a_committed_append_are_not_taken_for_the_next(states, tmp_path):
    """An append killed while it deletes its records once committed (the record of the
    append deleted first, chunk records left), then the next append killed before it
    stores anything: its resume stores every chunk, not trusting the chunk records
    of the append before (which name some of the same chunks)."""
    base, (_, after, after_two) = states
    path = shutil.copytree(base, tmp_path / "stale.zarr")
    _killed_at(path, 1, "cleaning")
    assert _state(path) == after
    assert any(name != "append.json" for name in os.listdir(path / ".progress"))
    _append(path, 1, resume=True)  # done already: takes the lock over, stores nothing
    assert _state(path) == after and not (path / ".lock").exists()
    _killed_at(path, 2, "recorded")
    _append(path, 2, resume=True)
    assert _state(path) == after_two
    assert mtd.verify(path).ok


def test_a_run_killed_while_committing_its_first_batch_resumes(tmp_path):
    """A run of write_batches killed while it commits its first batch (some node
    documents written, the root not yet): the store is incomplete, and the resume
    writes the first batch again, not taking those documents for a stored tensor."""
    reference = tmp_path / "reference.zarr"
    batch = lambda items: race_tensor(items[0])  # noqa: E731
    mtd.write_batches(batch, [1, 2, 3], reference, chunks=CHUNKS, quiet=True)
    path = tmp_path / "cut.zarr"
    _cut(path, "first-batch")
    assert _cut_documents(path), "the kill left no document cut short"
    with pytest.raises(mtd.IncompleteStoreError, match=r"write_batches\(\.\.\., resume=True\)"):
        mtd.open_zarr(path)
    problems = mtd.verify(path).problems
    assert any("write_batches(..., resume=True)" in p for p in problems), problems
    mtd.write_batches(batch, [1, 2, 3], path, chunks=CHUNKS, resume=True, quiet=True)
    assert _state(path) == _state(reference)
    assert mtd.verify(path).ok
