"""Labels shared by threads (the tasks of dask's threaded scheduler) find every entry
while the first look-up is still working out where the entries are."""

from __future__ import annotations

import sys
import threading

import metatensor
import numpy as np

import metatensor_dask as mtd


def _look_up_together(labels: mtd.Labels, rows: np.ndarray, repeats: int) -> list[list]:
    """Each row of ``rows`` looked up ``repeats`` times by a thread of its own, the
    threads starting together on ``labels`` never looked up before."""
    start = threading.Barrier(len(rows))
    found: list[list] = [[] for _ in rows]

    def look_up(i: int) -> None:
        start.wait()
        for _ in range(repeats):
            found[i].append(labels.position(rows[i]))

    threads = [threading.Thread(target=look_up, args=(i,)) for i in range(len(rows))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return found


def test_positions_looked_up_from_threads_at_once_are_all_found() -> None:
    # rows in [0, 200) x [0, 300): 60,000 entries, below the size whose positions are
    # kept in sorted keys instead of a dict of entries
    n = 60_000
    values = np.stack([np.arange(n) // 300, np.arange(n) % 300], axis=1).astype(np.int32)
    theirs = metatensor.Labels(["a", "b"], values)
    asked = np.array([n - 1, n - 2, 0])
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # the threads take turns often, as under load
    try:
        for _ in range(4):
            ours = mtd.Labels(["a", "b"], values)
            found = _look_up_together(ours, values[asked], repeats=50)
            for i, answers in zip(asked, found, strict=True):
                assert answers == [theirs.position(values[i])] * 50
    finally:
        sys.setswitchinterval(interval)
