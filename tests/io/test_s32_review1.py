"""Review of the direct writes and of the command line's undo under its lock.

- The aligned buffers of the direct writes are this process's alone: a process forked
  after a direct write (``multiprocessing``'s default start method on Linux) writes
  its files from buffers of its own, not from memory its parent writes too.
"""

from __future__ import annotations

import os
import subprocess
import sys

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
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", FORKED, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "own bytes"
