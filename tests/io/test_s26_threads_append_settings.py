"""An append of new keys writes them with its store's codecs, and gives those settings
to its own thread only: another thread of the process writing meanwhile keeps its own,
and no setting is left changed after the append."""

from __future__ import annotations

import json
import sys
import threading

import dask
import metatensor
import numpy as np

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def _core(first: int, count: int) -> metatensor.TensorMap:
    """Blocks of keys ``first`` to ``first + count - 1``, 2 samples of 3 properties."""
    blocks = [
        metatensor.TensorBlock(
            np.arange(6, dtype=np.float64).reshape(2, 3) + key,
            metatensor.Labels(["system"], np.array([[0], [1]], np.int32)),
            [],
            metatensor.Labels.range("p", 3),
        )
        for key in range(first, first + count)
    ]
    keys = np.arange(first, first + count, dtype=np.int32)[:, None]
    return metatensor.TensorMap(metatensor.Labels(["k"], keys), blocks)


#: Appends, and new keys in each (their plan is when an append's settings are given).
_APPENDS, _KEYS = 6, 20


def test_an_append_of_new_keys_leaves_other_threads_settings_alone(tmp_path):
    store = tmp_path / "zstd.zarr"
    with dask.config.set({"metatensor_dask.compressor": "zstd"}):
        mtd.from_metatensor(_core(0, 1)).to_zarr(store)
    before = dask.config.get("metatensor_dask.compressor")
    seen = set()
    done = threading.Event()

    def watch() -> None:
        # what a thread writing meanwhile would write with
        while not done.is_set():
            seen.add(repr(mtd.config.get("compressor")))

    watcher = threading.Thread(target=watch)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # the threads take turns often: the watcher sees more
    watcher.start()
    try:
        for append in range(_APPENDS):
            added = _core(1 + append * _KEYS, _KEYS)
            mtd.from_metatensor(added).to_zarr(store, append_dim="samples")
    finally:
        done.set()
        watcher.join(60)
        sys.setswitchinterval(interval)
    assert seen == {repr(before)}
    assert dask.config.get("metatensor_dask.compressor") == before
    assert_equal_to_metatensor(mtd.open_zarr(store).compute(), _core(0, 1 + _APPENDS * _KEYS))
    codecs = {
        json.dumps(json.loads((store / f"blocks/{i}/values/zarr.json").read_text())["codecs"])
        for i in range(1 + _APPENDS * _KEYS)
    }
    assert len(codecs) == 1 and "zstd" in codecs.pop()
