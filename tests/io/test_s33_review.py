"""Review of the chunk checksums by the crc32c package, of the ``direct-writes``
setting and of the check of a partial last chunk while an append is interrupted.

- A wrong ``direct-writes`` value is refused before a write touches its store, as a
  wrong ``drop-behind`` is: it was read only by the tasks writing chunk files, so that
  ``to_zarr`` and ``write_batches`` left an incomplete store behind (and with
  ``drop-behind: false`` the value was never read, nor refused).
- ``discard_append`` lists in the chunk tables the partial last chunk as it finds it:
  an older copy of it put back while the append was interrupted (which readers refuse:
  it holds zeros where an earlier append stored rows) became the chunk listed, read as
  zeros without error, and ``verify`` found nothing. The discard now reads the chunks
  whose entries it changes through a reader's checks first, and refuses damage.
"""

from __future__ import annotations

import shutil

import dask
import metatensor
import numpy as np
import pytest
from store_support import failing

import metatensor_dask as mtd
from metatensor_dask.errors import MetatensorDaskError

WRONG = r"direct-writes must be true, false or auto, not 'sometimes'"


def _tensor(n: int, first: int = 0) -> metatensor.TensorMap:
    values = np.arange(n * 4, dtype=np.float64).reshape(n, 4)
    block = metatensor.TensorBlock(
        values,
        metatensor.Labels(["system"], np.arange(first, first + n, dtype=np.int32)[:, None]),
        [],
        metatensor.Labels.range("p", 4),
    )
    return metatensor.TensorMap(metatensor.Labels.range("k", 1), [block])


def _batch(items: list[int]) -> metatensor.TensorMap:
    return _tensor(len(items), first=items[0])


@pytest.mark.parametrize("drop_behind", ["256MiB", False])
def test_a_wrong_direct_writes_setting_is_refused_before_a_write(tmp_path, drop_behind):
    settings = {
        "metatensor_dask.direct-writes": "sometimes",
        "metatensor_dask.drop-behind": drop_behind,
    }
    tensor = mtd.from_metatensor(_tensor(30))
    with dask.config.set(settings), pytest.raises(MetatensorDaskError, match=WRONG):
        tensor.to_zarr(tmp_path / "written.zarr", chunks=20)
    assert not (tmp_path / "written.zarr").exists()
    with dask.config.set(settings), pytest.raises(MetatensorDaskError, match=WRONG):
        mtd.write_batches(_batch, list(range(6)), tmp_path / "batches.zarr", 3, quiet=True)
    assert not (tmp_path / "batches.zarr").exists()


def test_a_wrong_direct_writes_setting_leaves_an_append_undone(tmp_path):
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(_tensor(30)).to_zarr(path, chunks=20)
    before = {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}
    appended = mtd.from_metatensor(_tensor(5, first=100))
    with dask.config.set({"metatensor_dask.direct-writes": "sometimes"}):
        with pytest.raises(MetatensorDaskError, match=WRONG):
            appended.to_zarr(path, append_dim="samples")
    assert {p: p.read_bytes() for p in path.rglob("*") if p.is_file()} == before
    assert metatensor.equal(mtd.to_metatensor(mtd.open_zarr(path)), _tensor(30))


@pytest.mark.parametrize("value", ["TRUE", "Auto", False])
def test_the_direct_writes_values_are_accepted(tmp_path, value):
    with dask.config.set({"metatensor_dask.direct-writes": value}):
        mtd.from_metatensor(_tensor(30)).to_zarr(tmp_path / "t.zarr", chunks=20)
    assert metatensor.equal(mtd.to_metatensor(mtd.open_zarr(tmp_path / "t.zarr")), _tensor(30))


@pytest.mark.parametrize("value", [None, 1, {"on": True}, ["auto"]])
def test_other_direct_writes_values_are_refused_by_name(tmp_path, value):
    with dask.config.set({"metatensor_dask.direct-writes": value}):
        with pytest.raises(MetatensorDaskError, match=r"direct-writes must be true, false or"):
            mtd.from_metatensor(_tensor(30)).to_zarr(tmp_path / "t.zarr", chunks=20)
    assert not (tmp_path / "t.zarr").exists()


@pytest.mark.parametrize("shards", [None, 2])
def test_discarding_an_append_does_not_list_an_older_partial_chunk_put_back(tmp_path, shards):
    path, appended = tmp_path / "t.zarr", tmp_path / "appended.zarr"
    name = "c.1.0" if shards else "c.2.0"
    with dask.config.set({"metatensor_dask.shard-chunks": shards}):
        mtd.from_metatensor(_tensor(25)).to_zarr(path, chunks=10)
        older = (path / "blocks/0/values" / name).read_bytes()
        mtd.from_metatensor(_tensor(3, first=100)).to_zarr(path, append_dim="samples")
        expected = mtd.to_metatensor(mtd.open_zarr(path))
        shutil.copytree(path, appended)
        mtd.from_metatensor(_tensor(4, first=200)).to_zarr(appended, append_dim="samples")
        with pytest.raises(RuntimeError, match="the source failed"):
            failing(_tensor(4, first=200)).to_zarr(path, append_dim="samples")
    assert (path / ".progress/append.json").exists()
    chunk = path / "blocks/0/values" / name
    chunk.write_bytes(older)  # rows 20 to 27 read as zeros
    listed = "is not the chunk the store lists"
    with pytest.raises(mtd.DamagedStoreError, match=listed):
        mtd.to_metatensor(mtd.open_zarr(path))
    with pytest.raises(mtd.DamagedStoreError, match=listed):
        mtd.discard_append(path)
    with pytest.raises(mtd.DamagedStoreError, match=listed):
        mtd.to_metatensor(mtd.open_zarr(path))
    # as an append killed once it replaced the chunk leaves it: its rows kept, new after
    shutil.copyfile(appended / "blocks/0/values" / name, chunk)
    assert mtd.discard_append(path)
    assert not (path / ".progress").exists()
    assert metatensor.equal(mtd.to_metatensor(mtd.open_zarr(path)), expected)
    assert mtd.verify(path).problems == []
