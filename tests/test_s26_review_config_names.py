"""A setting read with ``_`` between its words (as dask reads it) is the same setting as
with ``-``: checked the same way, and given by :func:`config.overridden` the same way."""

from __future__ import annotations

import threading

import dask
import pytest

import metatensor_dask as mtd


def test_a_wrong_value_is_refused_whatever_the_spelling_of_its_name() -> None:
    with dask.config.set({"metatensor_dask.window-tasks": -3}):
        for name in ("window-tasks", "window_tasks"):
            with pytest.raises(mtd.MetatensorDaskError, match="window-tasks=-3"):
                mtd.config.get(name)


@pytest.mark.parametrize("given", ["chunk-size", "chunk_size"])
def test_an_overridden_setting_is_read_under_either_spelling(given: str) -> None:
    seen_elsewhere = []
    with dask.config.set({"metatensor_dask.chunk-size": "2MiB"}):
        with mtd.config.overridden({given: "1KiB"}):
            read = [mtd.config.get(name) for name in ("chunk-size", "chunk_size")]
            sizes = mtd.config.chunk_size()
            other = threading.Thread(target=lambda: seen_elsewhere.append(mtd.config.chunk_size()))
            other.start()
            other.join(60)
        after = mtd.config.get("chunk_size")
    assert read == ["1KiB", "1KiB"] and sizes == 1024
    assert seen_elsewhere == [2 * 2**20]
    assert after == "2MiB"
