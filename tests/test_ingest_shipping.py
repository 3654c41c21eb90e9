"""write_batches on a distributed cluster: its function reaches the workers once, and a
function that can not reach them is refused before anything is written."""

from __future__ import annotations

import ctypes
from collections.abc import Iterator

import metatensor
import pytest
from forked_workers import forked_workers
from ingest_support import renumbered, soap

import metatensor_dask as mtd
from metatensor_dask.errors import MetatensorDaskError
from metatensor_dask.testing import assert_equal_to_metatensor

# LocalClusters of worker processes: one such test at a time (2 cores)
pytestmark = pytest.mark.xdist_group("clusters")


@pytest.fixture(scope="module", autouse=True)
def _workers_forked() -> Iterator[None]:
    """The worker processes of this module's cluster forked (see ``forked_workers``):
    each took seconds to start as a new interpreter."""
    with forked_workers():
        yield


#: In each process: how many times a :class:`Counted` function was unpickled.
UNPICKLED: list[int] = []


class Counted:
    """``soap``, counting in each process how many times it arrives there pickled."""

    def __call__(self, items: list[int]) -> metatensor.TensorMap:
        return soap(items)

    def __reduce__(self):
        return (_arrived, ())


def _arrived() -> Counted:
    UNPICKLED.append(1)
    return Counted()


def _arrivals() -> int:
    return len(UNPICKLED)


def test_function_reaches_each_worker_once(tmp_path, two_worker_processes):
    """Sent with each batch, the function (and all it refers to: the list of every
    structure, say) was pickled and unpickled once per batch."""
    from distributed import Client

    with Client(two_worker_processes) as client:
        before = sum(client.run(_arrivals).values())
        mtd.write_batches(Counted(), list(range(8)), tmp_path / "t.zarr", batch_size=1, quiet=True)
        arrivals = sum(client.run(_arrivals).values()) - before
    # once per worker (a worker that never computes a batch may not get it)
    assert 1 <= arrivals <= 2
    batches = [renumbered(soap([item]), item) for item in range(8)]
    expected = metatensor.join(batches, axis="samples", different_keys="union")
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "t.zarr").compute(), expected)


def test_function_that_can_not_be_pickled_is_refused_before_writing(tmp_path, two_worker_processes):
    """A featomic calculator made outside the function holds ctypes pointers, which do
    not pickle: distributed's own error came from the first batch sent, after the
    store was created."""
    from distributed import Client

    handle = ctypes.pointer(ctypes.c_int(3))

    def function(items):
        assert handle.contents.value == 3
        return soap(items)

    path = tmp_path / "t.zarr"
    with Client(two_worker_processes), pytest.raises(MetatensorDaskError) as raised:
        mtd.write_batches(function, list(range(4)), path, batch_size=2, quiet=True)
    message = str(raised.value)
    assert "can not be sent to the workers" in message
    assert "function" in message and "ctypes" in message
    assert "functools.cache" in message
    assert not path.exists()
