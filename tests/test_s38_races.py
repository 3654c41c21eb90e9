"""Races between threads, checked by the precondition each fix establishes (the races
themselves show only now and then: a thread switched out at the wrong bytecode).

* A ``distributed`` worker unpickles the items of a batch (metatensor-core maps among
  them) in its event loop, which loaded metatensor-core's library without the lock of
  the threads computing batches: metatensor publishes its library before declaring its
  functions' signatures, and a thread using it meanwhile crashed the process. Every
  worker now loads the library as it joins, before anything reaches it.
* The token of lazy Labels without a digest changed when they were loaded (two threads
  tokenizing while a third loaded them got two tokens), and one read just after the
  load tokenized ``None``, the same for all such Labels of the same names and length.
* A new buffer of zero padding was visible to other threads before it was known as
  padding: their paddings were written as zero bytes rather than holes.
* Reading a setting iterated dask's ``metatensor_dask`` settings while another thread
  added one (``RuntimeError: dictionary changed size during iteration``).
"""

from __future__ import annotations

import contextlib
import functools
import uuid
import warnings

import dask
import numpy as np
import pytest
from dask.base import tokenize

import metatensor_dask as mtd
from metatensor_dask import config
from metatensor_dask.io import zarr_rows


def _probe(item: int) -> Probe:
    from metatensor._c_lib import _get_library

    return Probe(item, _get_library._cached_dll is not None)


class Probe:
    """An item recording whether metatensor-core's library was loaded in the process
    that unpickled it, when it did."""

    def __init__(self, item: int, loaded: bool = False):
        self.item = item
        self.loaded = loaded

    def __reduce__(self) -> tuple:
        return _probe, (self.item,)


def _probed(items: list[Probe]) -> mtd.TensorMap:
    samples = mtd.Labels(["system"], np.array([[p.item] for p in items], np.int32))
    values = np.array([[float(p.loaded)] for p in items])
    block = mtd.TensorBlock(values, samples, [], mtd.Labels.range("p", 1))
    return mtd.TensorMap(mtd.Labels.range("k", 1), [block])


@pytest.mark.xdist_group("serial")
def test_a_worker_loads_metatensor_core_before_it_unpickles_a_batch(tmp_path):
    """A batch's items are unpickled by a worker (a fresh process) after
    metatensor-core's library is loaded there (before the fix, the items of the
    batches sent before the first one ran were unpickled before it)."""
    pytest.importorskip("metatensor")
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=True, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster),
    ):
        items = [Probe(i) for i in range(4)]
        mtd.write_batches(_probed, items, tmp_path / "t.zarr", batch_size=1, quiet=True)
    loaded = mtd.open_zarr(tmp_path / "t.zarr").block(0).values.compute().ravel()
    assert loaded.tolist() == [1.0] * 4


def _loader(first: int):
    def load() -> np.ndarray:
        return np.arange(first, first + 2, dtype=np.int32)[:, None]

    return load


def _block_token(samples: mtd.Labels) -> str:
    """The token of a new block holding ``samples`` (a block keeps its first token)."""
    values = np.zeros((2, 1))
    return tokenize(mtd.TensorBlock(values, samples, [], mtd.Labels.range("p", 1)))


def test_lazy_labels_without_digest_keep_their_token_once_loaded():
    samples = mtd.Labels.lazy(["s"], 2, _loader(0))
    before = _block_token(samples)
    assert not samples.is_loaded
    samples.digest()  # loads them, and records their digest
    assert samples.is_loaded
    assert _block_token(samples) == before
    # such Labels of other entries (the same names and length) have another token
    other = mtd.Labels.lazy(["s"], 2, _loader(5))
    other.digest()
    assert _block_token(other) != before


def test_lazy_labels_loaded_from_a_file_written_again_have_their_own_token(tmp_path):
    """Two loaders of equal tokens (one file, read before and after it was written
    again) stood for both Labels, loaded and known to differ: their blocks had one
    token (dask merged the graphs of different data)."""
    path = tmp_path / "samples.npy"
    loaded = []
    for first in (0, 5):
        np.save(path, np.arange(first, first + 2, dtype=np.int32)[:, None])
        samples = mtd.Labels.lazy(["s"], 2, functools.partial(np.load, path))
        samples.digest()  # loaded before any token is made
        loaded.append(samples)
    assert tokenize(functools.partial(np.load, path)) == tokenize(functools.partial(np.load, path))
    assert loaded[0] != loaded[1]
    assert _block_token(loaded[0]) != _block_token(loaded[1])


def test_a_new_buffer_of_zeros_is_known_as_padding_before_it_is_visible(monkeypatch):
    seen = []

    class Watched(list):
        def append(self, buffer):
            # what another thread taking padding from the buffer now would be told
            seen.append(zarr_rows._is_padding(buffer[:1]))
            super().append(buffer)

    monkeypatch.setattr(zarr_rows, "_ZEROS", Watched(zarr_rows._ZEROS))
    monkeypatch.setattr(zarr_rows, "_ZERO_IDS", set(zarr_rows._ZERO_IDS))
    padding = zarr_rows._zeros(zarr_rows._ZEROS[-1].size + 1)
    assert seen == [True]
    assert zarr_rows._is_padding(padding)


def test_settings_read_while_another_thread_adds_one():
    """A setting added while the unknown ones are looked for (here: while the first is
    warned about, as another thread would) is no error."""
    unknown, added = (f"s38-unknown-{uuid.uuid4().hex}" for _ in range(2))
    warned = []
    with contextlib.ExitStack() as stack:

        def add_one(message, *args, **kwargs):
            warned.append(str(message))
            stack.enter_context(dask.config.set({f"metatensor_dask.{added}": 1}))

        stack.enter_context(dask.config.set({f"metatensor_dask.{unknown}": 1}))
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("always")
        warnings.showwarning = add_one
        assert config.get("progress") in (True, False)
    assert unknown in warned[0]
