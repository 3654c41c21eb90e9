"""Local files written in bulk (``zarr_store.write_files``): from the calling thread
while its first files cost it little CPU, else (or when the writes wait) from a few
threads, each writing a run of neighbouring keys."""

from __future__ import annotations

import threading
import time

from metatensor_dask.io.zarr_store import _FILE_THREADS, _FIRST_FILES, _SLOW_FILE, write_files


def _items(count: int) -> dict[str, bytes]:
    return {f"{i // 12}/{i % 12}": f"file {i}".encode() * (i % 5 + 1) for i in range(count)}


def _busy(seconds: float) -> None:
    """Work ``seconds`` of this thread's CPU (as a kernel creating a file on a disk)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def _written_by(
    tmp_path, items, wait: float | None, waits: bool = False, busy: bool = False, kept=None
):
    """Write ``items`` under ``tmp_path`` (``waits`` passed on), each file taking at
    least ``wait`` seconds (a slow file system: waiting, or working with ``busy``), or
    kept in memory with ``None`` (a file system taking no time), or in the dictionary
    ``kept`` after ``wait`` (a file system that waits and costs no CPU); the thread that
    wrote each key, and the keys in order."""
    writers: dict[str, int] = {}
    order: list[str] = []
    in_memory = wait is None or kept is not None
    kept = {} if kept is None else kept
    lock = threading.Lock()

    def write(path: str, data: bytes) -> None:
        key = path[len(str(tmp_path)) + 1 :]
        if in_memory:
            kept[key] = data
        else:
            with open(path, "wb") as file:
                file.write(data)
        if wait is None:
            pass
        elif in_memory:
            # one wait per 8 files, 8 times as long: a sleep costs this thread some
            # CPU (10-20 us on a virtual machine), as much as a cheap file
            with lock:
                count = len(order)
            if count % 8 == 0:
                time.sleep(8 * wait)
        else:
            (_busy if busy else time.sleep)(wait)
        with lock:
            writers[key] = threading.get_ident()
            order.append(key)

    write_files(tmp_path, items, write, waits)
    for key, data in items.items():
        assert (kept[key] if in_memory else (tmp_path / key).read_bytes()) == data
    return writers, order


def test_quick_files_are_written_from_the_calling_thread_in_order(tmp_path):
    items = _items(400)
    # a write is timed: a busy machine may stall one past the limit, not three in a row
    for _ in range(3):
        writers, order = _written_by(tmp_path, items, None)
        if set(writers.values()) == {threading.get_ident()}:
            break
    assert set(writers.values()) == {threading.get_ident()}
    assert order == list(items)


def _check_runs(rest: list[str], writers: dict[str, int]) -> None:
    step = -(-len(rest) // _FILE_THREADS)
    runs = [rest[i : i + step] for i in range(0, len(rest), step)]
    assert len(runs) == _FILE_THREADS
    # each run of neighbouring keys (mostly of the same folders) is written by one thread
    for run in runs:
        assert len({writers[key] for key in run}) == 1
    assert threading.get_ident() not in {writers[key] for key in rest}


def test_files_costly_to_write_are_written_from_a_few_threads_by_runs(tmp_path):
    items = _items(2 * _FIRST_FILES + 138)
    writers, order = _written_by(tmp_path, items, wait=5 * _SLOW_FILE, busy=True)
    keys = list(items)
    first, rest = keys[:_FIRST_FILES], keys[_FIRST_FILES:]
    assert order[:_FIRST_FILES] == first
    assert {writers[key] for key in first} == {threading.get_ident()}
    _check_runs(rest, writers)


def test_files_slow_to_write_without_cpu_are_written_from_a_few_threads(tmp_path):
    """A network file system: each file costs little CPU but waits (a round trip)."""
    items = _items(2 * _FIRST_FILES + 138)
    writers, _ = _written_by(tmp_path, items, wait=5 * _SLOW_FILE, kept={})
    rest = list(items)[_FIRST_FILES:]
    assert {writers[key] for key in list(items)[:_FIRST_FILES]} == {threading.get_ident()}
    _check_runs(rest, writers)


def test_writes_that_wait_are_all_made_from_a_few_threads(tmp_path):
    items = _items(2 * _FIRST_FILES + 138)
    writers, _ = _written_by(tmp_path, items, wait=1e-4, waits=True)
    _check_runs(list(items), writers)


def test_few_files_are_written_from_the_calling_thread_even_when_slow(tmp_path):
    items = _items(2 * _FIRST_FILES - 1)
    writers, _ = _written_by(tmp_path, items, wait=5 * _SLOW_FILE, busy=True)
    assert set(writers.values()) == {threading.get_ident()}
