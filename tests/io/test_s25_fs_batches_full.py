"""A run of ``write_batches`` whose lock can not be written (a file size limit, in a
subprocess, standing for a full disk) names the store, the cause and the remedy, and
leaves no folder of its own."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

#: Runs write_batches of ``make_metatensor`` into ``argv[1]``, files limited to
#: ``argv[2]`` bytes; prints the errno and message of its OSError, or ``done``.
BATCHES = """
import resource, signal, sys
import metatensor_dask as mtd
from zarr_writer_process import make_metatensor

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
try:
    mtd.write_batches(lambda items: make_metatensor(items[0]), [1], sys.argv[1], quiet=True)
except OSError as error:
    print(error.errno, error)
else:
    print("done")
"""


def test_a_run_whose_lock_can_not_be_written_leaves_no_store(tmp_path):
    store = tmp_path / "new.zarr"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", BATCHES, str(store), "1000"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    number, message = done.stdout.strip().split(" ", 1)
    assert int(number) == errno.EFBIG, done.stdout + done.stderr
    assert f"writing {store} failed" in message and "ulimit -f" in message, message
    assert "nothing was written: run it again" in message, message
    assert not store.exists()
    mtd.write_batches(lambda items: make_metatensor(items[0]), [1], store, quiet=True)
    assert_equal_to_metatensor(mtd.open_zarr(store), make_metatensor(1))
