"""`info` entries holding a NUL character: metatensor's `set_info` keeps the text
before it, and its `load` fails on a file holding one (an internal error). `save`
refuses such a map before it writes anything, rather than a file metatensor can not
read."""

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


@pytest.mark.parametrize(("key", "value"), [("e", "x\0y"), ("a\0b", "v"), ("e", "\0")])
def test_save_refuses_info_with_a_nul_character(tmp_path, key, value):
    tensor = _tensor()
    tensor.set_info("other", "kept")
    tensor.set_info(key, value)
    path = tmp_path / "out.mts"
    path.write_bytes(b"previous")
    with pytest.raises(mtd.MetatensorDaskError, match="holds a NUL character"):
        mtd.save(str(path), tensor)
    assert path.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mts"]


def test_info_without_nul_is_read_back_by_metatensor(tmp_path):
    tensor = _tensor()
    tensor.set_info("k", "\u2028 é \x01 \n")
    mtd.save(str(tmp_path / "out.mts"), tensor)
    assert metatensor.load(str(tmp_path / "out.mts")).info() == tensor.info()
