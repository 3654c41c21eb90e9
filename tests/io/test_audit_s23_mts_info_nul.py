"""`info` entries holding a NUL character: metatensor's `set_info` keeps the text
before it, and its `load` fails on a file holding one (an internal error). `save`
refuses such a map (from a store holding one) before it writes anything, rather than a
file metatensor can not read; `set_info` refuses the character."""

import json

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd


def _tensor():
    block = mtd.TensorBlock(
        np.ones((2, 1)),
        mtd.Labels(["s"], np.arange(2, dtype=np.int32).reshape(-1, 1)),
        [],
        mtd.Labels(["p"], np.zeros((1, 1), dtype=np.int32)),
    )
    return mtd.TensorMap(mtd.Labels(["k"], np.zeros((1, 1), dtype=np.int32)), [block])


def _with_info(directory, key, value):
    """The map, through a Zarr store whose root was edited to hold ``{key: value}`` as
    its info (``set_info`` refuses a NUL; a store written by other tools may hold one)."""
    tensor = _tensor()
    tensor.set_info("other", "kept")
    tensor.set_info("KEY", "VALUE")
    store = directory / "in.zarr"
    tensor.to_zarr(str(store))
    root = (store / "zarr.json").read_text()
    for placeholder, text in (("KEY", key), ("VALUE", value)):
        root = root.replace(f'"{placeholder}"', json.dumps(text))
    (store / "zarr.json").write_text(root)
    return mtd.open_zarr(str(store))


@pytest.mark.parametrize(("key", "value"), [("e", "x\0y"), ("a\0b", "v"), ("e", "\0")])
def test_save_refuses_info_with_a_nul_character(tmp_path, key, value):
    tensor = _with_info(tmp_path, key, value)
    assert tensor.info() == {"other": "kept", key: value}
    path = tmp_path / "out.mts"
    path.write_bytes(b"previous")
    with pytest.raises(mtd.MetatensorDaskError, match="holds a NUL character"):
        mtd.save(str(path), tensor)
    assert path.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.zarr", "out.mts"]


@pytest.mark.parametrize(("key", "value"), [("e", "x\0y"), ("a\0b", "v"), ("e", "\0")])
def test_set_info_refuses_a_nul_character(key, value):
    tensor = _tensor()
    with pytest.raises(ValueError, match="holds a NUL character, which metatensor cuts"):
        tensor.set_info(key, value)
    assert tensor.info() == {}


def test_info_without_nul_is_read_back_by_metatensor(tmp_path):
    tensor = _tensor()
    tensor.set_info("k", "\u2028 é \x01 \n")
    mtd.save(str(tmp_path / "out.mts"), tensor)
    assert metatensor.load(str(tmp_path / "out.mts")).info() == tensor.info()
