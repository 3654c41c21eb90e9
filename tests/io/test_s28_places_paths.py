"""Stores and files named the ways HPC jobs name them: relative to a working directory
that changes (or that workers do not share), with ``~``, through symbolic links (to
the store, to a member of it, to nothing, into another store), as ``file://`` URLs,
and paths that are files. Every result equals metatensor."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import metatensor
import metatensor.operations as mops
import pytest
import zarr.storage
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.execution.cli import main
from metatensor_dask.io.inspection import describe_store
from metatensor_dask.testing import assert_equal_to_metatensor


@pytest.fixture(scope="module")
def tensor() -> metatensor.TensorMap:
    return make_metatensor(4, nested=False, n_properties=(4, 3, 2))


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "job").mkdir()
    (tmp_path / "other").mkdir()
    return tmp_path / "job", tmp_path / "other"


def test_a_relative_store_is_read_after_the_working_directory_changes(
    tmp_path, monkeypatch, tensor
):
    job, other = _folders(tmp_path)
    monkeypatch.chdir(job)
    mtd.from_metatensor(tensor).to_zarr("s.zarr", chunks=5)
    opened = mtd.open_zarr("s.zarr")
    delayed = mtd.multiply(opened, 2.0).to_zarr("twice.zarr", compute=False)
    monkeypatch.chdir(other)
    assert_equal_to_metatensor(opened, tensor)
    delayed.compute()
    assert os.listdir(other) == []
    assert_equal_to_metatensor(mtd.open_zarr(job / "twice.zarr"), mops.multiply(tensor, 2.0))


def test_a_store_under_home_is_written_there(tmp_path, monkeypatch, tensor):
    job, home = _folders(tmp_path)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(job)
    mtd.from_metatensor(tensor).to_zarr("~/s.zarr", chunks=5)
    assert os.listdir(job) == []
    assert_equal_to_metatensor(mtd.open_zarr(home / "s.zarr"), tensor)
    assert_equal_to_metatensor(mtd.open_zarr("~/s.zarr"), tensor)


def test_a_member_linked_from_elsewhere_is_read_and_verified(tmp_path, tensor):
    store = tmp_path / "s.zarr"
    mtd.from_metatensor(tensor).to_zarr(store, chunks=5)
    stored = describe_store(store).stored
    member = store / "blocks" / "0" / "gradients" / "positions"
    moved = tmp_path / "elsewhere"
    member.rename(moved)
    member.symlink_to(moved)
    (store / "blocks" / "1" / "loop").symlink_to(store)
    assert mtd.verify(store).problems == []
    assert describe_store(store).stored == stored
    assert_equal_to_metatensor(mtd.open_zarr(store), tensor)


def test_a_new_store_led_into_another_store_by_a_link_is_refused(tmp_path, tensor):
    outer = tmp_path / "outer.zarr"
    mtd.from_metatensor(tensor).to_zarr(outer, chunks=5)
    (outer / "blocks" / "spare").mkdir()
    (tmp_path / "link.zarr").symlink_to(outer / "blocks" / "spare")
    with pytest.raises(mtd.MetatensorDaskError, match=re.escape(f"inside the Zarr store {outer},")):
        mtd.from_metatensor(tensor).to_zarr(tmp_path / "link.zarr")
    assert mtd.verify(outer).ok


def test_a_link_to_nothing_is_named_as_such(tmp_path, tensor):
    (tmp_path / "s.zarr").symlink_to(tmp_path / "gone.zarr")
    with pytest.raises(mtd.MetatensorDaskError, match=r"symbolic link to .*gone\.zarr.* not exist"):
        mtd.from_metatensor(tensor).to_zarr(tmp_path / "s.zarr")
    with pytest.raises(mtd.MetatensorDaskError, match=r"symbolic link to .*gone\.zarr.* not exist"):
        mtd.open_zarr(tmp_path / "s.zarr")


def test_a_file_opened_as_a_store_is_named_with_how_to_read_it(tmp_path, tensor):
    metatensor.save(str(tmp_path / "t.mts"), tensor)
    with pytest.raises(mtd.MetatensorDaskError, match=r"is a file, not a Zarr store.*\.load"):
        mtd.open_zarr(f"{tmp_path}/t.mts/")
    mtd.from_metatensor(tensor).to_zarr(tmp_path / "s.zarr")
    zipped = shutil.make_archive(str(tmp_path / "s"), "zip", tmp_path / "s.zarr")
    remedy = f"open_zarr(zarr.storage.ZipStore({zipped!r}, mode='r'))"
    with pytest.raises(mtd.MetatensorDaskError, match=re.escape(remedy)):
        mtd.open_zarr(zipped)
    assert_equal_to_metatensor(mtd.open_zarr(zarr.storage.ZipStore(zipped, mode="r")), tensor)


def test_metatensor_files_at_file_urls(tmp_path, tensor):
    url = f"file://{tmp_path}/a #1 ü.mts"
    metatensor.save(str(tmp_path / "a #1 ü.mts"), tensor)
    assert_equal_to_metatensor(mtd.load(url), tensor)
    assert mtd.verify(url).ok
    mtd.save(f"file://{tmp_path}/b.mts", mtd.load(url))
    assert metatensor.equal(metatensor.load(str(tmp_path / "b.mts")), tensor)
    with pytest.raises(mtd.MetatensorDaskError, match="is a URL: metatensor files"):
        mtd.load("s3://bucket/t.mts")
    with pytest.raises(mtd.MetatensorError, match="use `load` to load TensorMap"):
        mtd.load_labels(url)


def test_metatensor_files_under_home(tmp_path, monkeypatch, tensor):
    job, home = _folders(tmp_path)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(job)
    mtd.save("~/t.mts", mtd.from_metatensor(tensor))
    assert os.listdir(job) == []
    assert metatensor.equal(metatensor.load(str(home / "t.mts")), tensor)
    assert_equal_to_metatensor(mtd.load("~/t.mts"), tensor)


def test_a_pipeline_run_from_elsewhere_takes_its_inputs_at_odd_paths(tmp_path, monkeypatch, tensor):
    folder = tmp_path / "data #1 ü"
    folder.mkdir()
    mtd.from_metatensor(tensor).to_zarr(folder / "a %20.zarr", chunks=5)
    (folder / "link.zarr").symlink_to(folder / "a %20.zarr")
    metatensor.save(str(folder / "b?.mts"), tensor)
    pipeline = folder / "p.yaml"
    pipeline.write_text(
        f'inputs: {{a: "a %20.zarr", b: link.zarr/, c: "file://{folder}/b?.mts"}}\n'
        "steps:\n"
        "  - {op: add, inputs: [a, b], name: sum}\n"
        "  - {op: multiply, inputs: [sum, c]}\n"
        'output: "out #.zarr"\n'
    )
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(pipeline.relative_to(tmp_path)), "-q"]) == 0
    expected = mops.multiply(mops.add(tensor, tensor), tensor)
    assert_equal_to_metatensor(mtd.open_zarr(folder / "out #.zarr"), expected)


@pytest.mark.parametrize("mode", ["w", "r+"])
def test_a_store_read_through_a_link_is_not_overwritten_by_what_reads_it(tmp_path, mode, tensor):
    store = tmp_path / "s.zarr"
    mtd.from_metatensor(tensor).to_zarr(store, chunks=5)
    (tmp_path / "link.zarr").symlink_to(store)
    twice = mtd.multiply(mtd.open_zarr(tmp_path / "link.zarr"), 2.0)
    with pytest.raises(mtd.MetatensorDaskError, match="this tensor reads the store it would"):
        twice.to_zarr(store, mode=mode)
    assert mtd.verify(store).ok
    assert_equal_to_metatensor(mtd.open_zarr(store), tensor)


def test_convert_refuses_its_source_seen_through_a_bind_mount(tmp_path, capsys, tensor):
    folder, view = _folders(tmp_path)
    mtd.from_metatensor(tensor).to_zarr(folder / "s.zarr", chunks=5)
    mounted = subprocess.run(["mount", "--bind", folder, view], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"no bind mount here: {mounted.stderr.decode().strip()}")
    try:
        arguments = [str(view / "s.zarr"), str(folder / "s.zarr"), "--overwrite", "-q"]
        assert main(["convert", *arguments]) == 1
    finally:
        subprocess.run(["umount", view], check=True)
    assert "is the source" in capsys.readouterr().err
    assert_equal_to_metatensor(mtd.open_zarr(folder / "s.zarr"), tensor)
