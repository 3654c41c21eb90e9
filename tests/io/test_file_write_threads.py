"""Local files written in bulk (``zarr_store.write_files``): from the calling thread
when asked for one thread (``to_zarr`` writes its documents, Labels and chunks so),
else from a few threads, each writing a run of neighbouring keys."""

from __future__ import annotations

import threading

import pytest

from metatensor_dask.io.zarr_store import FILE_THREADS, write_files


def _items(count: int) -> dict[str, bytes]:
    return {f"{i // 12}/{i % 12}": f"file {i}".encode() * (i % 5 + 1) for i in range(count)}


def _written_by(tmp_path, items, threads):
    """Write ``items`` under ``tmp_path``; the thread that wrote each key, in order."""
    writers: dict[str, int] = {}
    order: list[str] = []
    lock = threading.Lock()

    def write(path: str, data: bytes) -> None:
        with open(path, "wb") as file:
            file.write(data)
        with lock:
            key = path[len(str(tmp_path)) + 1 :]
            writers[key] = threading.get_ident()
            order.append(key)

    write_files(tmp_path, items, write, threads)
    for key, data in items.items():
        assert (tmp_path / key).read_bytes() == data
    return writers, order


@pytest.mark.parametrize("count", [10, 200])
def test_one_thread_writes_every_file_from_the_calling_thread_in_order(tmp_path, count):
    items = _items(count)
    writers, order = _written_by(tmp_path, items, threads=1)
    assert set(writers.values()) == {threading.get_ident()}
    assert order == list(items)


def test_a_few_threads_write_runs_of_neighbouring_keys(tmp_path):
    items = _items(202)
    writers, _ = _written_by(tmp_path, items, threads=FILE_THREADS)
    assert threading.get_ident() not in writers.values()
    keys = list(items)
    step = -(-len(keys) // FILE_THREADS)
    runs = [keys[i : i + step] for i in range(0, len(keys), step)]
    assert len(runs) == FILE_THREADS
    # each run of neighbouring keys (mostly of the same folders) is written by one thread
    for run in runs:
        assert len({writers[key] for key in run}) == 1


def test_few_files_are_written_from_the_calling_thread(tmp_path):
    writers, _ = _written_by(tmp_path, _items(63), threads=FILE_THREADS)
    assert set(writers.values()) == {threading.get_ident()}
