"""Failure paths of the writes of the command line and of ingestion: a write that fails
in this process releases its lock and leaves the store as the documentation says
(incomplete and resumable, or as before an append); the errors of a killed writer
name the command that made the store and its remedy."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import metatensor
import numpy as np
import pytest
from forked_writer import forked_writer_holding

import metatensor_dask as mtd
from metatensor_dask.execution.cli import main
from metatensor_dask.io import _zip
from metatensor_dask.testing import assert_equal_to_metatensor


def _map(first_system: int = 0) -> metatensor.TensorMap:
    """Two blocks of 4 samples with a positions gradient."""
    rng = np.random.default_rng(first_system)
    blocks = []
    for _ in range(2):
        samples = metatensor.Labels(
            ["system", "atom"], np.array([[first_system + i // 2, i % 2] for i in range(4)])
        )
        block = metatensor.TensorBlock(
            rng.normal(size=(4, 2)), samples, [], metatensor.Labels.range("n", 2)
        )
        gradient = metatensor.TensorBlock(
            rng.normal(size=(4, 3, 2)),
            metatensor.Labels(["sample", "atom"], np.array([[i, 0] for i in range(4)])),
            [metatensor.Labels.range("xyz", 3)],
            block.properties,
        )
        block.add_gradient("positions", gradient)
        blocks.append(block)
    return metatensor.TensorMap(metatensor.Labels.range("key", 2), blocks)


def _damaged_mts(path: Path) -> Path:
    """``path``: a saved map whose last values member has a changed byte (found when the
    values are computed, not at load)."""
    metatensor.save(path, _map())
    member = _zip.read_directory(str(path))["blocks/1/values.npy"]
    data = bytearray(path.read_bytes())
    data[member.offset + member.size - 3] ^= 1
    path.write_bytes(bytes(data))
    return path


def _damaged_zarr(path: Path, first_system: int) -> Path:
    """``path``: a store of a map whose first values chunk has a changed byte."""
    mtd.from_metatensor(_map(first_system)).to_zarr(path)
    chunk = path / "blocks" / "0" / "values" / "c.0.0"
    data = bytearray(chunk.read_bytes())
    data[0] ^= 1
    chunk.write_bytes(bytes(data))
    return path


def _lock_threads(store: Path) -> list[str]:
    """The heartbeat threads of the locks of ``store`` in this process."""
    name = f"metatensor-dask lock {store}"
    return [thread.name for thread in threading.enumerate() if thread.name == name]


def test_a_failed_convert_releases_its_lock(tmp_path, capsys):
    """A source that fails while it streams: the command fails (exit 1) with the
    damage; the store is incomplete, not locked (no lock file, no heartbeat left
    running in this process), so that another write of it says what to do with the
    incomplete write (here: mode="w" writes it again)."""
    source = _damaged_mts(tmp_path / "source.mts")
    out = tmp_path / "out.zarr"
    assert main(["convert", str(source), str(out), "--quiet"]) == 1
    assert "is damaged" in capsys.readouterr().err
    assert not (out / ".lock").exists()
    assert _lock_threads(out) == []
    with pytest.raises(mtd.IncompleteStoreError):
        mtd.open_zarr(out)
    tensor = mtd.from_metatensor(_map())
    with pytest.raises(mtd.MetatensorDaskError, match="holds an incomplete write") as error:
        tensor.to_zarr(out)
    assert not isinstance(error.value, mtd.StoreLockedError)
    tensor.to_zarr(out, mode="w")
    assert_equal_to_metatensor(mtd.open_zarr(out).compute(), _map())


def test_a_convert_resumed_from_a_repaired_mts_names_the_command_line_remedy(tmp_path, capsys):
    """A metatensor file written again after the failed convert is another source: the
    resume is refused with the command line's remedy (--overwrite), which works."""
    source = _damaged_mts(tmp_path / "source.mts")
    out = tmp_path / "out.zarr"
    assert main(["convert", str(source), str(out), "--quiet"]) == 1
    capsys.readouterr()
    metatensor.save(source, _map())
    assert main(["convert", str(source), str(out), "--resume", "--quiet"]) == 1
    message = capsys.readouterr().err
    assert f"cannot resume {out}: " in message
    assert "run the convert with --overwrite instead of --resume" in message
    assert main(["convert", str(source), str(out), "--overwrite", "--quiet"]) == 0
    assert_equal_to_metatensor(mtd.open_zarr(out).compute(), _map())


def test_a_failed_convert_append_releases_its_lock_and_is_discarded(tmp_path, capsys):
    """An append of a store whose chunk is damaged fails while it streams: the target
    keeps its stored samples, is not locked, and the interrupted append is given up
    with ``discard_append`` (which takes the lock) or refused by another append with
    its remedy."""
    out = tmp_path / "out.zarr"
    mtd.from_metatensor(_map()).to_zarr(out)
    source = _damaged_zarr(tmp_path / "source.zarr", first_system=10)
    assert main(["convert", str(source), str(out), "--append", "--quiet"]) == 1
    assert "damaged" in capsys.readouterr().err
    assert not (out / ".lock").exists()
    assert _lock_threads(out) == []
    with pytest.raises(mtd.MetatensorDaskError, match="discard_append") as error:
        mtd.from_metatensor(_map(20)).to_zarr(out, append_dim="samples")
    assert not isinstance(error.value, mtd.StoreLockedError)
    assert mtd.discard_append(out)
    assert_equal_to_metatensor(mtd.open_zarr(out).compute(), _map())


def test_a_failed_pipeline_releases_its_lock(tmp_path, capsys):
    """``apply`` (a pipeline of one step) whose input fails while it streams."""
    source = _damaged_mts(tmp_path / "source.mts")
    out = tmp_path / "out.zarr"
    assert main(["apply", "pow", str(source), "--arg", "B=2", "-o", str(out), "--quiet"]) == 1
    assert "is damaged" in capsys.readouterr().err
    assert not (out / ".lock").exists()
    assert _lock_threads(out) == []


# -- writers killed: the lock they leave names them and their remedy --------------------

#: A writer of ``store`` to be killed (``python -c WRITER kind store source folder
#: module``, the last two naming this module): it prints ``ready`` once imported, then
#: writes slowly (a dask callback sleeps before each task, a batch sleeps,
#: discard_append sleeps once it holds the lock).
WRITER = """
import importlib, sys, time
import dask
from dask.callbacks import Callback
import metatensor
import metatensor_dask as mtd
from metatensor_dask.execution.cli import main
sys.path.insert(0, sys.argv[4])
tests = importlib.import_module(sys.argv[5])
_map, slow_batch = tests._map, tests.slow_batch

kind, store, source = sys.argv[1:4]
print("ready", flush=True)
if kind == "write_batches":
    mtd.write_batches(slow_batch, range(20), store, batch_size=2, quiet=True)
elif kind == "append":
    with Callback(pretask=lambda *args: time.sleep(0.2)):
        mtd.from_metatensor(_map(10)).to_zarr(store, append_dim="samples", chunks=1)
elif kind == "convert":
    with Callback(pretask=lambda *args: time.sleep(0.2)):
        main(["convert", source, store, "--append", "--chunks", "1", "--quiet"])
elif kind == "discard":
    def pause(frame, event, arg):
        if event == "call" and frame.f_code.co_name == "_restore_nodes":
            time.sleep(30)
    sys.setprofile(pause)
    mtd.discard_append(store)
"""


def slow_batch(items: list[int]) -> metatensor.TensorMap:
    """A batch of ``write_batches`` that takes a while."""
    time.sleep(0.2)
    return _map()


def _killed(
    kind: str,
    store: Path,
    source: Path | None = None,
    append: bool = False,
    after: str | None = None,
) -> None:
    """Run the writer ``kind`` of ``store`` and kill it (SIGKILL) once it holds the lock
    (and, with ``append``, once it recorded its append; with ``after``, once it wrote
    that path of the store)."""
    here = Path(__file__)
    arguments = [kind, str(store), str(source), str(here.parent), here.stem]
    record = store / ".progress" / "append.json"

    def recorded() -> bool:
        # the whole record: a writer killed while it wrote the record left an append
        # that stored nothing, which a resume starts over with any tensor
        try:
            return "token" in json.loads(record.read_text())
        except (OSError, ValueError):
            return False

    def wanted() -> bool:
        return (not append or recorded()) and (after is None or (store / after).exists())

    with forked_writer_holding(WRITER, arguments, store, wanted):
        pass


def _joined(*first_systems: int) -> metatensor.TensorMap:
    return metatensor.join(
        [_map(first) for first in first_systems], axis="samples", different_keys="union"
    )


def _refused_append(store: Path) -> str:
    """The message refusing an append to ``store``, locked by a killed writer."""
    with pytest.raises(mtd.StoreLockedError) as error:
        mtd.from_metatensor(_map(50)).to_zarr(store, append_dim="samples")
    return str(error.value)


def test_a_killed_write_batches_names_its_resume(tmp_path):
    store = tmp_path / "batches.zarr"
    _killed("write_batches", store)
    for write in (
        lambda: mtd.write_batches(slow_batch, range(20), store, batch_size=2, quiet=True),
        lambda: mtd.from_metatensor(_map(50)).to_zarr(store, append_dim="samples"),
    ):
        with pytest.raises(mtd.StoreLockedError) as error:
            write()
        message = str(error.value)
        assert "looks gone (write_batches of user" in message
        assert "call write_batches(..., resume=True) with the same function" in message
        assert "mode='w'" not in message
    mtd.write_batches(lambda items: _map(), range(20), store, batch_size=2, resume=True)
    assert len(mtd.open_zarr(store).block(0).samples) == 40


def test_a_killed_append_names_its_resume_and_discard(tmp_path):
    store = tmp_path / "append.zarr"
    mtd.from_metatensor(_map()).to_zarr(store)
    _killed("append", store, append=True)
    message = _refused_append(store)
    assert "looks gone (to_zarr append of user" in message
    assert "to_zarr(..., append_dim='samples', resume=True) with the same tensor" in message
    assert "call discard_append" in message
    assert "mode='w'" not in message
    mtd.from_metatensor(_map(10)).to_zarr(store, append_dim="samples", resume=True)
    assert_equal_to_metatensor(mtd.open_zarr(store).compute(), _joined(0, 10))


def test_an_append_killed_before_recording_itself_is_not_told_to_overwrite(tmp_path):
    """Killed as soon as it holds the lock (before its record, most often): the remedy is
    an append's, never mode='w', which would delete the store appended to."""
    store = tmp_path / "early.zarr"
    mtd.from_metatensor(_map()).to_zarr(store)
    _killed("append", store)
    message = _refused_append(store)
    assert "looks gone (to_zarr append of user" in message
    assert "append_dim='samples', resume=True" in message
    assert "mode='w'" not in message


def test_a_killed_convert_append_names_the_command(tmp_path, capsys):
    store, source = tmp_path / "convert.zarr", tmp_path / "source.mts"
    mtd.from_metatensor(_map()).to_zarr(store)
    metatensor.save(source, _map(10))
    _killed("convert", store, source, append=True)
    command = ["convert", str(source), str(store), "--append", "--chunks", "1", "--quiet"]
    assert main(command) == 1
    message = capsys.readouterr().err
    assert "looks gone (metatensor-dask convert --append of user" in message
    assert "run the same command (metatensor-dask convert --append) with --resume" in message
    assert "discard_append" in message
    assert "resume=True" not in message
    # another source: the resume is refused with the command line's remedies
    other = tmp_path / "other.mts"
    metatensor.save(other, _map(20))
    assert main(["convert", str(other), *command[2:], "--resume"]) == 1
    message = capsys.readouterr().err
    assert f"cannot resume {store}: " in message
    assert "--resume finishes the interrupted append given the same sources" in message
    assert main([*command, "--resume"]) == 0
    assert_equal_to_metatensor(mtd.open_zarr(store).compute(), _joined(0, 10))


def test_a_killed_discard_append_names_itself(tmp_path):
    store = tmp_path / "discard.zarr"
    mtd.from_metatensor(_map()).to_zarr(store)
    _killed("append", store, append=True)
    _killed("discard", store)
    message = _refused_append(store)
    assert "looks gone (discard_append of user" in message
    assert "call discard_append again" in message
    assert mtd.discard_append(store)
    assert_equal_to_metatensor(mtd.open_zarr(store).compute(), _map())


def test_a_discarded_first_append_leaves_the_location_as_before(tmp_path):
    """An append that creates the store, killed while it stored rows (before its root):
    ``discard_append`` removes what it wrote, as its refusals say, rather than finding
    no store; the location is then empty, and the append can run again."""
    store, source = tmp_path / "new.zarr", tmp_path / "source.mts"
    metatensor.save(source, _map(10))
    _killed("convert", store, source, append=True, after="blocks")
    with pytest.raises(mtd.MetatensorDaskError, match="discard_append"):
        mtd.from_metatensor(_map(10)).to_zarr(store, append_dim="samples", resume=False)
    assert mtd.discard_append(store)
    assert sorted(path.name for path in store.iterdir()) == []
    command = ["convert", str(source), str(store), "--append", "--quiet"]
    assert main(command) == 0
    assert_equal_to_metatensor(mtd.open_zarr(store).compute(), _map(10))


# -- write_batches given batches it can not store -----------------------------------------


def _returns_a_dict(items: list[int]):
    return {"items": items}


def _returns_a_block(items: list[int]):
    return _map(items[0]).block(0)


def _other_properties_later(items: list[int]) -> metatensor.TensorMap:
    tensor = _map(items[0])
    if items[0] >= 4:
        tensor = metatensor.rename_dimension(tensor, "properties", "n", "other")
    return tensor


def _no_gradient_later(items: list[int]) -> metatensor.TensorMap:
    tensor = _map(items[0])
    return metatensor.remove_gradients(tensor) if items[0] >= 4 else tensor


@pytest.mark.parametrize(
    ("function", "failing", "message"),
    [
        (_returns_a_dict, 0, "returned a dict for batch 0 .*must return a .*TensorMap"),
        (_returns_a_block, 0, "returned a TensorBlock for batch 0"),
        (_other_properties_later, 2, "other properties than the stored ones"),
        (_no_gradient_later, 2, r"has the gradients \[\], the store \['positions'\]"),
    ],
)
def test_batches_that_can_not_be_stored_stop_the_run_resumably(
    tmp_path, function, failing, message
):
    """A batch that is no TensorMap, or that another batch's metadata forbids, stops the
    run with an error naming it and its first item; the batches before it stay, the lock
    is released, and the run resumes with a function that works."""
    store = tmp_path / "batches.zarr"
    with pytest.raises(mtd.MetatensorDaskError, match=message) as error:
        mtd.write_batches(function, range(8), store, batch_size=2, renumber=None, quiet=True)
    text = str(error.value)
    assert f"batch {failing} (items {2 * failing} to {2 * failing + 1}" in text
    assert "write_batches(..., resume=True)" in text
    assert not (store / ".lock").exists()
    mtd.write_batches(
        lambda items: _map(items[0]), range(8), store, batch_size=2, renumber=None, resume=True
    )
    assert_equal_to_metatensor(mtd.open_zarr(store).compute(), _joined(0, 2, 4, 6))
