"""Errors that say what happened to a store or a file: overwritten since it was opened,
interrupted (and by which command), damaged; and their remedies, followed."""

from __future__ import annotations

import re

import dask
import metatensor
import numpy as np
import pytest
from dask.callbacks import Callback
from forked_writer import forked_writer_holding

import metatensor_dask as mtd
from metatensor_dask._partition import block_row_pointer
from metatensor_dask.execution.cli import main
from metatensor_dask.io import _zip
from metatensor_dask.testing import assert_equal_to_metatensor

OVERWRITTEN = r"was overwritten \(or is being written\) since this tensor was opened"
CODECS = {
    "default": {},
    "zstd": {"metatensor_dask.compressor": "zstd"},
    "sharded": {"metatensor_dask.shard-chunks": 2},
}


def _tensor(
    seed: int,
    rows: int = 16,
    per_sample: list[int] | None = None,
    properties: int = 2,
    start: int = 0,
) -> metatensor.TensorMap:
    """Two blocks of ``rows`` samples (systems from ``start``), with a gradient whose
    rows are grouped by sample: ``per_sample[i]`` rows of sample ``i`` (2 each by
    default)."""
    rng = np.random.default_rng(seed)
    counts = np.array(per_sample if per_sample is not None else [2] * rows)
    sample = np.repeat(np.arange(rows, dtype=np.int32), counts)
    atom = np.concatenate([np.arange(n, dtype=np.int32) for n in counts])
    blocks = []
    for _ in range(2):
        block = metatensor.TensorBlock(
            rng.random((rows, properties)),
            metatensor.Labels(["system"], np.arange(start, start + rows, dtype=np.int32)[:, None]),
            [],
            metatensor.Labels.range("p", properties),
        )
        block.add_gradient(
            "positions",
            metatensor.TensorBlock(
                rng.random((len(sample), properties)),
                metatensor.Labels(["sample", "atom"], np.stack([sample, atom], axis=1)),
                [],
                block.properties,
            ),
        )
        blocks.append(block)
    keys = metatensor.Labels(["k"], np.array([[0], [1]], dtype=np.int32))
    return metatensor.TensorMap(keys, blocks)


def _write(path, tensor, mode: str = "w-", codecs: str = "default") -> None:
    with dask.config.set(CODECS[codecs]):
        mtd.from_metatensor(tensor).to_zarr(path, chunks=4, mode=mode)


# -- a tensor opened before its store was overwritten -------------------------------------


@pytest.mark.parametrize("codecs", sorted(CODECS))
@pytest.mark.parametrize(
    "other",
    [
        {"rows": 12},  # chunks of the old rows are gone
        {"rows": 20},  # more chunks
        {"properties": 3},  # chunks of other sizes
    ],
    ids=["fewer-rows", "more-rows", "more-properties"],
)
def test_values_of_another_shape_after_an_overwrite_say_so(tmp_path, codecs, other):
    """Chunks missing or of another size, because the store now holds another tensor,
    are not damage: the opened tensor says the store was overwritten."""
    path = tmp_path / "t.zarr"
    _write(path, _tensor(0), codecs=codecs)
    opened = mtd.open_zarr(path)
    _write(path, _tensor(1, **other), mode="w", codecs=codecs)
    for block in opened.blocks():
        for array in [block.values, block.gradient("positions").values]:
            with pytest.raises(mtd.MetatensorDaskError, match=OVERWRITTEN) as raised:
                array.compute()
            assert not isinstance(raised.value, mtd.DamagedStoreError)
    assert_equal_to_metatensor(mtd.open_zarr(path), _tensor(1, **other))


def test_a_row_pointer_read_after_an_overwrite_says_so(tmp_path):
    """A block of one chunk reads its row pointer on first use: the store holds another
    pointer by then (more gradient rows), which is not damage."""
    path = tmp_path / "t.zarr"
    _write(path, _tensor(2))
    opened = mtd.open_zarr(path, chunks=16)  # one chunk: pointers read on first use
    _write(path, _tensor(3, per_sample=[3] * 16), mode="w")
    for block in opened.blocks():
        with pytest.raises(
            mtd.MetatensorDaskError,
            match=rf"{OVERWRITTEN}: the row pointer 'blocks/\d/gradients/positions/row_pointer'",
        ) as raised:
            block_row_pointer(block, "positions")
        assert not isinstance(raised.value, mtd.DamagedStoreError)


def test_gradient_samples_of_another_size_after_an_overwrite_say_so(tmp_path):
    """The gradient samples, loaded on first use, now have chunks of another size."""
    path = tmp_path / "t.zarr"
    _write(path, _tensor(4))
    opened = mtd.open_zarr(path)
    _write(path, _tensor(5, per_sample=[3] * 16), mode="w")
    with pytest.raises(
        mtd.MetatensorDaskError,
        match=rf"{OVERWRITTEN}: the Labels 'blocks/0/gradients/positions/samples'",
    ) as raised:
        opened.block(0).gradient("positions").samples.values  # noqa: B018
    assert not isinstance(raised.value, mtd.DamagedStoreError)


def test_sample_columns_read_by_chunk_wise_tasks_after_an_overwrite_say_so(tmp_path):
    """Chunk-wise gradient tasks read the stored "sample" column of their rows, checked
    against the row pointer opened: after an overwrite with the same values but the
    gradient rows of other samples, they do not match it, because of the overwrite."""
    path = tmp_path / "t.zarr"
    _write(path, _tensor(6))
    opened = mtd.open_zarr(path)  # 4 chunks: the pointers are read now
    moved = [1, 3] + [2] * 14  # as many gradient rows (the same values), of other samples
    _write(path, _tensor(6, per_sample=moved), mode="w")
    product = mtd.multiply(opened, opened)
    with pytest.raises(mtd.MetatensorDaskError, match=OVERWRITTEN) as raised:
        product.block(0).gradient("positions").values.compute()
    assert not isinstance(raised.value, mtd.DamagedStoreError)


def test_damage_of_an_opened_store_not_overwritten_is_still_damage(tmp_path):
    """The store id did not change: a chunk removed, a row pointer cut, are damage."""
    path = tmp_path / "t.zarr"
    _write(path, _tensor(8))
    opened = mtd.open_zarr(path, chunks=16)
    (path / "blocks/0/values/c.1.0").unlink()
    (path / "blocks/1/gradients/positions/row_pointer/c.0").write_bytes(b"\0" * 8)
    (path / "blocks/0/gradients/positions/samples/c.0.0").unlink()
    with pytest.raises(mtd.DamagedStoreError, match="is missing"):
        opened.block(0).values.compute()
    with pytest.raises(mtd.DamagedStoreError, match="row_pointer"):
        block_row_pointer(opened.block(1), "positions")
    with pytest.raises(mtd.DamagedStoreError, match="is missing"):
        opened.block(0).gradient("positions").samples.values  # noqa: B018


# -- a store whose writer was killed: the command that wrote it gives the remedy -----------

#: A writer of a store, to be killed (``python -c WRITER kind store source``): prints
#: ``ready`` once imported, then writes slowly (a dask callback sleeps before each task).
WRITER = """
import sys, time
from dask.callbacks import Callback
import metatensor_dask as mtd
from metatensor_dask.execution.cli import main
from metatensor_dask.io import _zip

kind, store, source = sys.argv[1:4]
print("ready", flush=True)
with Callback(pretask=lambda *args: time.sleep(0.2)):
    if kind == "convert":
        main(["convert", source, store, "--chunks", "1", "--quiet"])
    elif kind == "apply":
        main(["apply", "abs", source, "-o", store, "--quiet"])
    else:
        mtd.load(source).to_zarr(store, chunks=1)
"""


def _killed(kind: str, store, source, while_running=None) -> None:
    """Run the writer ``kind`` of ``store`` from ``source``, and kill it (SIGKILL) once
    it holds the lock and wrote the root of the store (incomplete); before, call
    ``while_running()``, if given."""
    arguments = [kind, str(store), str(source)]
    with forked_writer_holding(WRITER, arguments, store, (store / "zarr.json").exists) as process:
        if while_running is not None:
            while_running()
            assert process.poll() is None, "the writer ended: the test saw no write in progress"


@pytest.mark.parametrize(
    ("kind", "command"),
    [("convert", "metatensor-dask convert"), ("apply", "metatensor-dask apply")],
)
def test_a_store_of_a_killed_command_line_names_its_resume(tmp_path, capsys, kind, command):
    """open_zarr, verify and a write of the store name the command line that wrote it and
    its --resume, not to_zarr's resume=True; the command with --resume finishes it."""
    source, store = tmp_path / "source.mts", tmp_path / "out.zarr"
    metatensor.save(source, _tensor(9, rows=6))
    _killed(kind, store, source)
    remedy = f"run the same command ({command}) with --resume"
    with pytest.raises(mtd.IncompleteStoreError) as raised:
        mtd.open_zarr(store)
    message = str(raised.value)
    assert f"did not finish ({command} of user" in message and remedy in message, message
    assert "resume=True" not in message and "mode='w'" not in message
    (unfinished,) = [p for p in mtd.verify(store).problems if "incomplete" in p]
    assert remedy in unfinished and "resume=True" not in unfinished, unfinished
    # info shows the store as incomplete (its keys may not be stored yet), not damaged
    capsys.readouterr()
    assert main(["info", str(store)]) == 0, capsys.readouterr().err
    assert "INCOMPLETE: a write did not finish" in capsys.readouterr().out
    # the remedy, followed
    if kind == "convert":
        arguments = ["convert", str(source), str(store), "--chunks", "1", "--resume"]
        expected = _tensor(9, rows=6)
    else:
        arguments = ["apply", "abs", str(source), "-o", str(store), "--resume"]
        expected = metatensor.abs(_tensor(9, rows=6))
    assert main([*arguments, "--quiet"]) == 0, capsys.readouterr().err
    assert_equal_to_metatensor(mtd.open_zarr(store), expected)
    assert mtd.verify(store).ok


def test_a_store_of_a_killed_to_zarr_names_resume_true(tmp_path):
    """While the write runs, readers are told to wait for it (not to resume it, which
    its live lock refuses); once it is killed, to resume it."""
    source, store = tmp_path / "source.mts", tmp_path / "out.zarr"
    metatensor.save(source, _tensor(10, rows=6))

    def refused_while_running():
        with pytest.raises(mtd.IncompleteStoreError) as raised:
            mtd.open_zarr(store)
        message = str(raised.value)
        assert "a write is in progress (to_zarr of user" in message, message
        assert "wait until it has finished" in message and "resume" not in message
        (problem,) = [p for p in mtd.verify(store).problems if "incomplete" in p]
        assert "a write is in progress" in problem, problem

    _killed("to_zarr", store, source, refused_while_running)
    with pytest.raises(mtd.IncompleteStoreError, match=r"did not finish \(to_zarr of user"):
        mtd.open_zarr(store)
    with pytest.raises(mtd.IncompleteStoreError, match=r"pass resume=True with the same tensor"):
        mtd.open_zarr(store)
    mtd.load(source).to_zarr(store, chunks=1, resume=True)
    assert_equal_to_metatensor(mtd.open_zarr(store), _tensor(10, rows=6))


# -- mode="w-" on a store holding an interrupted append ---------------------------------------


def _interrupted_append(path, appended: metatensor.TensorMap) -> None:
    """Append ``appended`` to the store ``path``, failing (in this process, which releases
    the lock) after a few of its tasks ran: its record is left."""
    ran = []

    def fail_third(*args):
        ran.append(args)
        if len(ran) == 3:
            raise RuntimeError("stopped by the test")

    with Callback(pretask=fail_third), pytest.raises(RuntimeError, match="stopped by the test"):
        mtd.from_metatensor(appended).to_zarr(path, append_dim="samples")
    assert (path / ".progress" / "append.json").exists()


@pytest.mark.parametrize("remedy", ["resume", "discard", "overwrite"])
def test_create_only_on_a_store_with_an_interrupted_append_names_it(tmp_path, remedy):
    path = tmp_path / "t.zarr"
    _write(path, _tensor(11))
    appended = _tensor(12, start=16)
    _interrupted_append(path, appended)
    with pytest.raises(mtd.MetatensorDaskError) as raised:
        mtd.from_metatensor(_tensor(13)).to_zarr(path, mode="w-")
    message = str(raised.value)
    assert "an append to it was interrupted" in message, message
    assert "append_dim='samples', resume=True" in message and "discard_append" in message
    # each remedy, followed
    if remedy == "resume":
        mtd.from_metatensor(appended).to_zarr(path, append_dim="samples", resume=True)
        expected = metatensor.join([_tensor(11), appended], axis="samples")
    elif remedy == "discard":
        mtd.discard_append(path)
        expected = _tensor(11)
    else:
        mtd.from_metatensor(_tensor(13)).to_zarr(path, mode="w")
        expected = _tensor(13)
    assert_equal_to_metatensor(mtd.open_zarr(path), expected)
    assert mtd.verify(path).ok
    with pytest.raises(mtd.MetatensorDaskError, match="already exists") as raised:
        mtd.from_metatensor(_tensor(13)).to_zarr(path, mode="w-")
    assert "interrupted" not in str(raised.value)


# -- .mts files: the trailing records of the ZIP archive ------------------------------------

#: Offsets in the trailing records of an archive with a ZIP64 end record (the record,
#: 56 bytes; its locator, 20; the end record, 22) that no reader uses: the record's own
#: size and its versions, the locator's disk numbers, and the fields of the end record
#: that the ZIP64 record replaces. A changed byte there reads the same map.
ZIP64_UNUSED = {*range(4, 16), *range(60, 64), *range(72, 76), *range(80, 96)}


def _saved_small(path, zip64: bool, monkeypatch) -> bytes:
    """A small map saved at ``path`` (with a ZIP64 end record: its writer's threshold of
    members lowered); its bytes."""
    block = metatensor.TensorBlock(
        np.arange(6.0).reshape(3, 2),
        metatensor.Labels.range("s", 3),
        [],
        metatensor.Labels.range("p", 2),
    )
    tensor = metatensor.TensorMap(metatensor.Labels.range("k", 1), [block])
    if zip64:
        monkeypatch.setattr(_zip, "ZIP64_COUNT_LIMIT", 2)
    mtd.save(path, mtd.from_metatensor(tensor))
    monkeypatch.undo()
    return path.read_bytes()


@pytest.mark.parametrize("zip64", [False, True], ids=["plain", "zip64"])
def test_every_changed_byte_of_the_trailing_records_is_damage(tmp_path, monkeypatch, zip64):
    """Every byte of the end record (and of the ZIP64 end record and its locator),
    changed: the file is damaged (its signatures, disk numbers and comment length
    too, which were format errors: not a ZIP archive, an archive of several disks), or
    for a byte no reader uses, the map reads back the same; never another map."""
    source = tmp_path / "source.mts"
    data = _saved_small(source, zip64, monkeypatch)
    expected = metatensor.load(str(source))
    start = data.rindex(b"PK\x06\x06" if zip64 else b"PK\x05\x06")
    assert len(data) - start == (98 if zip64 else 22)
    changed = tmp_path / "changed.mts"
    for offset in range(len(data) - start):
        edited = bytearray(data)
        edited[start + offset] ^= 0x80 if offset % 2 else 0x01  # low and high bits
        changed.write_bytes(bytes(edited))
        if zip64 and offset in ZIP64_UNUSED:
            assert_equal_to_metatensor(mtd.load(changed), expected)
            continue
        with pytest.raises(mtd.DamagedFileError) as raised:
            mtd.load(changed)  # the directory is read when the file is opened
        message = str(raised.value)
        assert f"'{changed}' is damaged: " in message, (offset, message)
        problems = mtd.verify(changed).problems
        assert len(problems) == 1 and "is damaged" in problems[0], (offset, problems)


def test_a_file_that_is_not_an_archive_is_still_a_format_error(tmp_path):
    """Not damage: a file that has no end record at all, or ends in one that does not
    close its directory."""
    for name, data in [
        ("text.mts", b"hello" * 100),
        ("fake.mts", b"hello" * 10 + b"PK\x05\x06" + b"\0" * 18),
    ]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(mtd.MetatensorError, match="serialization format error") as raised:
            mtd.load(tmp_path / name)
        assert not isinstance(raised.value, mtd.DamagedFileError)


def test_a_store_whose_delayed_write_has_not_run_says_to_compute_it(tmp_path):
    """to_zarr(..., compute=False) holds the lock until its Delayed runs: opening or
    verifying the store meanwhile names that remedy, which works."""
    path = tmp_path / "t.zarr"
    delayed = mtd.from_metatensor(_tensor(14)).to_zarr(path, chunks=4, compute=False)
    remedy = "whose Delayed has not run); compute it (dask.compute) to finish the write"
    with pytest.raises(mtd.IncompleteStoreError, match=re.escape(remedy)):
        mtd.open_zarr(path)
    assert any(remedy in problem for problem in mtd.verify(path).problems)
    dask.compute(delayed)
    assert_equal_to_metatensor(mtd.open_zarr(path), _tensor(14))


@pytest.mark.parametrize("mode", ["a", "r+"])
def test_writes_of_some_blocks_on_a_store_with_an_interrupted_append_are_refused(tmp_path, mode):
    """mode='a' dropped the record of the interrupted append while the partial last
    chunks it rewrote stayed, unlisted by the chunk tables: the store then read as
    damaged; mode='r+' dropped the append unsaid. Both are refused, naming the
    append's remedies, and write once it is finished."""
    path = tmp_path / "t.zarr"
    _write(path, _tensor(15, rows=14))
    appended = _tensor(16, rows=14, start=14)
    _interrupted_append(path, appended)
    if mode == "a":  # a block of a new key
        block = _tensor(17).block(0).copy()
        other = metatensor.TensorMap(metatensor.Labels(["k"], np.array([[5]], np.int32)), [block])
    else:
        other = _tensor(17, rows=14)
    with pytest.raises(mtd.MetatensorDaskError, match="an append to it was interrupted"):
        mtd.from_metatensor(other).to_zarr(path, mode=mode)
    assert_equal_to_metatensor(mtd.open_zarr(path), _tensor(15, rows=14))  # as before it
    if mode == "a":  # the append finished, then the block added
        mtd.from_metatensor(appended).to_zarr(path, append_dim="samples", resume=True)
        mtd.from_metatensor(other).to_zarr(path, mode=mode)
        joined = metatensor.join([_tensor(15, rows=14), appended], axis="samples")
        assert_equal_to_metatensor(mtd.open_zarr(path).block(0), joined.block(0))
        assert_equal_to_metatensor(mtd.open_zarr(path).block(2), other.block(0))
    else:  # the append given up, then the values rewritten
        assert mtd.discard_append(path)
        mtd.from_metatensor(other).to_zarr(path, mode=mode)
        assert_equal_to_metatensor(mtd.open_zarr(path), other)
    assert mtd.verify(path).ok
