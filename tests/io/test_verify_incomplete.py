"""``verify`` and ``info`` on incomplete stores, and ``convert`` on a store holding an
interrupted append: what is reported is what matters (the write to finish, with the
command that finishes it), not what the unfinished write has not stored yet."""

from __future__ import annotations

import json
from urllib.parse import unquote

import dask
import metatensor
import numpy as np
import pytest
from dask.callbacks import Callback
from kill_support import writer_holding

import metatensor_dask as mtd
from metatensor_dask.execution.cli import main
from metatensor_dask.io import zarr_layout as layout
from metatensor_dask.io.zarr_progress import recorded_chunks
from metatensor_dask.io.zarr_store import open_store
from metatensor_dask.testing import assert_equal_to_metatensor

#: A convert of ``source`` into ``store`` (``python -c CONVERT store source``), to be
#: killed: prints ``ready`` once imported, then writes slowly (a dask callback sleeps
#: before each task).
CONVERT = """
import sys, time
from dask.callbacks import Callback
from metatensor_dask.execution.cli import main

store, source = sys.argv[1:3]
print("ready", flush=True)
with Callback(pretask=lambda *args: time.sleep(0.2)):
    main(["convert", source, store, "--chunks", "1", "--quiet"])
"""


def _tensor(seed: int, rows: int = 12, start: int = 0) -> metatensor.TensorMap:
    """Two blocks of ``rows`` samples (systems from ``start``), with a positions
    gradient of two rows per sample."""
    rng = np.random.default_rng(seed)
    sample = np.repeat(np.arange(rows, dtype=np.int32), 2)
    atom = np.tile(np.arange(2, dtype=np.int32), rows)
    blocks = []
    for _ in range(2):
        block = metatensor.TensorBlock(
            rng.random((rows, 3)),
            metatensor.Labels(["system"], np.arange(start, start + rows, dtype=np.int32)[:, None]),
            [],
            metatensor.Labels.range("p", 3),
        )
        block.add_gradient(
            "positions",
            metatensor.TensorBlock(
                rng.random((2 * rows, 3)),
                metatensor.Labels(["sample", "atom"], np.stack([sample, atom], axis=1)),
                [],
                block.properties,
            ),
        )
        blocks.append(block)
    return metatensor.TensorMap(metatensor.Labels.range("k", 2), blocks)


def _killed_convert(store, source) -> None:
    """Run a convert of ``source`` into ``store`` and kill it (SIGKILL) as soon as it
    holds the lock and stored the root of the store, before most of the rest."""
    with writer_holding(CONVERT, [str(store), str(source)], store, (store / "zarr.json").exists):
        pass


def _failed_write(path, tensor: metatensor.TensorMap, tasks: int) -> None:
    """``to_zarr`` of ``tensor`` at ``path`` (chunks of 2 rows), failing in this process
    once ``tasks`` of its tasks ran: incomplete, with the chunks of the tasks that ran
    recorded."""
    ran = []

    def fail(*args):
        ran.append(args)
        if len(ran) == tasks:
            raise RuntimeError("stopped by the test")

    # small tasks (of a few chunks each): several records
    settings = {"metatensor_dask.chunk-size": 100}
    with (
        dask.config.set(settings),
        Callback(pretask=fail),
        pytest.raises(RuntimeError, match="stopped by the test"),
    ):
        mtd.from_metatensor(tensor).to_zarr(path, chunks=2)


def _recorded_chunk_files(path) -> list:
    """The files of the chunks the unfinished write of ``path`` recorded as stored."""
    markers = recorded_chunks(open_store(str(path), None, writable=False))
    files = []
    for marker in markers:
        if not marker.startswith(layout.PROGRESS_PREFIX) or marker == layout.PLAN_KEY:
            continue
        array, _, number = unquote(marker[len(layout.PROGRESS_PREFIX) :]).rpartition("/")
        if number.isdigit():
            files.extend((path / array).glob(f"c.{number}.*"))
    return sorted(files)


def _incomplete(problems: list[str]) -> str:
    """The one problem of an incomplete store: that it is incomplete."""
    assert len(problems) == 1, "\n".join(problems)
    assert "the store is incomplete" in problems[0], problems[0]
    return problems[0]


def test_verify_of_a_killed_convert_names_only_the_convert_to_finish(tmp_path, capsys):
    """Nothing the killed convert had not stored yet (node documents, Labels, chunks) is
    reported as damage: one problem, the store to finish with the command's --resume."""
    source, store = tmp_path / "source.mts", tmp_path / "out.zarr"
    metatensor.save(source, _tensor(1))
    _killed_convert(store, source)
    report = mtd.verify(store)
    problem = _incomplete(report.problems)
    assert "run the same command (metatensor-dask convert) with --resume" in problem
    assert any("not recorded as stored" in note for note in report.notes), report.notes
    # info names the same remedy
    capsys.readouterr()
    assert main(["info", str(store)]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "INCOMPLETE: a write did not finish (metatensor-dask convert of user" in header
    assert "run the same command (metatensor-dask convert) with --resume" in header, header
    assert "resume=True" not in header
    # the remedy, followed
    arguments = ["convert", str(source), str(store), "--chunks", "1", "--resume", "--quiet"]
    assert main(arguments) == 0, capsys.readouterr().err
    assert_equal_to_metatensor(mtd.open_zarr(store), _tensor(1))
    assert mtd.verify(store).ok


def test_chunks_recorded_as_stored_are_still_checked(tmp_path):
    """A failed write leaves some chunks recorded: the others are not reported, but a
    recorded chunk that is damaged, or lost, is."""
    path = tmp_path / "t.zarr"
    _failed_write(path, _tensor(2), tasks=12)
    _incomplete(mtd.verify(path).problems)
    files = _recorded_chunk_files(path)
    assert len(files) >= 2, "the write recorded too few chunks for this test"
    damaged, lost = files[0], files[-1]
    raw = bytearray(damaged.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    lost.unlink()
    problems = mtd.verify(path).problems
    assert len(problems) == 3, "\n".join(problems)
    chunk = f"'{damaged.parent.relative_to(path)}'"
    assert any("checksum" in p and chunk in p for p in problems), problems
    assert any(f"'{lost.name}'" in p and "is missing" in p for p in problems), problems


def test_an_unrecorded_chunk_is_not_reported_even_damaged(tmp_path):
    """A chunk not recorded may be one the write was storing when it stopped: it
    stores it again, so a cut-short file there is not damage."""
    path = tmp_path / "t.zarr"
    _failed_write(path, _tensor(3), tasks=12)
    recorded = set(_recorded_chunk_files(path))
    values = sorted((path / "blocks" / "1" / "values").glob("c.*"))
    unrecorded = [f for f in values if f not in recorded]
    if not unrecorded:  # write one, cut short, as a killed task leaves it
        unrecorded = [path / "blocks" / "1" / "values" / "c.5.0"]
    unrecorded[0].write_bytes(b"\x00\x01")
    report = mtd.verify(path)
    _incomplete(report.problems)
    # finished, the store is whole
    mtd.from_metatensor(_tensor(3)).to_zarr(path, chunks=2, resume=True)
    assert mtd.verify(path).ok


def test_a_complete_store_still_reports_every_lost_chunk_and_node(tmp_path):
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(_tensor(4)).to_zarr(path, chunks=2)
    (path / "blocks" / "0" / "values" / "c.1.0").unlink()
    (path / "blocks" / "1" / "properties" / "zarr.json").unlink()
    report = mtd.verify(path)
    assert len(report.problems) == 2, report.problems
    assert any("'c.1.0'" in p and "is missing" in p for p in report.problems)
    assert any(
        p == "blocks/1/properties: its 'zarr.json' is missing (the node is lost)"
        for p in report.problems
    )
    assert not report.notes


# -- convert on a store holding an interrupted append ------------------------------------------


def _convert_with_interrupted_append(tmp_path):
    """A store converted from a file, then an append to it (from the command line)
    interrupted after a few tasks; the source, the store and the appended file."""
    source, store, more = tmp_path / "source.mts", tmp_path / "out.zarr", tmp_path / "more.mts"
    metatensor.save(source, _tensor(5))
    metatensor.save(more, _tensor(6, start=12))
    assert main(["convert", str(source), str(store), "--chunks", "2", "--quiet"]) == 0
    ran = []

    def fail(*args):
        ran.append(args)
        if len(ran) == 3:
            raise RuntimeError("stopped by the test")

    append = ["convert", "--append", str(more), str(store), "--chunks", "2", "--quiet"]
    with Callback(pretask=fail):
        assert main(append) == 1
    assert (store / ".progress" / "append.json").exists()
    return source, store, more


@pytest.mark.parametrize("resume", [False, True])
def test_convert_into_a_store_with_an_interrupted_append_names_the_append(tmp_path, capsys, resume):
    """Without --resume, the store exists: said with the append to finish; with
    --resume, the convert is complete: not a silent success, the append is named."""
    source, store, more = _convert_with_interrupted_append(tmp_path)
    capsys.readouterr()
    arguments = ["convert", str(source), str(store), "--quiet"]
    assert main(arguments + (["--resume"] if resume else [])) == 1
    err = capsys.readouterr().err
    assert "an interrupted append" in err, err
    assert "metatensor-dask convert --append --resume" in err and "discard_append" in err
    assert "--overwrite" in err
    assert ("--resume has nothing to finish" in err) == resume, err
    # the remedy, followed: the append finished, the store is whole
    append = ["convert", "--append", str(more), str(store), "--chunks", "2", "--resume"]
    assert main([*append, "--quiet"]) == 0, capsys.readouterr().err
    expected = metatensor.join([_tensor(5), _tensor(6, start=12)], axis="samples")
    assert_equal_to_metatensor(mtd.open_zarr(store), expected)
    assert mtd.verify(store).ok


def test_convert_resume_of_a_complete_store_after_discard_does_nothing(tmp_path, capsys):
    source, store, _ = _convert_with_interrupted_append(tmp_path)
    mtd.discard_append(store)
    capsys.readouterr()
    resume = ["convert", str(source), str(store), "--chunks", "2", "--resume", "--quiet"]
    assert main(resume) == 0, capsys.readouterr().err
    assert main(["convert", str(source), str(store), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "interrupted append" not in err, err
    assert_equal_to_metatensor(mtd.open_zarr(store), _tensor(5))


def test_node_documents_the_write_stores_again_are_not_checked(tmp_path):
    """A document cut short by the killed write (not valid JSON), or one of its values
    arrays not written yet or already written with the chunk table that the write adds
    last, is the write's to store: not reported."""
    path = tmp_path / "t.zarr"
    _failed_write(path, _tensor(7), tasks=12)
    (path / "blocks" / "0" / "properties" / "zarr.json").write_bytes(b'{"zarr_format": 3, "no')
    # the values documents are written once, with their chunk tables, at completion
    assert not (path / "blocks" / "0" / "values" / "zarr.json").exists()
    document = path / "blocks" / "1" / "values" / "zarr.json"
    listed = json.loads((path / "zarr.json").read_bytes())["consolidated_metadata"]["metadata"]
    written = listed["blocks/1/values"]
    written["attributes"]["chunk_crc32c"] = [0]
    document.write_text(json.dumps(written))
    _incomplete(mtd.verify(path).problems)
    mtd.from_metatensor(_tensor(7)).to_zarr(path, chunks=2, resume=True)
    assert mtd.verify(path).ok


def test_blocks_an_unfinished_write_of_some_blocks_keeps_are_still_checked(tmp_path):
    """An unfinished to_zarr(mode='a') of new blocks: what it has not stored is left
    out, the blocks it keeps are checked as in a complete store."""
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(_tensor(8)).to_zarr(path, chunks=2)
    keys = metatensor.Labels(["k"], np.array([[2], [3]], dtype=np.int32))
    added = metatensor.TensorMap(keys, [block.copy() for block in _tensor(9).blocks()])
    ran = []

    def fail(*args):
        ran.append(args)
        if len(ran) == 12:
            raise RuntimeError("stopped by the test")

    with (
        dask.config.set({"metatensor_dask.chunk-size": 100}),
        Callback(pretask=fail),
        pytest.raises(RuntimeError, match="stopped by the test"),
    ):
        mtd.from_metatensor(added).to_zarr(path, chunks=2, mode="a")
    _incomplete(mtd.verify(path).problems)
    (path / "blocks" / "0" / "values" / "c.1.0").unlink()
    (path / "blocks" / "1" / "properties" / "zarr.json").unlink()
    problems = mtd.verify(path).problems
    assert len(problems) == 3, "\n".join(problems)
    assert "blocks/1/properties: its 'zarr.json' is missing (the node is lost)" in problems
    assert any("'c.1.0' of the array 'blocks/0/values' is missing" in p for p in problems)


def test_info_of_a_store_with_an_interrupted_append_names_it(tmp_path, capsys):
    _, store, _ = _convert_with_interrupted_append(tmp_path)
    capsys.readouterr()
    assert main(["info", str(store)]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "(format 5, complete, but an append to" in header, header
    assert "was interrupted" in header and "discard_append" in header, header
    assert main(["info", str(store), "--json"]) == 0
    assert "was interrupted" in json.loads(capsys.readouterr().out)["append"]
    mtd.discard_append(store)
    assert main(["info", str(store)]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith("(format 5, complete)")


def _failing_batches(items):
    """A batch of two rows per item; the batches from item 4 on fail."""
    if items[0] >= 4:
        raise RuntimeError("this batch fails")
    rows = np.array([[item] for item in items], dtype=np.int32)
    block = metatensor.TensorBlock(
        np.full((len(items), 2), float(items[0])),
        metatensor.Labels(["system"], rows),
        [],
        metatensor.Labels.range("p", 2),
    )
    return metatensor.TensorMap(metatensor.Labels.range("k", 1), [block])


def test_a_run_of_batches_stopped_says_how_many_batches_are_committed(tmp_path):
    """write_batches records batches, not chunks: its unfinished store is told by the
    batches committed (it said "0 chunks recorded" with two batches in the store)."""
    path = tmp_path / "t.zarr"
    with dask.config.set(scheduler="synchronous"):
        with pytest.raises(mtd.MetatensorDaskError, match="batch 2"):
            mtd.write_batches(_failing_batches, list(range(7)), path, batch_size=2, quiet=True)
    (problem,) = mtd.verify(path).problems
    assert "a write stopped before the end (2 of 4 batches committed)" in problem, problem
    assert "write_batches(..., resume=True)" in problem
    assert "chunk" not in problem
