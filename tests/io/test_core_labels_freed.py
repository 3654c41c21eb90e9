"""The metatensor-core Labels that metatensor-dask reads or makes are freed once used.

metatensor-core 0.2's ``Labels`` never free their memory themselves (their ``__del__``
tests for an attribute they do not have): every ``block.samples`` read, every Labels
made for ``to_metatensor``, kept its labels in memory until the process ended. These
tests repeat each conversion on a map of large Labels and check that the process's
anonymous memory does not grow with the repeats (each repeat would leave ~20 MiB
behind otherwise), and that everything read or made stays equal to metatensor's.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable

import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.io import _core_labels
from metatensor_dask.io.ingest_core import core_view
from metatensor_dask.testing import assert_equal_to_metatensor

metatensor = pytest.importorskip("metatensor")

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads the memory of the process in /proc"
)

ROWS = 200_000


def _large_labels_map() -> metatensor.TensorMap:
    """One block of ``ROWS`` samples and a gradient of three rows per sample: 8 MiB of
    Labels values for 1.6 MiB of values."""
    index = np.arange(ROWS, dtype=np.int32)
    samples = metatensor.Labels(["system", "atom"], np.stack([index // 10, index % 10], axis=1))
    rows = np.repeat(index, 3)
    gradient_samples = metatensor.Labels(
        ["sample", "system", "atom"],
        np.stack([rows, rows // 10, np.tile(np.arange(3, dtype=np.int32), ROWS)], axis=1),
    )
    properties = metatensor.Labels.range("p", 1)
    rng = np.random.default_rng(0)
    block = metatensor.TensorBlock(rng.random((ROWS, 1)), samples, [], properties)
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.random((3 * ROWS, 3, 1)),
            gradient_samples,
            [metatensor.Labels.range("xyz", 3)],
            properties,
        ),
    )
    return metatensor.TensorMap(metatensor.Labels.range("key", 1), [block])


def _anonymous_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no RssAnon in /proc/self/status")


def _growth(step: Callable[[], object], repeats: int = 8) -> float:
    """MiB of anonymous memory the process gained over ``repeats`` calls of ``step``,
    after two calls (the allocator's own pools filled)."""
    for _ in range(2):
        step()
    gc.collect()
    before = _anonymous_mib()
    for _ in range(repeats):
        step()
    gc.collect()
    return _anonymous_mib() - before


@pytest.fixture(scope="module")
def tensor() -> metatensor.TensorMap:
    return _large_labels_map()


def test_reading_a_batch_frees_its_labels(tensor):
    def step() -> None:
        view = core_view(tensor, ("system", 7))
        assert len(view.blocks()[0].gradient("positions").samples) == 3 * ROWS

    assert _growth(step) < 16
    view = core_view(tensor, ("system", 7))
    block = tensor.block(0)
    expected = block.samples.values.copy()
    expected[:, 0] += 7
    np.testing.assert_array_equal(view.blocks()[0].samples.values, expected)
    expected = block.gradient("positions").samples.values.copy()
    expected[:, 1] += 7
    np.testing.assert_array_equal(view.blocks()[0].gradient("positions").samples.values, expected)


def test_converting_from_and_to_metatensor_frees_their_labels(tensor):
    assert _growth(lambda: mtd.from_metatensor(tensor)) < 16
    ours = mtd.from_metatensor(tensor)
    assert _growth(lambda: mtd.to_metatensor(ours)) < 16

    back = mtd.to_metatensor(mtd.from_metatensor(tensor))
    gc.collect()
    # what metatensor holds was not freed with the objects read or made
    assert_equal_to_metatensor(mtd.from_metatensor(back), tensor)
    assert metatensor.equal(back, tensor)


def test_labels_given_by_a_user_stay_usable(tensor):
    labels = tensor.block(0).samples
    ours = mtd.from_metatensor(labels)
    np.testing.assert_array_equal(ours.values, labels.values)
    made = mtd.to_metatensor(ours)
    assert made == labels
    assert made.names == ["system", "atom"]


def test_a_freed_handle_is_not_freed_twice():
    labels = metatensor.Labels.range("p", 4)
    _core_labels.free(labels)
    _core_labels.free(labels)
    with pytest.raises(RuntimeError, match="released"):
        labels.as_mts_labels_t()
