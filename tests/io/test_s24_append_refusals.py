"""Refused writes and appends change nothing: not a byte of a stored store, and no
folder where there was none (nor a Zarr store named as a metatensor file)."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd


def _tensor(samples: list[int]) -> mtd.TensorMap:
    """One block of samples ``["system", "atom"]`` ``(s, 0)`` for ``s`` in ``samples``."""
    values = np.array([[s, 0] for s in samples], np.int32).reshape(-1, 2)
    block = metatensor.TensorBlock(
        np.arange(2.0 * len(samples)).reshape(-1, 2),
        metatensor.Labels(["system", "atom"], values),
        [],
        metatensor.Labels(["n"], np.arange(2, dtype=np.int32).reshape(-1, 1)),
    )
    keys = metatensor.Labels(["k"], np.zeros((1, 1), np.int32))
    return mtd.from_metatensor(metatensor.TensorMap(keys, [block]))


def location_state(path: Path) -> dict[str, str]:
    """Every folder and file under ``path`` (``path`` itself included), files with a
    hash of their bytes; empty when ``path`` does not exist."""
    if not os.path.lexists(path):
        return {}
    found = {".": "folder" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()}
    for folder, folders, files in os.walk(path):
        for name in folders:
            found[os.path.relpath(os.path.join(folder, name), path)] = "folder"
        for name in files:
            full = Path(folder) / name
            found[str(full.relative_to(path))] = hashlib.sha256(full.read_bytes()).hexdigest()
    return found


REFUSED_WHERE_NOTHING_IS = [
    ({"mode": "r+"}, "mode='r+' rewrites an existing store, but there is none"),
    ({"append_dim": "samples", "renumber": {"structure": 1}}, "can not renumber 'structure'"),
    ({"append_dim": "samples", "renumber": {"sample": "next"}}, "can not renumber 'sample'"),
]


@pytest.mark.parametrize(("arguments", "message"), REFUSED_WHERE_NOTHING_IS)
@pytest.mark.parametrize("form", ["path", "nested", "url"])
def test_a_refusal_where_no_store_is_leaves_no_folder(tmp_path, arguments, message, form):
    """The folder of the store (and its missing parents) are created to take the lock:
    a call refused then removes them again."""
    target = tmp_path / "a" / "b" / "new.zarr" if form == "nested" else tmp_path / "new.zarr"
    location = f"file://{target}" if form == "url" else target
    options = {"auto_mkdir": True} if form == "url" else None
    with pytest.raises(mtd.MetatensorDaskError, match=re.escape(message)):
        _tensor([0, 1]).to_zarr(location, storage_options=options, **arguments)
    assert sorted(os.listdir(tmp_path)) == []


def test_a_refusal_keeps_folders_that_were_there(tmp_path):
    """An empty folder given as the store is not removed by a refusal."""
    target = tmp_path / "empty.zarr"
    target.mkdir()
    with pytest.raises(mtd.MetatensorDaskError, match=re.escape("mode='r+' rewrites")):
        _tensor([0]).to_zarr(target, mode="r+")
    assert location_state(target) == {".": "folder"}


def test_a_write_that_fails_after_writing_keeps_what_it_wrote(tmp_path):
    """Only empty folders are removed: a store whose tensor failed to compute is left
    for ``resume=True`` or ``discard_append``."""
    import dask.array as da

    def fail(block):
        raise RuntimeError("the tensor failed to compute")

    tensor = _tensor([0, 1])
    block = tensor.block(0)
    broken = mtd.TensorBlock(
        da.map_blocks(fail, block.values, dtype=block.values.dtype),
        block.samples,
        block.components,
        block.properties,
    )
    failing = mtd.TensorMap(tensor.keys, [broken])
    target = tmp_path / "t.zarr"
    with pytest.raises(RuntimeError, match="failed to compute"):
        failing.to_zarr(target, append_dim="samples")
    assert (target / ".progress" / "append.json").exists()


@pytest.mark.parametrize("name", ["new.mts", "NEW.MTS", "new.npz", "new.mts/"])
@pytest.mark.parametrize("arguments", [{}, {"append_dim": "samples"}, {"mode": "a"}])
def test_no_store_is_created_under_a_metatensor_file_name(tmp_path, name, arguments):
    """A folder named ``x.mts`` would be read by ``load``, ``verify`` and ``convert``
    as a metatensor file: such a name is refused, naming ``mtd.save``."""
    location = str(tmp_path / name)
    with pytest.raises(mtd.MetatensorDaskError, match=r"names a metatensor file.*mtd\.save"):
        _tensor([0]).to_zarr(location, **arguments)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "arguments", [{"append_dim": "samples"}, {"mode": "a"}, {"mode": "w"}, {"mode": "r+"}]
)
def test_a_metatensor_file_is_left_as_it_is(tmp_path, arguments):
    path = tmp_path / "t.mts"
    metatensor.save(str(path), mtd.to_metatensor(_tensor([0, 1])))
    before = location_state(path)
    with pytest.raises(mtd.MetatensorDaskError, match="names a metatensor file"):
        _tensor([2]).to_zarr(path, **arguments)
    assert location_state(path) == before
    assert mtd.verify(path).ok


@pytest.mark.parametrize("offset", ["next", 5])
def test_renumbering_a_dimension_the_store_lacks_is_refused_without_blocks(tmp_path, offset):
    """A tensor without blocks renumbers nothing, but a dimension the stored samples do
    not have (a misspelt name) is refused as it is for a tensor with blocks, before
    anything changes."""
    path = tmp_path / "t.zarr"
    _tensor([0, 1]).to_zarr(path)
    before = location_state(path)
    empty = mtd.from_metatensor(
        metatensor.TensorMap(metatensor.Labels(["k"], np.zeros((0, 1), np.int32)), [])
    )
    with pytest.raises(mtd.MetatensorDaskError, match=r"can not renumber 'sytem'.*the store"):
        empty.to_zarr(path, append_dim="samples", renumber={"sytem": offset})
    assert location_state(path) == before
    empty.to_zarr(path, append_dim="samples", renumber={"system": offset})
    _tensor([0]).to_zarr(path, append_dim="samples", renumber={"system": offset})
    stored = mtd.open_zarr(path).block(0).samples.column("system")
    np.testing.assert_array_equal(stored, [0, 1, 2 if offset == "next" else 5])
