"""How writes run, as a dask user tries them: the ``Delayed`` of ``to_zarr(...,
compute=False)`` computed twice, after the store changed, with other writes, under each
scheduler."""

import io
import logging
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import dask
import metatensor
import pytest

import metatensor_dask as mtd
from metatensor_dask import StoreLockedError
from metatensor_dask.datasets import tutorial_file
from metatensor_dask.testing import assert_equal_to_metatensor

SPHERICAL = tutorial_file("spherical-expansion.npz")


@pytest.fixture(scope="module")
def other_process():
    """A pool of one spawned process (as dask's ``"processes"`` scheduler starts by
    default), shared by the tests of the module: each test gives it to
    ``dask.compute(..., scheduler="processes", pool=...)``, whose tasks then run in
    another process as they would in a pool of their own, without an interpreter start
    and imports per test."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        yield pool


def _chunk_files(path):
    return {
        os.path.join(folder, name): os.stat(os.path.join(folder, name)).st_mtime_ns
        for folder, _, names in os.walk(path)
        for name in names
        if "/values/c" in os.path.join(folder, name)
    }


def test_a_delayed_write_computed_again_writes_nothing(tmp_path):
    out = str(tmp_path / "out.zarr")
    tensor = mtd.load(SPHERICAL)
    delayed = mtd.to_zarr(tensor, out, compute=False)
    delayed.compute()
    before = _chunk_files(out)
    with pytest.raises(StoreLockedError, match="already ran") as error:
        delayed.compute()
    assert "call to_zarr again" in str(error.value)
    assert _chunk_files(out) == before
    assert_equal_to_metatensor(mtd.open_zarr(out), metatensor.load(SPHERICAL))


def test_a_delayed_write_computed_again_leaves_a_newer_store_alone(tmp_path):
    out = str(tmp_path / "out.zarr")
    tensor = mtd.load(SPHERICAL)
    delayed = mtd.to_zarr(tensor, out, compute=False)
    delayed.compute()
    newer = mtd.multiply(tensor, tensor)
    mtd.to_zarr(newer, out, mode="w")
    with pytest.raises(StoreLockedError):
        delayed.compute()
    assert mtd.equal(mtd.open_zarr(out), newer)


def test_a_persisted_map_of_tiny_blocks_reuses_no_key_of_its_computation(tmp_path):
    # distributed: "Detected different `run_spec` for key ... This can cause failures and
    # deadlocks", when a key computed before (a block of the group, by its own task) came
    # back as the pick of the persisted group's result
    distributed = pytest.importorskip("distributed")
    messages = io.StringIO()
    handler = logging.StreamHandler(messages)
    logger = logging.getLogger("distributed.scheduler")
    logger.addHandler(handler)
    tensor = mtd.load(SPHERICAL)
    try:
        with (
            distributed.LocalCluster(
                n_workers=1, processes=False, dashboard_address="127.0.0.1:0"
            ) as c,
            distributed.Client(c) as client,
        ):
            first = mtd.to_zarr(mtd.multiply(tensor, tensor), tmp_path / "a.zarr", compute=False)
            future = client.compute(first)
            future.result()
            persisted = mtd.multiply(tensor, tensor).persist()
            mtd.to_zarr(persisted, tmp_path / "b.zarr")
    finally:
        logger.removeHandler(handler)
    assert "Detected different `run_spec`" not in messages.getvalue()
    assert mtd.equal(mtd.open_zarr(tmp_path / "b.zarr"), mtd.open_zarr(tmp_path / "a.zarr"))


@pytest.mark.parametrize("registered", [True, False])
def test_a_dask_progress_bar_of_the_user_is_the_only_bar(capsys, registered):
    # the user's bar and ours drew together: two bars in a terminal, and in a log dask's
    # bar (without end of line) ran into our lines
    from dask.diagnostics import ProgressBar

    from metatensor_dask.execution.progress import compute

    tensor = mtd.multiply(mtd.load(SPHERICAL), 2.0)
    bar = ProgressBar(out=sys.stderr)
    if registered:
        bar.register()
        try:
            compute(tensor)
        finally:
            bar.unregister()
    else:
        with bar:
            compute(tensor)
    err = capsys.readouterr().err
    assert "progress:" not in err
    assert err.count("100% Completed") == 1


@pytest.mark.parametrize("options", [{"mode": "a"}, {"mode": "r+"}, {"append_dim": "samples"}])
def test_a_second_write_while_a_delayed_one_waits_says_to_compute_it_first(tmp_path, options):
    out = str(tmp_path / "out.zarr")
    tensor = mtd.load(SPHERICAL)
    pending = mtd.to_zarr(tensor, out, compute=False)
    with pytest.raises(StoreLockedError) as error:
        mtd.to_zarr(mtd.multiply(tensor, 2.0), out, compute=False, **options)
    message = str(error.value)
    assert "looks gone" not in message
    assert "whose Delayed has not run: compute it first" in message
    pending.compute()
    assert_equal_to_metatensor(mtd.open_zarr(out), metatensor.load(SPHERICAL))


@pytest.mark.parametrize("kind", ["object", "url"])
def test_a_delayed_write_to_a_memory_store_refuses_tasks_in_other_processes(
    tmp_path, kind, other_process
):
    # the scheduler is chosen when the Delayed is computed, after to_zarr checked it: the
    # tasks stored a copy of a MemoryStore (silently: the store stayed incomplete), or
    # found no lock in their own empty memory:// (and said the Delayed had already run)
    from zarr.storage import MemoryStore

    store = MemoryStore() if kind == "object" else f"memory://{tmp_path.name}.zarr"
    tensor = mtd.load(SPHERICAL)
    delayed = mtd.to_zarr(tensor, store, compute=False)
    with pytest.raises(mtd.MetatensorDaskError, match="memory store can not be used here"):
        dask.compute(delayed, scheduler="processes", pool=other_process)
    # the threaded scheduler still writes it; its lock was kept
    mtd.to_zarr(tensor, store, resume=True)
    assert mtd.equal(mtd.open_zarr(store), tensor)


def test_a_computed_tensor_overwrites_the_store_it_was_read_from(tmp_path):
    # xarray's pattern: load, then overwrite. The labels, read on first use, were read
    # once mode='w' had emptied the store: 'the store is damaged', and the store lost
    out = str(tmp_path / "x.zarr")
    mtd.to_zarr(mtd.load(SPHERICAL), out)
    doubled = mtd.multiply(mtd.open_zarr(out), 2.0).compute()
    mtd.to_zarr(doubled, out, mode="w")
    assert mtd.equal(mtd.open_zarr(out), mtd.multiply(mtd.load(SPHERICAL), 2.0))


def test_a_lazy_tensor_reading_a_store_is_refused_before_overwriting_it(tmp_path):
    out = str(tmp_path / "x.zarr")
    mtd.to_zarr(mtd.load(SPHERICAL), out)
    before = _chunk_files(out)
    lazy = mtd.multiply(mtd.open_zarr(out), 2.0)
    with pytest.raises(mtd.MetatensorDaskError, match="reads the store it would overwrite"):
        mtd.to_zarr(lazy, out, mode="w")
    assert _chunk_files(out) == before
    assert_equal_to_metatensor(mtd.open_zarr(out), metatensor.load(SPHERICAL))


def test_a_delayed_append_to_a_memory_store_refuses_tasks_in_other_processes(other_process):
    # the append was committed to a copy: dask.compute returned, the rows never came
    from zarr.storage import MemoryStore

    tensor = mtd.load(SPHERICAL)
    other = mtd.insert_dimension(tensor, "samples", 0, "copy", 1)
    tensor = mtd.insert_dimension(tensor, "samples", 0, "copy", 0)
    store = MemoryStore()
    mtd.to_zarr(tensor, store)
    delayed = mtd.to_zarr(other, store, append_dim="samples", compute=False)
    with pytest.raises(mtd.MetatensorDaskError, match="memory store can not be used here"):
        dask.compute(delayed, scheduler="processes", pool=other_process)
    mtd.to_zarr(other, store, append_dim="samples", resume=True)
    joined = mtd.join([tensor, other], axis="samples")
    assert mtd.equal(mtd.open_zarr(store), joined)
