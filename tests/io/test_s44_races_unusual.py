"""Stores changed by another process under a map opened lazily, in ways the other race
tests do not try: a computation of the map gives the numbers it opened, or an error
saying that the store changed, never other numbers under its labels.

* A store rewritten whole with the tensor it held before its last append, then
  appended other rows to: appends keep the store id, and a whole write of the same
  tensor gives the same id again, so the id alone took the new rows for those opened.
* Appends of rows and of new keys under a map opened before them: the map, its
  ``sum_over_samples`` and its ``.mts`` save give what it opened.
* An append racing a ``mode="a"`` write of new keys: one waits for the other's lock
  or is refused, and the store holds what each committed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import metatensor
import metatensor.operations
import numpy as np
import pytest
from forked_process import Forked
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd

#: Seconds a forked writer may take (a few appends of small tensors) before the test
#: fails instead of hanging.
WRITER_TIMEOUT = 120
#: The words of the error of a map whose store was overwritten since it was opened.
OVERWRITTEN = "was overwritten .* since this tensor was opened"
APPEND = {"append_dim": "samples", "renumber": {"system": "next"}}


def _plain(seed: int) -> metatensor.TensorMap:
    """A map without gradients: every append of one gives the same sample labels,
    whatever its values."""
    tensor = make_metatensor(seed, nested=False)
    blocks = [
        metatensor.TensorBlock(block.values, block.samples, block.components, block.properties)
        for block in tensor.blocks()
    ]
    return metatensor.TensorMap(tensor.keys, blocks)


def _tensor(seed: int, gradients: bool) -> metatensor.TensorMap:
    return make_metatensor(seed, nested=False) if gradients else _plain(seed)


def _new_keys(tensor: metatensor.TensorMap) -> metatensor.TensorMap:
    """``tensor`` under keys none of the maps of :func:`_tensor` have."""
    keys = metatensor.Labels(tensor.keys.names, tensor.keys.values + 100)
    return metatensor.TensorMap(keys, [block.copy() for block in tensor.blocks()])


def _computed(tensor: mtd.TensorMap) -> metatensor.TensorMap:
    return mtd.to_metatensor(tensor.compute())


def _in_process(target, *arguments: object) -> None:
    """``target(*arguments)`` in a process of its own (forked), which must end well."""
    with Forked(target, *arguments) as process:
        assert process.wait(WRITER_TIMEOUT) == 0, process.stdout.read()


def _rewrite_then_append(path: str, seed: int, chunks: int | str, gradients: bool) -> None:
    """Write ``_tensor(seed)`` over ``path``, then append ``_tensor(seed + 2)``."""
    mtd.to_zarr(mtd.from_metatensor(_tensor(seed, gradients)), path, mode="w", chunks=chunks)
    other = mtd.from_metatensor(_tensor(seed + 2, gradients))
    mtd.to_zarr(other, path, chunks=chunks, **APPEND)


@pytest.mark.parametrize(
    ("chunks", "gradients"),
    [(2, False), ("1MiB", True)],
    ids=["values-many-chunks", "gradients-one-chunk"],
)
def test_a_store_rewritten_as_before_its_append_then_appended_other_rows(
    tmp_path, chunks, gradients
):
    """Rows appended in chunks of their own (values only), and into the partial last
    chunk of each array (gradients too): once each."""
    path = str(tmp_path / "store.zarr")
    first = mtd.from_metatensor(_tensor(1, gradients))
    mtd.to_zarr(first, path, chunks=chunks)
    mtd.to_zarr(mtd.from_metatensor(_tensor(2, gradients)), path, chunks=chunks, **APPEND)
    opened = mtd.open_zarr(path)
    # another process writes the first tensor again (the same store id), then appends
    # rows of the same labels but other values
    _in_process(_rewrite_then_append, path, 1, chunks, gradients)
    with pytest.raises(mtd.MetatensorDaskError, match=OVERWRITTEN):
        _computed(opened)
    # the store as it is now reads whole, as the same writes made here
    again = str(tmp_path / "again.zarr")
    _rewrite_then_append(again, 1, chunks, gradients)
    assert metatensor.equal(_computed(mtd.open_zarr(path)), _computed(mtd.open_zarr(again)))


def test_a_store_rewritten_as_before_its_append_under_a_map_opened_before_it(tmp_path):
    """The map opened before the first append reads the rows it opened: the rewrite
    gave them back, the second append only added rows after them."""
    path = str(tmp_path / "store.zarr")
    tensor = _plain(1)
    mtd.to_zarr(mtd.from_metatensor(tensor), path, chunks=2)
    opened = mtd.open_zarr(path)
    mtd.to_zarr(mtd.from_metatensor(_plain(2)), path, chunks=2, **APPEND)
    _in_process(_rewrite_then_append, path, 1, 2, False)
    assert metatensor.equal(_computed(opened), tensor)


def _append_rows_and_keys(path: str) -> None:
    tensor = mtd.from_metatensor(_tensor(2, gradients=True))
    mtd.to_zarr(tensor, path, chunks=2, **APPEND)
    keyed = mtd.from_metatensor(_new_keys(_tensor(3, gradients=True)))
    mtd.to_zarr(keyed, path, mode="a", chunks=2)


def test_appends_of_rows_and_keys_under_a_lazy_map_and_its_operations(tmp_path):
    path = str(tmp_path / "store.zarr")
    tensor = make_metatensor(1, nested=False)
    mtd.to_zarr(mtd.from_metatensor(tensor), path, chunks=2)
    opened = mtd.open_zarr(path)
    summed = mtd.sum_over_samples(opened, "atom")
    sliced = mtd.slice(opened, "samples", mtd.Labels(["system"], np.array([[1], [2]])))
    _in_process(_append_rows_and_keys, path)
    assert metatensor.equal(_computed(opened), tensor)
    expected = metatensor.operations.sum_over_samples(tensor, "atom")
    assert metatensor.allclose(_computed(summed), expected, rtol=1e-12, atol=1e-12)
    selection = metatensor.Labels(["system"], np.array([[1], [2]], dtype=np.int32))
    expected = metatensor.operations.slice(tensor, "samples", selection)
    assert metatensor.equal(_computed(sliced), expected)
    saved = tmp_path / "saved.mts"
    mtd.save(str(saved), opened)
    assert metatensor.equal(metatensor.load(str(saved)), tensor)


def _append_waiting(path: str, go: str) -> None:
    _wait_for(go)
    mtd.to_zarr(mtd.from_metatensor(_plain(2)), path, chunks=2, **APPEND)


def _new_keys_waiting(path: str, go: str) -> None:
    _wait_for(go)
    mtd.to_zarr(mtd.from_metatensor(_new_keys(_plain(3))), path, mode="a", chunks=2)


def _wait_for(go: str) -> None:
    """Say ``ready``, then wait for the file ``go`` (:data:`WRITER_TIMEOUT` seconds at
    most)."""
    print("ready", flush=True)
    deadline = time.monotonic() + WRITER_TIMEOUT
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.001)


def test_an_append_racing_a_write_of_new_keys(tmp_path):
    path = str(tmp_path / "store.zarr")
    mtd.to_zarr(mtd.from_metatensor(_plain(1)), path, chunks=2)
    go = tmp_path / "go"
    writers = [Forked(_append_waiting, path, str(go)), Forked(_new_keys_waiting, path, str(go))]
    codes, outputs = [], []
    with writers[0], writers[1]:
        try:
            for writer in writers:
                assert writer.stdout.readline().strip() == "ready"
            go.touch()
            for writer in writers:
                codes.append(writer.wait(WRITER_TIMEOUT))
                outputs.append(writer.stdout.read())
        finally:
            for writer in writers:
                writer.kill()
    # a writer that found the other's lock is refused as locked, and nothing else
    for code, output in zip(codes, outputs, strict=True):
        assert code == 0 or "StoreLockedError" in output, output
    assert any(code == 0 for code in codes), outputs
    appended, keyed = (code == 0 for code in codes)
    stored = _computed(mtd.open_zarr(path))
    orders = {(True, True): ["rows, keys", "keys, rows"], (True, False): ["rows"]}
    orders[(False, True)] = ["keys"]
    assert any(
        metatensor.equal(stored, _sequential(tmp_path / order, order))
        for order in orders[(appended, keyed)]
    ), outputs
    assert mtd.verify(path).problems == []


def _sequential(folder: Path, order: str) -> metatensor.TensorMap:
    """The map a store holds after the writes of :func:`_append_waiting` and
    :func:`_new_keys_waiting` named by ``order``, made one after the other."""
    path = str(folder)
    mtd.to_zarr(mtd.from_metatensor(_plain(1)), path, chunks=2)
    for write in order.split(", "):
        if write == "rows":
            mtd.to_zarr(mtd.from_metatensor(_plain(2)), path, chunks=2, **APPEND)
        else:
            mtd.to_zarr(mtd.from_metatensor(_new_keys(_plain(3))), path, mode="a", chunks=2)
    return _computed(mtd.open_zarr(path))


def _rewrites_and_appends(path: str, go: str, rounds: int) -> None:
    """``rounds`` times: write ``_plain(1)`` over ``path``, then append ``_plain(3)``
    (other rows than those opened) or ``_plain(2)`` (the rows opened), in turn."""
    _wait_for(go)
    for round in range(rounds):
        _rewrite_then_append(path, 1, 2, False) if round % 2 == 0 else _rewrite_as_opened(path)
    print("done", flush=True)


def _rewrite_as_opened(path: str) -> None:
    mtd.to_zarr(mtd.from_metatensor(_plain(1)), path, mode="w", chunks=2)
    mtd.to_zarr(mtd.from_metatensor(_plain(2)), path, chunks=2, **APPEND)


def test_a_map_computed_while_its_store_is_rewritten_and_appended_again(tmp_path):
    """Every computation of a map opened after an append, made while another process
    writes the store whole again and appends other rows or the same ones, gives the
    numbers opened or says that the store was overwritten."""
    path = str(tmp_path / "store.zarr")
    _rewrite_as_opened(path)
    opened = mtd.open_zarr(path)
    expected = _computed(mtd.open_zarr(path))
    go = tmp_path / "go"
    writer = Forked(_rewrites_and_appends, path, str(go), 2)
    with writer:
        try:
            assert writer.stdout.readline().strip() == "ready"
            go.touch()
            _compute_while_running(opened, expected, writer)
            assert writer.wait(WRITER_TIMEOUT) == 0, writer.stdout.read()
        finally:
            writer.kill()


def _compute_while_running(
    opened: mtd.TensorMap, expected: metatensor.TensorMap, writer: Forked
) -> None:
    """Compute ``opened`` again and again while ``writer`` runs (once at least, for
    :data:`WRITER_TIMEOUT` seconds at most): each time, ``expected`` or the error of a
    store overwritten since it was opened."""
    deadline = time.monotonic() + WRITER_TIMEOUT
    computed = 0
    while (writer.poll() is None or not computed) and time.monotonic() < deadline:
        try:
            assert metatensor.equal(_computed(opened), expected)
        except mtd.MetatensorDaskError as error:
            assert "since this tensor was opened" in str(error), error
        computed += 1
