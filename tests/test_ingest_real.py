"""Ingestion as a user does it: ``write_batches``, appends and ``convert --append`` on
batches with several keys (coming, going, in another order), cell-like gradients with
components, zero-sample blocks, and runs that fail, are resumed or are requeued. Every
store equals metatensor's ``join(..., axis="samples", different_keys="union")`` of the
renumbered batches, and ``verify`` finds it whole."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import dask
import metatensor
import numpy as np
import pytest
from forked_workers import forked_workers
from ingest_support import renumbered, store_files
from pipeline_support import run

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

# LocalClusters of worker processes: one such test at a time (2 cores)
pytestmark = pytest.mark.xdist_group("clusters")

CLI = [sys.executable, "-m", "metatensor_dask"]

#: The keys of a batch (pairs of species), by the first item of the batch: each batch
#: has its own keys, in its own order; (8, 8) only appears with first item 4.
KEYS = {0: [(1, 1), (1, 6)], 2: [(6, 1), (1, 1)], 4: [(1, 6), (8, 8), (1, 1)]}


def _labels(names: list[str], values) -> metatensor.Labels:
    values = np.asarray(values, dtype=np.int32).reshape(-1, len(names))
    return metatensor.Labels(names, values)


def _block(rng: np.random.Generator, n_systems: int, empty: bool) -> metatensor.TensorBlock:
    """Two atoms per system (none when ``empty``), a positions gradient (rows grouped
    by sample) and a strain gradient with two components."""
    samples = [] if empty else [(s, a) for s in range(n_systems) for a in range(2)]
    properties = _labels(["n"], [0, 1, 2])
    block = metatensor.TensorBlock(
        rng.normal(size=(len(samples), 3)), _labels(["system", "atom"], samples), [], properties
    )
    rows = [(i, s, a) for i, (s, _) in enumerate(samples) for a in range(2)]
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.normal(size=(len(rows), 3, 3)),
            _labels(["sample", "system", "atom"], rows),
            [_labels(["xyz"], [0, 1, 2])],
            properties,
        ),
    )
    block.add_gradient(
        "strain",
        metatensor.TensorBlock(
            rng.normal(size=(len(samples), 3, 3, 3)),
            _labels(["sample"], np.arange(len(samples))),
            [_labels(["xyz_1"], [0, 1, 2]), _labels(["xyz_2"], [0, 1, 2])],
            properties,
        ),
    )
    return block


def batch(items: list[int]) -> metatensor.TensorMap:
    """The batch of ``items`` (systems numbered from 0, as featomic does): the keys of
    :data:`KEYS` for its first item (cycling every 6 items); (8, 8) has no sample."""
    keys = KEYS[items[0] % 6 - items[0] % 2]
    rng = np.random.default_rng(items[0])
    blocks = [_block(rng, len(items), key == (8, 8)) for key in keys]
    return metatensor.TensorMap(_labels(["center_type", "neighbor_type"], keys), blocks)


def joined(tensors: list[metatensor.TensorMap]) -> metatensor.TensorMap:
    return metatensor.join(tensors, axis="samples", different_keys="union")


def expected(n_items: int, batch_size: int) -> metatensor.TensorMap:
    """The store of ``write_batches(batch, range(n_items), ..., batch_size)``."""
    batches = []
    for start in range(0, n_items, batch_size):
        items = list(range(start, min(start + batch_size, n_items)))
        batches.append(renumbered(batch(items), start))
    return joined(batches)


# -- write_batches ---------------------------------------------------------------------


class Recorded:
    """:func:`batch`, recording the threads it runs on and how many run at once."""

    def __init__(self):
        self.threads: set[str] = set()
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()

    def __call__(self, items: list[int]) -> metatensor.TensorMap:
        with self._lock:
            self.threads.add(threading.current_thread().name)
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            return batch(items)
        finally:
            with self._lock:
                self.running -= 1


@pytest.mark.parametrize("name", ["synchronous", "sync", "single-threaded"])
def test_synchronous_scheduler_computes_batches_in_this_thread(tmp_path, name):
    """Under dask's synchronous scheduler (a function that is not thread-safe, a
    debugger), the batches run in the calling thread, one at a time: they ran on a pool
    of threads whatever the setting."""
    function = Recorded()
    path = tmp_path / "t.zarr"
    with dask.config.set(scheduler=name, num_workers=4):
        mtd.write_batches(function, list(range(11)), path, batch_size=2, quiet=True)
    assert function.threads == {threading.current_thread().name}
    assert function.most == 1
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), expected(11, 2))
    assert mtd.verify(path).ok


def test_a_scheduler_setting_comes_before_the_default_client(tmp_path):
    """As dask does: with a client active, scheduler="threads" computes on threads here,
    and a failing batch under the synchronous scheduler stops the run as on threads."""
    from distributed import Client, LocalCluster

    function = Recorded()
    path = tmp_path / "t.zarr"
    with (
        forked_workers(),  # a second to start, not seconds (see forked_workers)
        LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address="127.0.0.1:0") as local,
        Client(local),
        dask.config.set(scheduler="threads"),
    ):
        mtd.write_batches(function, list(range(5)), path, batch_size=2, quiet=True)
    assert function.threads and all("ThreadPoolExecutor" in t for t in function.threads)
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), expected(5, 2))

    def failing(items):
        if 4 in items:
            raise RuntimeError("no item 4")
        return batch(items)

    other = tmp_path / "f.zarr"
    with (
        dask.config.set(scheduler="synchronous"),
        pytest.raises(mtd.MetatensorDaskError, match=r"batch 2 .*no item 4.*the 2 batches"),
    ):
        mtd.write_batches(failing, list(range(7)), other, batch_size=2, quiet=True)
    with dask.config.set(scheduler="synchronous"):
        mtd.write_batches(batch, list(range(7)), other, batch_size=2, resume=True, quiet=True)
    assert_equal_to_metatensor(mtd.open_zarr(other).compute(), expected(7, 2))


# -- convert --append ------------------------------------------------------------------


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_convert_append_interrupted_is_finished_with_resume(capsys, tmp_path):
    """A convert --append stopped while its values streamed into the store (here by a
    source found damaged, then repaired; a killed job leaves the same) left an
    interrupted append and the lock of a process that is gone: the same command with
    --resume finishes it, and does nothing once it completed."""
    first, second = batch([0, 1, 2]), batch([4, 5])
    metatensor.save(str(tmp_path / "0.mts"), first)
    source = tmp_path / "1.zarr"
    mtd.from_metatensor(second).to_zarr(source, chunks=1)
    out = tmp_path / "all.zarr"
    assert run(capsys, "convert", tmp_path / "0.mts", out, "--append", "-q")[0] == 0
    chunk = source / "blocks" / "0" / "values" / "c.3.0"
    _flip_a_byte(chunk)
    command = [*CLI, "convert", str(source), str(out), "--append", "--renumber", "system", "-q"]
    failed = subprocess.run(command, capture_output=True, text=True)
    assert failed.returncode == 1 and "is damaged" in failed.stderr
    _flip_a_byte(chunk)
    assert not mtd.verify(out).ok
    code, _, err = run(capsys, *command[3:])
    assert code == 1 and "--resume" in err
    assert run(capsys, *command[3:], "--resume")[0] == 0
    assert_equal_to_metatensor(mtd.open_zarr(out).compute(), joined([first, renumbered(second, 3)]))
    assert mtd.verify(out).ok
    before = store_files(out)
    assert run(capsys, *command[3:], "--resume")[0] == 0
    assert store_files(out) == before


def test_convert_interrupted_is_finished_with_resume(capsys, tmp_path):
    """The same for a plain convert into a new store; --resume into a .mts file is a
    usage error."""
    tensor = batch([4, 5, 6])
    source = tmp_path / "source.zarr"
    mtd.from_metatensor(tensor).to_zarr(source, chunks=1)
    out = tmp_path / "copy.zarr"
    chunk = source / "blocks" / "0" / "gradients" / "positions" / "values" / "c.5.0.0"
    _flip_a_byte(chunk)
    failed = subprocess.run([*CLI, "convert", str(source), str(out), "-q"], capture_output=True)
    assert failed.returncode == 1
    _flip_a_byte(chunk)
    code, _, err = run(capsys, "convert", source, out, "-q")
    assert code == 1 and "--resume to finish an interrupted convert" in err
    assert run(capsys, "convert", source, out, "-q", "--resume")[0] == 0
    assert_equal_to_metatensor(mtd.open_zarr(out).compute(), tensor)
    assert mtd.verify(out).ok
    code, _, err = run(capsys, "convert", source, tmp_path / "x.mts", "--resume")
    assert code == 2 and "--resume finishes a Zarr destination" in err


def test_appending_to_an_interrupted_run_names_write_batches(capsys, tmp_path):
    """A store left by a run of write_batches that stopped is finished by
    write_batches(resume=True) (to_zarr's resume has no plan of it): appends, from
    Python or convert --append, name that remedy, and info too."""

    def failing(items):
        if 4 in items:
            raise RuntimeError("no item 4")
        return batch(items)

    path = tmp_path / "t.zarr"
    with pytest.raises(mtd.MetatensorDaskError, match="no item 4"):
        mtd.write_batches(failing, list(range(7)), path, batch_size=2, quiet=True)
    appended = mtd.from_metatensor(batch([0]))
    remedy = r"write_batches\(\.\.\., resume=True\) and the same arguments, then append"
    for resume in (False, True):
        with pytest.raises(mtd.MetatensorDaskError, match=remedy):
            appended.to_zarr(path, append_dim="samples", renumber={"system": "next"}, resume=resume)
    metatensor.save(str(tmp_path / "0.mts"), batch([0]))
    code, _, err = run(capsys, "convert", tmp_path / "0.mts", path, "--append", "-q")
    assert code == 1 and "write_batches(..., resume=True)" in err
    code, out, _ = run(capsys, "info", path)
    assert code == 0 and "write_batches(..., resume=True) for a run of batches" in out
    mtd.write_batches(batch, list(range(7)), path, batch_size=2, resume=True, quiet=True)
    appended.to_zarr(path, append_dim="samples", renumber={"system": "next"})
    result = joined([expected(7, 2), renumbered(batch([0]), 7)])
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), result)
    assert mtd.verify(path).ok


def test_a_requeued_script_finds_its_run_finished_after_appends(capsys, tmp_path):
    """A script that runs write_batches(resume=True) and then appends with resume=True
    (to_zarr, or convert --append --resume), run again by a requeued job, finds
    everything done: the append kept the record of the finished run (it dropped it,
    and write_batches then refused the store as 'not written by write_batches')."""
    extra = batch([2, 3])
    metatensor.save(str(tmp_path / "extra.mts"), extra)
    for name in ("python", "convert"):
        path = tmp_path / f"{name}.zarr"
        for _ in range(2):
            mtd.write_batches(batch, list(range(5)), path, batch_size=2, resume=True, quiet=True)
            if name == "python":
                mtd.from_metatensor(extra).to_zarr(
                    path, append_dim="samples", renumber={"system": "next"}, resume=True
                )
            else:
                convert = ["convert", tmp_path / "extra.mts", path, "--append", "--resume"]
                assert run(capsys, *convert, "--renumber", "system", "-q")[0] == 0
        result = joined([expected(5, 2), renumbered(extra, 5)])
        assert_equal_to_metatensor(mtd.open_zarr(path).compute(), result)
        assert mtd.verify(path).ok
    with pytest.raises(mtd.MetatensorDaskError, match="its batch_size was 2, here it is 3"):
        mtd.write_batches(batch, list(range(5)), path, batch_size=3, resume=True, quiet=True)


def test_a_requeued_loop_of_appends_stores_each_tensor_once(tmp_path):
    """A job appending tensors one after the other with resume=True, run again by a
    requeue (after it completed, or killed during an append): the tensors stored
    before are skipped, the interrupted one finished. Only the last append was
    recognised: the others were appended again (renumbered, so nothing refused it)."""
    tensors = [batch([0, 1]), batch([2]), batch([4, 5, 6])]
    source = tmp_path / "last.zarr"
    mtd.from_metatensor(tensors[2]).to_zarr(source, chunks=1)
    chunk = source / "blocks" / "0" / "values" / "c.4.0"

    def job(path: Path) -> None:
        stored = [mtd.from_metatensor(t) for t in tensors[:2]] + [mtd.open_zarr(source)]
        for tensor in stored:
            tensor.to_zarr(path, append_dim="samples", renumber={"system": "next"}, resume=True)

    expected_store = joined([tensors[0], renumbered(tensors[1], 2), renumbered(tensors[2], 3)])
    done = tmp_path / "done.zarr"
    job(done)
    job(done)
    assert_equal_to_metatensor(mtd.open_zarr(done).compute(), expected_store)
    killed = tmp_path / "killed.zarr"
    _flip_a_byte(chunk)  # the last append stops while it stores its rows
    with pytest.raises(mtd.MetatensorDaskError, match="is damaged"):
        job(killed)
    _flip_a_byte(chunk)
    assert not mtd.verify(killed).ok
    job(killed)
    assert_equal_to_metatensor(mtd.open_zarr(killed).compute(), expected_store)
    assert mtd.verify(killed).ok
    assert store_files(killed) == store_files(done)


def _new_keys(tensor: metatensor.TensorMap, shift: int) -> metatensor.TensorMap:
    """``tensor`` with its keys' ``center_type`` moved by ``shift`` (keys no store
    holds)."""
    keys = tensor.keys.values.copy()
    keys[:, 0] += shift
    return metatensor.TensorMap(
        metatensor.Labels(tensor.keys.names, keys), [b.copy() for b in tensor.blocks()]
    )


def test_writes_of_some_blocks_keep_the_records_of_runs_and_appends(tmp_path):
    """mode='a' (new keys) and mode='r+' (values rewritten), also resumed after an
    interruption, keep the record of the write_batches run and the list of appends:
    the requeued script resuming them finds them done (write_batches refused the store
    as 'not written by write_batches', and the appends were stored again)."""
    extra, added = batch([2, 3]), _new_keys(batch([0]), 100)
    path = tmp_path / "t.zarr"

    def job() -> None:
        mtd.write_batches(batch, list(range(5)), path, batch_size=2, resume=True, quiet=True)
        mtd.from_metatensor(extra).to_zarr(
            path, append_dim="samples", renumber={"system": "next"}, resume=True
        )

    job()
    with dask.config.set(scheduler="synchronous"):
        lazy = mtd.from_metatensor(added).to_zarr(path, mode="a", compute=False)
    del lazy  # never run: the write is interrupted
    mtd.from_metatensor(added).to_zarr(path, mode="a", resume=True)
    stored = mtd.open_zarr(path).compute()
    mtd.multiply(stored, 2.0).to_zarr(path, mode="r+")
    job()
    result = joined([expected(5, 2), renumbered(extra, 5), added])
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), metatensor.multiply(result, 2.0))
    assert mtd.verify(path).ok
