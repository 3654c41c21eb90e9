"""Where `save` writes: metatensor writes into the file at the path, in place, so that
a symbolic link keeps pointing at the file written and a file replaced keeps its
permissions. metatensor-dask writes a temporary file renamed over the target: the same
must hold there."""

import os
import stat

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd


def _tensor(module):
    block = module.TensorBlock(
        np.arange(6.0).reshape(3, 2),
        module.Labels(["s"], np.arange(3, dtype=np.int32).reshape(-1, 1)),
        [],
        module.Labels(["p"], np.arange(2, dtype=np.int32).reshape(-1, 1)),
    )
    return module.TensorMap(module.Labels(["k"], np.zeros((1, 1), dtype=np.int32)), [block])


def _layout(root):
    """Every entry under ``root``: its kind (link and target, or file and content)."""
    found = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, root)
            if os.path.islink(path):
                found[relative] = ("link", os.readlink(path))
            else:
                with open(path, "rb") as file:
                    found[relative] = ("file", file.read())
    return found


@pytest.mark.parametrize("target_exists", [True, False])
def test_save_through_a_symbolic_link_writes_its_target(tmp_path, target_exists):
    layouts = []
    for module in (metatensor, mtd):
        root = tmp_path / module.__name__
        (root / "real").mkdir(parents=True)
        if target_exists:
            (root / "real" / "data.mts").write_bytes(b"old content")
        os.symlink(os.path.join("real", "data.mts"), root / "link.mts")
        data = _tensor(module)
        module.save(str(root / "link.mts"), data)
        layouts.append(_layout(root))
    theirs, ours = layouts
    assert ours == theirs
    assert ours["link.mts"] == ("link", os.path.join("real", "data.mts"))
    assert ours["real/data.mts"][0] == "file"
    assert mtd.equal(mtd.load(str(tmp_path / "metatensor_dask" / "link.mts")), _tensor(mtd))


@pytest.mark.parametrize("mode", [0o640, 0o444, 0o600])
def test_a_file_replaced_keeps_its_permissions(tmp_path, mode):
    modes = []
    for module in (metatensor, mtd):
        path = tmp_path / f"{module.__name__}.mts"
        path.write_bytes(b"old content")
        os.chmod(path, mode)
        if not os.access(path, os.W_OK):
            pytest.skip("metatensor can not write a read-only file (not running as root)")
        module.save(str(path), _tensor(module))
        modes.append(stat.S_IMODE(os.stat(path).st_mode))
    assert modes == [mode, mode]


def test_a_new_file_gets_the_default_permissions(tmp_path):
    modes = []
    for module in (metatensor, mtd):
        path = tmp_path / f"{module.__name__}.mts"
        module.save(str(path), _tensor(module))
        modes.append(stat.S_IMODE(os.stat(path).st_mode))
    assert modes[0] == modes[1]
