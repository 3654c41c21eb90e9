"""Cases the previous changes to stores, reads and info missed.

A ``DirFileSystem`` given the file system it wraps by position (``DirFileSystem(path,
fs)``), or zarr's asynchronous wrapper given it by name, failed every read and write
with a ``TypeError``: the instance that keeps no listings was made with that file system
given twice. A blosc chunk cut short in a store of format 1 with a compressor was read
without the check of its stated size (those stores are read allowing missing chunks,
through no checked view at all), and ``verify`` passed it. ``to_metatensor`` of a map
whose info metatensor can not hold (from a store) cut a NUL's text silently, or failed
with a bare ``UnicodeEncodeError`` once everything was computed. A store in a zip
archive in memory was named by the archive's path alone, as a local file.
"""

from __future__ import annotations

import json
from pathlib import Path

import dask
import fsspec
import metatensor
import numpy as np
import pytest
from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem
from zarr.storage import FsspecStore
from zip_support import zip_store

import metatensor_dask as mtd
from metatensor_dask.io.zarr_identity import TABLE


def _tensor(scale: float = 1.0, rows: int = 10) -> metatensor.TensorMap:
    """One block of ``rows`` samples with one component, and a positions gradient."""
    values = np.arange(rows * 6, dtype=np.float64).reshape(rows, 2, 3) * scale + 0.25
    samples = metatensor.Labels(["system"], np.arange(rows, dtype=np.int32)[:, None])
    components = [metatensor.Labels(["xyz"], np.arange(2, dtype=np.int32)[:, None])]
    properties = metatensor.Labels(["n"], np.arange(3, dtype=np.int32)[:, None])
    block = metatensor.TensorBlock(values, samples, components, properties)
    gradient_samples = metatensor.Labels(
        ["sample", "atom"], np.stack([np.arange(rows), np.zeros(rows)], axis=1).astype(np.int32)
    )
    gradient = metatensor.TensorBlock(
        values[:, None] * -2.0,
        gradient_samples,
        [metatensor.Labels(["d"], np.arange(1, dtype=np.int32)[:, None]), *components],
        properties,
    )
    block.add_gradient("positions", gradient)
    return metatensor.TensorMap(metatensor.Labels(["key"], np.array([[0]], np.int32)), [block])


# -- file systems wrapping another, given it by position or by name -----------------


def _written_and_read(store: FsspecStore) -> None:
    """Write a map to ``store``, verify it, and read it back whole."""
    mtd.from_metatensor(_tensor()).to_zarr(store, chunks=5)
    assert mtd.verify(store).ok
    metatensor.equal_raise(mtd.to_metatensor(mtd.open_zarr(store)), _tensor())


def test_a_dir_file_system_given_its_file_system_by_position_is_used(tmp_path):
    fs = DirFileSystem(str(tmp_path), LocalFileSystem(auto_mkdir=True))
    # was TypeError: DirFileSystem.__init__() got multiple values for argument 'fs'
    _written_and_read(FsspecStore(AsyncFileSystemWrapper(fs, asynchronous=True), path="t.zarr"))
    assert (tmp_path / "t.zarr" / "zarr.json").exists()


def test_an_asynchronous_wrapper_given_its_file_system_by_name_is_used(tmp_path):
    wrapper = AsyncFileSystemWrapper(fs=LocalFileSystem(auto_mkdir=True), asynchronous=True)
    # was TypeError: AsyncFileSystemWrapper.__init__() got multiple values for 'fs'
    _written_and_read(FsspecStore(wrapper, path=str(tmp_path / "t.zarr")))


# -- blosc frames cut short in stores of format 1 -------------------------------------


def _format_1(path: Path) -> None:
    """Make the store at ``path`` look written by format 1: its root's record of the
    format and completion only, and no chunk tables."""
    root = json.loads((path / "zarr.json").read_text())
    ours = root["attributes"]["metatensor_dask"]
    root["attributes"]["metatensor_dask"] = {"format": 1, "complete": ours["complete"]}
    for name, document in root["consolidated_metadata"]["metadata"].items():
        if TABLE in document.get("attributes", {}):
            del document["attributes"][TABLE]
            (path / name / "zarr.json").write_text(json.dumps(document))
    (path / "zarr.json").write_text(json.dumps(root))


def _blosc_format_1(path: Path, rows: int) -> Path:
    """A format 1 store of ``rows`` rows in blosc chunks of 4 rows without checksum; the
    file of its first values chunk."""
    blosc = {"name": "blosc", "configuration": {"cname": "lz4"}}
    settings = {"metatensor_dask.compressor": blosc, "metatensor_dask.checksum": False}
    with dask.config.set(settings):
        mtd.from_metatensor(_tensor(rows=rows)).to_zarr(path, chunks=4)
    _format_1(path)
    return path / "blocks" / "0" / "values" / "c.0.0.0"


@pytest.mark.filterwarnings("ignore::metatensor_dask.StoreFormatWarning")
def test_a_blosc_chunk_cut_short_in_a_format_1_store_is_damage(tmp_path):
    chunk = _blosc_format_1(tmp_path / "t.zarr", 10)
    chunk.write_bytes(chunk.read_bytes()[:-1])
    with pytest.raises(mtd.DamagedStoreError, match=r"'c\.0\.0\.0' .* blosc frame .* cut short"):
        mtd.to_metatensor(mtd.open_zarr(tmp_path / "t.zarr"))
    # verify passed it
    (problem,) = mtd.verify(tmp_path / "t.zarr").problems
    assert "blosc frame" in str(problem)


@pytest.mark.filterwarnings("ignore::metatensor_dask.StoreFormatWarning")
def test_a_format_1_store_still_reads_its_missing_chunks_as_zeros(tmp_path):
    # format 1 skipped all-zero chunks: their absence is not damage there
    chunk = _blosc_format_1(tmp_path / "t.zarr", 10)
    chunk.unlink()
    read = mtd.to_metatensor(mtd.open_zarr(tmp_path / "t.zarr")).block(0).values
    expected = _tensor().block(0).values.copy()
    expected[:4] = 0
    np.testing.assert_array_equal(read, expected)
    assert mtd.verify(tmp_path / "t.zarr").ok


# -- info that metatensor can not hold, in a store -------------------------------------


def _opened_with_info(path: Path, text: str) -> mtd.TensorMap:
    """The map of a store whose root was edited to hold ``{"note": text}`` as its info
    (``set_info`` refuses such text; older versions and other tools wrote it)."""
    mtd.from_metatensor(_tensor()).to_zarr(path, chunks=5)
    root = json.loads((path / "zarr.json").read_text())
    root["attributes"]["info"] = {"note": text}
    (path / "zarr.json").write_text(json.dumps(root))
    return mtd.open_zarr(path)


@pytest.mark.parametrize(
    ("text", "match"), [("x\0y", "NUL character"), ("\ud800x", "unpaired surrogate")]
)
def test_to_metatensor_refuses_info_metatensor_can_not_hold(tmp_path, text, match):
    tensor = _opened_with_info(tmp_path / "t.zarr", text)
    # a NUL: the info became 'x' silently (metatensor's set_info cuts the text there);
    # a surrogate: a bare UnicodeEncodeError, once every array was computed
    with pytest.raises(mtd.MetatensorDaskError, match=rf"{match}.*nothing was computed"):
        mtd.to_metatensor(tensor)
    with pytest.raises(mtd.MetatensorDaskError, match=match):
        tensor.save_buffer()


# -- stores in zip archives on other file systems than the local one -------------------


def test_a_store_in_a_zip_archive_in_memory_is_named_with_its_file_system(tmp_path):
    folder = tmp_path / "t.zarr"
    mtd.from_metatensor(_tensor()).to_zarr(folder, chunks=5)
    archive = tmp_path / "t.zip"
    zip_store(folder, archive, leave_out="blocks/0/values/c.1.0.0")
    # the same path in memory: the archive there, the local one removed
    with fsspec.open(f"memory://{archive}", "wb") as copy:
        copy.write(archive.read_bytes())
    archive.unlink()
    try:
        # was named 'zip://::/.../t.zip', a local file (which is not there)
        with pytest.raises(mtd.DamagedStoreError, match=f"the store at zip://::memory://{archive}"):
            mtd.to_metatensor(mtd.open_zarr(f"zip://::memory://{archive}"))
    finally:
        fsspec.filesystem("memory").rm(f"memory://{archive}")
