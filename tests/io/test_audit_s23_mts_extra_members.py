"""Members that metatensor does not read, in a gradient's folder of a `.mts` file (a
`properties.npy` there, a note of another tool): metatensor loads the file and ignores
them, so `load` does too. Members named as a gradient's arrays at the wrong depth (a
gradient name holding a `/`) are still refused."""

import io
import zipfile

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def _labels(name, n):
    return metatensor.Labels([name], np.arange(n, dtype=np.int32).reshape(-1, 1))


def _tensor():
    block = metatensor.TensorBlock(
        np.arange(6.0).reshape(2, 3), _labels("s", 2), [], _labels("p", 3)
    )
    gradient = metatensor.TensorBlock(
        np.arange(18.0).reshape(2, 3, 3),
        metatensor.Labels(["sample", "atom"], np.array([[0, 0], [1, 1]], dtype=np.int32)),
        [_labels("xyz", 3)],
        _labels("p", 3),
    )
    block.add_gradient("positions", gradient)
    return metatensor.TensorMap(_labels("k", 1), [block])


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _with_members(tmp_path, extra):
    source = tmp_path / "source.mts"
    metatensor.save(str(source), _tensor())
    path = tmp_path / "extra.mts"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w") as copy:
        for name in original.namelist():
            copy.writestr(name, original.read(name))
        for name, data in extra.items():
            copy.writestr(name, data)
    return str(path)


@pytest.mark.parametrize(
    "extra",
    [
        {"blocks/0/gradients/positions/properties.npy": "properties"},
        {"blocks/0/gradients/positions/notes.txt": b"made by hand"},
        {"blocks/0/gradients/positions/components/0.npy.bak": b"old"},
    ],
)
def test_members_metatensor_ignores_in_a_gradient_folder_are_ignored(tmp_path, extra):
    data = {
        name: _npy(np.array([(7,), (8,), (9,)], dtype=[("p", "<i4")]))
        if content == "properties"
        else content
        for name, content in extra.items()
    }
    path = _with_members(tmp_path, data)
    theirs = metatensor.load(path)
    ours = mtd.load(path)
    assert_equal_to_metatensor(ours, theirs)
    assert ours.block(0).gradients_list() == ["positions"]


def test_a_gradient_name_holding_a_slash_is_still_refused(tmp_path):
    source = tmp_path / "source.mts"
    metatensor.save(str(source), _tensor())
    path = tmp_path / "slash.mts"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w") as copy:
        for name in original.namelist():
            renamed = name.replace("gradients/positions/", "gradients/a/b/")
            copy.writestr(renamed, original.read(name))
    with pytest.raises(mtd.UnsafeNameError, match="not laid out as a gradient's"):
        mtd.load(str(path))
