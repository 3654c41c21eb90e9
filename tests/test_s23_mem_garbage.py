"""The garbage cycles that a batch's computation leaves do not outlive its append in the
workers of ``write_batches`` (they waited there for a rare full pass of the collector)."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import metatensor_dask as mtd

N_BATCHES = 12


class Marker:
    """An object in a reference cycle: only the cyclic garbage collector frees it."""

    def __init__(self) -> None:
        self.cycle = self


def leaves_a_cycle(items):
    """A one-row-per-item map, computed as featomic does: leaving a garbage cycle that
    lived through a collection of the youngest generation during the computation."""
    import metatensor

    held = Marker()
    gc.collect(0)  # `held` is alive: it moves to the middle generation
    del held
    samples = metatensor.Labels(["system"], np.arange(len(items), dtype=np.int32).reshape(-1, 1))
    block = metatensor.TensorBlock(
        np.full((len(items), 2), float(items[0])),
        samples,
        [],
        metatensor.Labels.range("property", 2),
    )
    return metatensor.TensorMap(metatensor.Labels.range("key", 1), [block])


def markers_alive() -> int:
    """Marker objects alive in this process (not collected first)."""
    return sum(type(o).__name__ == "Marker" for o in gc.get_objects())


@pytest.mark.xdist_group("serial")
def test_garbage_cycles_of_the_computations_do_not_outlive_their_append(tmp_path):
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0") as local,
        Client(local) as client,
    ):
        mtd.write_batches(leaves_a_cycle, list(range(N_BATCHES)), tmp_path / "t.zarr")
        alive = client.run(markers_alive)
    # every batch's cycle reached the middle generation; before the appends collected
    # it, the end of their pause moved it to the oldest one, and each worker kept them
    assert sum(alive.values()) == 0, alive
    stored = mtd.open_zarr(tmp_path / "t.zarr").compute()
    values = np.concatenate([np.asarray(b.values) for b in stored.blocks()])
    np.testing.assert_array_equal(values[:, 0], np.arange(N_BATCHES, dtype=float))
