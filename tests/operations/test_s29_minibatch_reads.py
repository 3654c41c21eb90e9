"""A minibatch (a few samples of a large stored map) reads the chunks holding its rows
and builds tasks for those chunks only, in any order of the selection."""

from __future__ import annotations

import metatensor
import numpy as np
import pytest
from opened_files import VALUES_CHUNK, opened_files
from oracle2 import assert_co_partitioned, big_block

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

ROWS_PER_CHUNK = 4


def _systems_map(n_systems: int) -> metatensor.TensorMap:
    """Two blocks of 1 to 3 atoms per system (block 1 lacks every third system), with
    ``positions`` gradients (0 to 2 rows per sample) and ``strain`` gradients."""
    rng = np.random.default_rng(7)
    blocks = []
    for key in range(2):
        systems = [s for s in range(n_systems) if key == 0 or s % 3]
        samples = np.array([(s, a) for s in systems for a in range(1 + (s + key) % 3)], np.int32)
        block = metatensor.TensorBlock(
            rng.normal(size=(len(samples), 2)),
            metatensor.Labels(["system", "atom"], samples),
            [],
            metatensor.Labels.range("n", 2),
        )
        rows = np.array(
            [(i, s, b) for i, (s, _) in enumerate(samples) for b in range(i % 3)], np.int32
        )
        for parameter, names, grads in (
            ("positions", ["sample", "system", "atom"], rows),
            ("strain", ["sample"], np.arange(len(samples), dtype=np.int32)[:, None]),
        ):
            block.add_gradient(
                parameter,
                metatensor.TensorBlock(
                    rng.normal(size=(len(grads), 3, 2)),
                    metatensor.Labels(names, grads),
                    [metatensor.Labels.range("xyz", 3)],
                    block.properties,
                ),
            )
        blocks.append(block)
    keys = metatensor.Labels(["center_type"], np.array([[1], [6]], np.int32))
    return metatensor.TensorMap(keys, blocks)


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> tuple[str, metatensor.TensorMap]:
    theirs = _systems_map(40)
    store = str(tmp_path_factory.mktemp("minibatch") / "systems.zarr")
    mtd.to_zarr(mtd.from_metatensor(theirs), store, chunks=ROWS_PER_CHUNK)
    return store, theirs


def _chunks_read(selection: np.ndarray, names: list[str], store: str) -> tuple:
    """The sliced map of ``store`` computed, and the values chunk files it opened, the
    store's sample Labels having been read by a first minibatch, once for all."""
    ours = mtd.open_zarr(store)
    first = mtd.Labels(["system"], np.array([[1], [20]]))
    mtd.to_metatensor(mtd.slice(ours, "samples", first))
    with opened_files() as opened:
        result = mtd.to_metatensor(mtd.slice(ours, "samples", mtd.Labels(names, selection)))
    assert not [path for path in opened if "/samples/" in path], "sample Labels read again"
    return result, [path for path in opened if VALUES_CHUNK.search(path)]


def _expected_chunks(theirs: metatensor.TensorMap, names: list[str], selection) -> set[str]:
    """The chunk files holding the selected rows of every array of ``theirs`` (each
    array stored in chunks of ``ROWS_PER_CHUNK`` rows)."""
    expected = set()
    for i, block in enumerate(theirs.blocks()):
        rows = block.samples.select(metatensor.Labels(names, selection)).astype(np.int64)
        tail = ".0" * (block.values.ndim - 1)
        expected |= {f"blocks/{i}/values/c.{row // ROWS_PER_CHUNK}{tail}" for row in rows}
        for parameter, gradient in block.gradients():
            kept = np.flatnonzero(np.isin(gradient.samples.column("sample"), rows))
            tail = ".0" * (gradient.values.ndim - 1)
            where = f"blocks/{i}/gradients/{parameter}/values"
            expected |= {f"{where}/c.{row // ROWS_PER_CHUNK}{tail}" for row in kept}
    return expected


@pytest.mark.parametrize(
    ("names", "selection"),
    [
        (["system", "atom"], [[33, 0], [2, 1], [17, 0]]),
        (["system"], [[33], [2], [17]]),
        (["atom", "system"], [[1, 5], [0, 38]]),
    ],
)
def test_minibatch_reads_the_chunks_of_its_rows(stored, names, selection):
    """A few samples, in decreasing order (kept so when the selection has every sample
    dimension, as in metatensor) or not, read exactly the chunk files holding their
    values and gradient rows, out of about 20 per array."""
    store, theirs = stored
    selection = np.array(selection, np.int32)
    result, files = _chunks_read(selection, names, store)
    expected = metatensor.slice(theirs, "samples", metatensor.Labels(names, selection))
    assert_equal_to_metatensor(mtd.from_metatensor(result), expected)
    read = {path.split(".zarr/")[1] for path in files}
    assert read == _expected_chunks(theirs, names, selection)


def test_minibatch_tasks_do_not_grow_with_the_chunks():
    """The tasks that a slice of two samples adds are the same for a block of 10 and
    of 100 chunks (the chunks holding no selected row get none), and the result stays
    co-partitioned."""
    added = {}
    for n_chunks in (10, 100):
        tensor = big_block(n_chunks)
        for positions in ([3, 4], [4, 3]):
            result = mtd.slice(tensor, "samples", positions)
            assert_co_partitioned(result)
            before = len(dict(tensor.__dask_graph__()))
            added[n_chunks, tuple(positions)] = len(dict(result.__dask_graph__())) - before
    assert added[10, (3, 4)] == added[100, (3, 4)], added
    assert added[10, (4, 3)] == added[100, (4, 3)], added
