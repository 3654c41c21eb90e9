"""Review of the direct writes and of the command line's undo under its lock.

- The aligned buffers of the direct writes are this process's alone: a process forked
  after a direct write (``multiprocessing``'s default start method on Linux) writes
  its files from buffers of its own, not from memory its parent writes too; a buffer
  that can not be made leaves no file descriptor open.
- A command that failed before computing undoes its write only if it still holds its
  lock: a store that another writer wrote at the location after this command's lock
  was deleted (or taken over, once stale) is not removed; an append it can not
  discard leaves its failure reported, with a note on the append left, and one it
  discarded after a stop is not called incomplete.
"""

from __future__ import annotations

import errno
import resource

import dask
import metatensor
import numpy as np
from test_s25_fs_full_disk import run_python

import metatensor_dask as mtd
from metatensor_dask.execution import cli
from metatensor_dask.testing import assert_equal_to_metatensor

#: Writes ``argv[1]``/child in a forked child from its first piece, then lets the parent
#: write ``argv[1]``/parent, then writes the child's second piece; prints whether the
#: child's file holds its own bytes.
FORKED = """
import os, sys
from metatensor_dask.io._direct_writes import write_new_file

folder = sys.argv[1]
write_new_file(f"{folder}/first", [memoryview(bytes(8192))])  # a buffer kept for reuse
child_ready, parent_done = os.pipe(), os.pipe()
pid = os.fork()
if pid == 0:
    def pieces():
        yield memoryview(b"c" * 4096)
        os.write(child_ready[1], b"x")
        os.read(parent_done[0], 1)
        yield memoryview(b"c" * 4096)

    write_new_file(f"{folder}/child", pieces())
    os._exit(0)
os.read(child_ready[0], 1)
write_new_file(f"{folder}/parent", [memoryview(b"p" * 8192)])
os.write(parent_done[1], b"x")
os.waitpid(pid, 0)
with open(f"{folder}/child", "rb") as file:
    print("own bytes" if file.read() == b"c" * 8192 else "mixed bytes")
"""


def test_a_forked_process_writes_from_buffers_of_its_own(tmp_path):
    assert run_python(FORKED, str(tmp_path)) == "own bytes"


#: Writes a file while no memory can be mapped (an address space limit): prints the
#: errno of the write's failure and the descriptors it left open.
NO_MEMORY = """
import os, resource, sys
from metatensor_dask.io._direct_writes import write_new_file

status = open("/proc/self/status").read().split("VmSize:")[1].split()
before = len(os.listdir("/proc/self/fd"))
resource.setrlimit(resource.RLIMIT_AS, (int(status[0]) * 1024 + 2**21, resource.RLIM_INFINITY))
try:
    write_new_file(sys.argv[1] + "/file", [memoryview(bytes(8192))])
except OSError as error:
    failed = error.errno
resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
print(failed, len(os.listdir("/proc/self/fd")) - before)
"""


def test_a_buffer_that_can_not_be_made_leaves_no_descriptor_open(tmp_path):
    assert run_python(NO_MEMORY, str(tmp_path)) == f"{errno.ENOMEM} 0"


UNREACHABLE = ["--cluster", "tcp://127.0.0.1:1", "-q"]


def tensor(seed: int, samples: int = 6) -> metatensor.TensorMap:
    rng = np.random.default_rng(seed)
    block = metatensor.TensorBlock(
        rng.normal(size=(samples, 2)),
        metatensor.Labels(["system"], np.arange(samples, dtype=np.int32)[:, None]),
        [],
        metatensor.Labels.range("p", 2),
    )
    return metatensor.TensorMap(metatensor.Labels.range("k", 1), [block])


def test_a_store_written_by_another_writer_is_not_undone(tmp_path, capsys, monkeypatch):
    mtd.from_metatensor(tensor(0)).to_zarr(tmp_path / "x.zarr")
    out = tmp_path / "o.zarr"
    execution = cli._execution

    def taken_over(args):
        # the command's lock deleted (or found stale and taken over), and another
        # writer writes the location, before this command's cluster fails to start
        (out / ".lock").unlink()
        mtd.from_metatensor(tensor(1, 3)).to_zarr(out, mode="w")
        return execution(args)

    monkeypatch.setattr(cli, "_execution", taken_over)
    command = ["apply", "pow", str(tmp_path / "x.zarr"), "-o", str(out), "--arg", "B=2"]
    with dask.config.set({"distributed.comm.timeouts.connect": "0.5s"}):
        assert cli.main([*command, *UNREACHABLE]) == 1
    assert "cannot connect to the dask scheduler" in capsys.readouterr().err
    assert_equal_to_metatensor(mtd.open_zarr(out), tensor(1, 3))


def test_an_append_that_can_not_be_discarded_leaves_the_failure_reported(
    tmp_path, capsys, monkeypatch
):
    """The discard of the append finds no room for its lock (a file size limit, standing
    for a full disk): the command still reports why it failed, and says that the append
    is left, with the remedies."""
    mtd.from_metatensor(tensor(0)).to_zarr(tmp_path / "x.zarr")
    metatensor.save(str(tmp_path / "more.mts"), tensor(1))
    undo = cli._Output.undo

    def limited(output):
        unlimited = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, unlimited[1]))
        try:
            undo(output)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, unlimited)

    monkeypatch.setattr(cli._Output, "undo", limited)
    command = ["convert", "--append", "--renumber", "system", str(tmp_path / "more.mts")]
    with dask.config.set({"distributed.comm.timeouts.connect": "0.5s"}):
        assert cli.main([*command, str(tmp_path / "x.zarr"), *UNREACHABLE]) == 1
    err = capsys.readouterr().err
    assert "error: cannot connect to the dask scheduler" in err
    assert "could not be given up" in err and "discard_append" in err
    monkeypatch.setattr(cli._Output, "undo", undo)
    mtd.discard_append(tmp_path / "x.zarr")
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "x.zarr"), tensor(0))


def test_an_append_discarded_after_a_stop_is_not_called_incomplete(tmp_path, capsys, monkeypatch):
    """Ctrl-C while the cluster starts: the append set up is discarded, and the line
    saying why the command stopped does not call the store incomplete."""
    mtd.from_metatensor(tensor(0)).to_zarr(tmp_path / "x.zarr")
    metatensor.save(str(tmp_path / "more.mts"), tensor(1))

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_execution", interrupted)
    command = ["convert", "--append", "--renumber", "system", str(tmp_path / "more.mts")]
    assert cli.main([*command, str(tmp_path / "x.zarr")]) == 130
    assert capsys.readouterr().err == "metatensor-dask convert: interrupted\n"
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "x.zarr"), tensor(0))
