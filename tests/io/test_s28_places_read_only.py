"""A store in a folder that can not be written (a shared dataset: a read-only mount,
or a folder without write permission) is refused by every write with one clear error,
raised before the write creates anything (its folder, its lock), that names the
folder and says nothing was written; what is read from it equals metatensor."""

from __future__ import annotations

from pathlib import Path

import metatensor
import metatensor.operations as mops
import pytest
from read_only_mounts import unwritable
from zarr.storage import FsspecStore
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.execution.batch import BatchJob, SubmitError, submit
from metatensor_dask.execution.cli import main
from metatensor_dask.testing import assert_equal_to_metatensor


def _snapshot(folder: Path) -> dict[str, tuple[int, float]]:
    return {
        str(p.relative_to(folder)): (p.lstat().st_size, p.lstat().st_mtime)
        for p in folder.rglob("*")
    }


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    folder = tmp_path_factory.mktemp("s28-places") / "data set"
    folder.mkdir()
    tensor = make_metatensor(3, nested=False, n_properties=(4, 3, 2))
    mtd.from_metatensor(tensor).to_zarr(folder / "s.zarr", chunks=5)
    metatensor.save(str(folder / "t.mts"), tensor)
    before = _snapshot(folder)
    with unwritable(folder) as view:
        yield view, tensor
    assert _snapshot(folder) == before


def _batch(items: list[int]) -> metatensor.TensorMap:
    return make_metatensor(items[0], nested=False, n_properties=(4, 3, 2))


WRITES = {
    "w-": lambda view, t: t.to_zarr(view / "s.zarr"),
    "w": lambda view, t: t.to_zarr(view / "s.zarr", mode="w"),
    "a": lambda view, t: t.to_zarr(view / "s.zarr", mode="a"),
    "r+": lambda view, t: t.to_zarr(view / "s.zarr", mode="r+"),
    "resume": lambda view, t: t.to_zarr(view / "s.zarr", resume=True),
    "append": lambda view, t: t.to_zarr(
        view / "s.zarr", append_dim="samples", renumber={"system": "next"}, compute=False
    ),
    "new store": lambda view, t: t.to_zarr(view / "new.zarr"),
    "new store below": lambda view, t: t.to_zarr(view / "sub" / "new.zarr"),
    "file store object": lambda view, t: t.to_zarr(
        FsspecStore.from_url(f"file://{view}/s.zarr", storage_options={"auto_mkdir": True}),
        append_dim="samples",
        renumber={"system": "next"},
    ),
    "discard_append": lambda view, t: mtd.discard_append(view / "s.zarr"),
    "write_batches": lambda view, t: mtd.write_batches(_batch, [1, 2], view / "b.zarr"),
}


@pytest.mark.parametrize("write", WRITES, ids=list(WRITES))
def test_a_write_is_refused_before_it_starts(shared, write):
    view, tensor = shared
    with pytest.raises(OSError, match=r"Read-only file system|Permission denied") as refused:
        WRITES[write](view, mtd.from_metatensor(tensor))
    message = str(refused.value)
    assert "can not write to" in message and "nothing was written" in message, message
    assert str(view) in message and ".lock" not in message, message


def test_the_command_line_refuses_in_one_line(shared, tmp_path, capsys):
    view, _ = shared
    code = main(["convert", str(view / "t.mts"), str(view / "s.zarr"), "--append", "-q"])
    error = capsys.readouterr().err
    assert code == 1 and error.count("\n") == 1, error
    assert error.startswith(f"metatensor-dask convert: error: can not write to {view}"), error


def test_operations_on_it_equal_metatensor(shared, tmp_path):
    view, tensor = shared
    product = mtd.multiply(mtd.open_zarr(view / "s.zarr"), mtd.load(view / "t.mts"))
    product.to_zarr(tmp_path / "p.zarr")
    expected = mops.multiply(tensor, tensor)
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "p.zarr"), expected)
    summed = mtd.sum_over_samples(mtd.open_zarr(view / "s.zarr"), "atom")
    assert_equal_to_metatensor(summed, mops.sum_over_samples(tensor, "atom"), rtol=1e-13)


def test_the_job_of_a_pipeline_kept_there_is_refused_before_it_is_submitted(shared, tmp_path):
    view, _ = shared
    job = BatchJob(str(view / "p.yaml"))
    with pytest.raises(
        SubmitError, match="can not be written; nothing was submitted: give --script"
    ):
        submit(job)
    with pytest.raises(SubmitError, match="can not be written; nothing was submitted: give --log"):
        submit(job, str(tmp_path / "job.sbatch"))
    assert list(tmp_path.iterdir()) == []


def test_the_demo_asked_to_work_there_names_its_option(shared, capsys):
    view, _ = shared
    assert main(["demo", "--workdir", str(view / "demo"), "-q"]) == 1
    error = capsys.readouterr().err
    assert f"can not write its stores in {view / 'demo'}" in error, error
    assert "give --workdir a folder you can write" in error, error
