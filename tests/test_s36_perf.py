"""Operations on a store grown by many small appends: its blocks keep a chunk per append,
and rows summed across all of them made a task per pair of chunks (a partial sum per
pair for reductions), or outputs cut at the appends' few rows, a tiny block spread over
them a task per row (``keys_to_properties``, ``join`` along properties). Checked on
task counts, never on time, and against metatensor on the data read from the store.
(``sort`` and ``keys_to_samples`` of such blocks still gather rows through dask's fancy
indexing: their small chunks are not merged, see ``tests/test_s36_review.py``.)"""

import pickle

import dask.array as da
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.operations._manipulation_utils import take_rows
from metatensor_dask.testing import assert_equal_to_metatensor

APPENDS = 16
SYSTEMS = 12  # rows of the large block per append: more than one task reads at once


def _labels(names, rows):
    return metatensor.Labels(names, np.asarray(rows, dtype=np.int32).reshape(-1, len(names)))


def _block(rng, samples, properties):
    """A block of ``samples`` (system, atom) with a positions gradient (two rows per
    sample, grouped by sample) and a gradient without components."""
    n = len(samples)
    block = metatensor.TensorBlock(
        rng.standard_normal((n, 3, len(properties))),
        _labels(["system", "atom"], samples),
        [_labels(["c"], np.arange(3))],
        _labels(["n"], properties),
    )
    rows = np.repeat(np.arange(n), 2)
    positions = np.stack([rows, np.asarray(samples)[rows, 0], np.tile([0, 1], n)], 1)
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.standard_normal((2 * n, 3, 3, len(properties))),
            _labels(["sample", "system", "atom"], positions),
            [_labels(["xyz"], np.arange(3)), _labels(["c"], np.arange(3))],
            _labels(["n"], properties),
        ),
    )
    block.add_gradient(
        "g",
        metatensor.TensorBlock(
            rng.standard_normal((n, 3, len(properties))),
            _labels(["sample"], np.arange(n)),
            [_labels(["c"], np.arange(3))],
            _labels(["n"], properties),
        ),
    )
    return block


def _part(rng, atom):
    """One append: atom ``atom`` of systems drawn among ``4 * SYSTEMS``, in shuffled
    order, in the large block (0, 0); a tiny block of the same ``k0`` (0, 1) and one of
    another (1, 0)."""
    large = [[s, atom] for s in rng.choice(4 * SYSTEMS, SYSTEMS, replace=False)]
    blocks = [
        _block(rng, large, [0, 1]),
        _block(rng, [[atom % SYSTEMS, atom]], [0, 1]),
        _block(rng, [[SYSTEMS - 1, atom], [0, atom]], [0, 3]),
    ]
    return metatensor.TensorMap(_labels(["k0", "k1"], [[0, 0], [0, 1], [1, 0]]), blocks)


@pytest.fixture(scope="module")
def appended(tmp_path_factory):
    """A store grown by appends, a chunk per append in every array, and its data as
    metatensor reads it."""
    store = tmp_path_factory.mktemp("s36") / "appended.zarr"
    rng = np.random.default_rng(36)
    for atom in range(APPENDS):
        part = mtd.from_metatensor(_part(rng, atom))
        part.to_zarr(store, append_dim="samples")
    tensor = mtd.open_zarr(store)
    assert all(len(block.values.chunks[0]) == APPENDS for block in tensor.blocks())
    return store, mtd.to_metatensor(tensor)


def _tasks(tensor):
    return len(dict(tensor.__dask_graph__()))


def _added_tasks(result, tensor):
    """The tasks of ``result`` beyond those reading ``tensor``."""
    return _tasks(result) - _tasks(tensor)


def _stored_chunks(tensor):
    """The chunks of every array of ``tensor``: what reading it costs in tasks."""
    return sum(
        block.values.npartitions + sum(g.values.npartitions for _, g in block.gradients())
        for block in tensor.blocks()
    )


def test_a_gather_holds_a_byte_and_an_int32_per_row_in_the_graph():
    # the source chunk (of at most 8) and the row within it of each row gathered:
    # two int64 made the graph of keys_to_properties of an appended store of 300
    # blocks 2.5 MB, now 1.6 MB
    data = np.arange(6000.0).reshape(2000, 3)
    order = np.random.default_rng(0).permutation(len(data))
    result = take_rows(da.from_array(data, chunks=(250, 3)), order)
    gathers = {k: v for k, v in dict(result.__dask_graph__()).items() if k[0] == result.name}
    assert len(gathers) == 8  # of 250 rows, each from the 8 input chunks
    size = len(pickle.dumps(gathers))
    assert size < 8 * len(order), size  # before: 34,226 bytes, now 12,238
    np.testing.assert_array_equal(result.compute(), data[order])


def test_keys_to_properties_cuts_rows_at_the_configured_size(appended):
    store, theirs = appended
    tensor = mtd.open_zarr(store)
    # before: the output cut at the appends' rows, the tiny block spread over the large
    # one a task per row (1,974 tasks, now 27)
    result = tensor.keys_to_properties("k1")
    assert _added_tasks(result, tensor) < 2 * _stored_chunks(tensor)
    assert all(block.values.npartitions == 1 for block in result.blocks())
    assert_equal_to_metatensor(result, theirs.keys_to_properties("k1"))


@pytest.mark.parametrize("reduction", ["sum", "var"])
def test_reductions_over_groups_of_every_chunk_merge_the_chunks(appended, reduction):
    store, theirs = appended
    tensor = mtd.open_zarr(store)
    large = tensor.block(k0=0, k1=0)
    # its appends hold systems drawn from the same few: a partial sum per pair of an
    # input and an output chunk (210 for sum, 280 for var; now 3 and 4)
    reduced = getattr(mtd, f"{reduction}_over_samples_block")(large, "atom")
    graph = {}
    for array in [reduced.values, *(gradient.values for _, gradient in reduced.gradients())]:
        graph.update(dict(array.__dask_graph__()))
    partial = ("partial-", "combine-", "accumulate-")
    partials = [key for key in graph if str(key[0]).startswith(partial)]
    assert len(partials) < large.values.npartitions
    result = getattr(mtd, f"{reduction}_over_samples")(tensor, "atom")
    expected = getattr(metatensor, f"{reduction}_over_samples")(theirs, "atom")
    assert_equal_to_metatensor(result, expected, rtol=1e-12, atol=1e-12)


def test_join_along_properties_keeps_the_appends_chunks(appended):
    store, theirs = appended
    tensor = mtd.open_zarr(store)
    result = mtd.join([tensor, tensor], "properties", add_dimension="tensor")
    for ours, joined in zip(tensor.blocks(), result.blocks(), strict=True):
        # before: each chunk of a few rows cut in two, rows twice as wide
        assert joined.values.npartitions <= ours.values.npartitions
    expected = metatensor.join([theirs, theirs], "properties", add_dimension="tensor")
    assert_equal_to_metatensor(result, expected)
