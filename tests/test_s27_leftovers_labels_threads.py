"""Lazy sample Labels of a stored tensor, loaded by many threads at once (the tasks of
dask's threaded scheduler): every thread gets the whole entries, none an error, and the
values derived from them are one object for every thread."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd

THREADS = 12


@contextmanager
def _frequent_switches() -> Iterator[None]:
    """The threads take turns every microsecond, as under heavy load."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


def _together(action: Callable[[int], Any]) -> tuple[list[Any], list[BaseException]]:
    """``action(i)`` in ``THREADS`` threads released at once by a barrier: the results
    and the errors raised."""
    start = threading.Barrier(THREADS)
    results: list[Any] = [None] * THREADS
    errors: list[BaseException] = []

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = action(i)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results, errors


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, metatensor.TensorMap]:
    rng = np.random.default_rng(7)
    samples = np.stack([np.repeat(np.arange(40), 5), np.tile(np.arange(5), 40)], axis=1)
    blocks = []
    for _ in range(3):
        values = rng.normal(size=(len(samples), 3))
        block = metatensor.TensorBlock(
            values,
            metatensor.Labels(["system", "atom"], samples.astype(np.int32)),
            [],
            metatensor.Labels.range("p", 3),
        )
        gradient_samples = np.array([[i, 0] for i in range(0, len(samples), 2)], np.int32)
        block.add_gradient(
            "positions",
            metatensor.TensorBlock(
                rng.normal(size=(len(gradient_samples), 3, 3)),
                metatensor.Labels(["sample", "atom"], gradient_samples),
                [metatensor.Labels.range("xyz", 3)],
                block.properties,
            ),
        )
        blocks.append(block)
    tensor = metatensor.TensorMap(metatensor.Labels.range("k", 3), blocks)
    path = str(tmp_path_factory.mktemp("threads") / "t.zarr")
    mtd.to_zarr(mtd.from_metatensor(tensor), path)
    return path, tensor


def test_lazy_samples_loaded_by_threads_at_once_are_whole_for_each(stored) -> None:
    path, expected = stored
    with _frequent_switches():
        for _ in range(30):
            opened = mtd.open_zarr(path)
            blocks = [opened.block(i) for i in range(len(opened))]
            lazy = [block.samples for block in blocks] + [
                block.gradient("positions").samples for block in blocks
            ]
            assert not any(labels.is_loaded for labels in lazy)
            results, errors = _together(lambda i, lazy=lazy: [labels.values for labels in lazy])
            assert errors == []
            wanted = [b.samples.values for b in expected] + [
                b.gradient("positions").samples.values for b in expected
            ]
            for loaded in results:
                for got, want in zip(loaded, wanted, strict=True):
                    np.testing.assert_array_equal(got, want)


def test_values_derived_by_threads_at_once_are_one_object(stored) -> None:
    path, _ = stored

    def make() -> np.ndarray:
        # as a row pointer is made: numpy calls, where threads take turns
        return np.cumsum(np.bincount(np.arange(2000) % 7))

    with _frequent_switches():
        for round_ in range(40):
            samples = mtd.open_zarr(path).block(0).samples
            results, errors = _together(
                lambda i, samples=samples, key=("test", round_): samples._derived(key, make)
            )
            assert errors == []
            assert all(result is results[0] for result in results)
            assert samples._derived(("test", round_), make) is results[0]
