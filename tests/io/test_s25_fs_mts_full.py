"""A ``.mts`` save that runs out of room (a file size limit in a subprocess, standing
for a full disk) raises metatensor's error naming the file, the cause and the remedy,
and leaves the file as it was (or no file); saved again with room, it loads in
metatensor as the tensor."""

from __future__ import annotations

import os

import metatensor
import pytest
from test_s25_fs_full_disk import run_python
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd

pytestmark = pytest.mark.xdist_group("serial")

#: Saves ``make_metatensor(1)`` to ``argv[1]`` with files limited to ``argv[2]`` bytes;
#: prints the error's type and message, or ``done``.
SAVE = """
import resource, signal, sys
import metatensor_dask as mtd
from zarr_writer_process import make_metatensor

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
try:
    mtd.save(sys.argv[1], mtd.from_metatensor(make_metatensor(1)))
except Exception as error:
    print(type(error).__name__, error)
else:
    print("done")
"""


def _save(path: str, limit: int) -> str:
    return run_python(SAVE, path, str(limit))


@pytest.mark.parametrize("limit", [100, 20_000, 60_000])
@pytest.mark.parametrize("existing", [False, True])
def test_a_save_without_room_leaves_the_file_as_it_was(tmp_path, limit, existing):
    path = tmp_path / "t.mts"
    if existing:
        metatensor.save(str(path), make_metatensor(3, n_samples=(2, 1, 1)))
        before = path.read_bytes()
    printed = _save(str(path), limit)
    assert printed.startswith(f"MetatensorError io error: File too large (os error 27): '{path}'")
    assert "ulimit -f" in printed, printed
    if existing:
        assert "the file is as it was" in printed, printed
        assert path.read_bytes() == before
    else:
        assert "no file was written" in printed, printed
    assert sorted(os.listdir(tmp_path)) == (["t.mts"] if existing else [])
    # saved again with room, in this process (a new interpreter took a second or two)
    mtd.save(str(path), mtd.from_metatensor(make_metatensor(1)))
    assert metatensor.equal(metatensor.load(str(path)), make_metatensor(1))
