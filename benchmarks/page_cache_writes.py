"""What writing files costs the writer, with and without drop-behind.

Writes ``COUNT`` files of 50 MiB (the size of one featomic batch of the ingestion
benchmark) in a folder, one after the other with a pause between them (the batch being
computed), and reports the CPU seconds of this process (user + system) per GiB
written, and its wall time without the pauses, for:

* ``plain``: one ``write`` of each file, its pages left in the page cache (what any
  writer does by default);
* ``plain, 128 KiB calls``: the same in calls of 128 KiB, as metatensor-dask writes
  (:mod:`metatensor_dask.io._file_writes`): the page cache holds them in blocks of that
  size rather than of 2 MiB;
* ``drop-behind``: the same, each file's write-back started at once and the files older
  than the newest 256 MiB dropped from the page cache once on disk, as appends do
  (:mod:`metatensor_dask.io._page_cache`);
* ``plain, right after freeing``: ``plain`` right after the files of the previous case
  were deleted (their page cache freed a moment before).

* ``memory``: no file, fresh memory of the same size written by numpy (advising huge
  pages, numpy's default), after a rest;
* ``memory, right after freeing``: the same right after the memory of the case before
  was freed;
* ``memory, no huge pages``: the same after a rest, numpy's huge-page advice off (the
  ``huge-pages`` setting, :mod:`metatensor_dask._huge_pages`).

The files of each case are deleted before the next, after a rest of ``REST`` seconds
(so that the memory they freed has gone back to the free pool, as it has in a long
run); on a virtual machine that hands free memory back to its host, pages free for a
while cost much more to touch again than pages freed a moment before. Run as a script
(not collected by pytest)::

    .venv/bin/python benchmarks/page_cache_writes.py FOLDER [COUNT] [REPEATS] [REST]

e.g. ``/tmp/pages 32 2 10``. ``FOLDER`` must be on the disk measured (not a memory file
system).
"""

from __future__ import annotations

import os
import shutil
import sys
import time

import numpy as np
from numpy._core import multiarray

from metatensor_dask.io import _page_cache
from metatensor_dask.io._file_writes import write_all

FILE_BYTES = 50 * 2**20
PAUSE = 0.2
DROP_BEHIND = 256 * 2**20


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def _write(
    folder: str, count: int, data: np.ndarray, drop_behind: bool, pieces: bool
) -> tuple[float, float]:
    """CPU seconds and wall seconds (pauses left out) of writing ``count`` files."""
    os.makedirs(folder)
    cpu, wall = _cpu(), time.perf_counter()
    for i in range(count):
        path = os.path.join(folder, f"{i}.bin")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            if pieces:
                write_all(descriptor, [data])
            else:
                os.write(descriptor, data.data)
            if drop_behind:
                _page_cache.start_write_back(descriptor, data.nbytes, path)
        finally:
            os.close(descriptor)
        if drop_behind:
            _page_cache.written(path, data.nbytes, DROP_BEHIND)
        time.sleep(PAUSE)
    return _cpu() - cpu, time.perf_counter() - wall - count * PAUSE


def _touch(count: int, huge_pages: bool) -> tuple[float, float]:
    """CPU seconds and wall seconds of filling fresh memory of ``count`` files' size."""
    before = multiarray._set_madvise_hugepage(huge_pages)
    cpu, wall = _cpu(), time.perf_counter()
    memory = np.ones(count * FILE_BYTES // 8)
    del memory
    cpu, wall = _cpu() - cpu, time.perf_counter() - wall
    multiarray._set_madvise_hugepage(before)
    return cpu, wall


def main() -> None:
    folder = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    rest = float(sys.argv[4]) if len(sys.argv) > 4 else 10.0
    data = np.random.default_rng(0).random(FILE_BYTES // 8)
    gib = count * FILE_BYTES / 2**30
    size = FILE_BYTES >> 20
    print(f"{count} files of {size} MiB ({gib:.2f} GiB) in {folder}, {rest:.0f} s rests")
    print(f"{'case':28s} {'CPU s/GiB':>10s} {'wall s/GiB':>11s}")
    for _ in range(repeats):
        for case, drop_behind, pieces, rested in [
            ("plain", False, False, True),
            ("plain, right after freeing", False, False, False),
            ("plain, 128 KiB calls", False, True, True),
            ("drop-behind", True, False, True),
        ]:
            if rested:
                time.sleep(rest)
            files = os.path.join(folder, "files")
            cpu, wall = _write(files, count, data, drop_behind, pieces)
            print(f"{case:28s} {cpu / gib:10.2f} {wall / gib:11.2f}", flush=True)
            shutil.rmtree(files)
        for case, huge_pages, rested in [
            ("memory", True, True),
            ("memory, right after freeing", True, False),
            ("memory, no huge pages", False, True),
        ]:
            if rested:
                time.sleep(rest)
            cpu, wall = _touch(count, huge_pages)
            print(f"{case:28s} {cpu / gib:10.2f} {wall / gib:11.2f}", flush=True)


if __name__ == "__main__":
    main()
