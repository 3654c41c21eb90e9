"""Maps of many tiny blocks, built in memory, loaded from ``.mts`` or opened from Zarr
(read and operated on by groups of blocks): edge blocks found to go wrong, checked
against metatensor-operations, and their results written back to stores."""

from __future__ import annotations

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask._partition import block_row_pointer
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes


def _labels(names: list[str], rows) -> metatensor.Labels:
    return metatensor.Labels(names, np.asarray(rows, dtype=np.int32).reshape(-1, len(names)))


def _block(rng, samples: int, properties: int, gradient_rows: bool) -> metatensor.TensorBlock:
    """``samples`` rows of two atoms a system (negative ids), a component of 2 and a
    ``positions`` gradient of one row per sample (or none at all), all with respect to
    the first atom of their system (so that metatensor's means over atoms are right,
    see ``docs/differences.md``)."""
    block = metatensor.TensorBlock(
        rng.uniform(0.5, 2.0, size=(samples, 2, properties)),
        _labels(["system", "atom"], [[s // 2 - 3, -(s % 2)] for s in range(samples)]),
        [_labels(["c"], [[-1], [0]])],
        _labels(["p"], np.arange(properties) - 1),
    )
    rows = [[s, s // 2 - 3, 0] for s in range(samples)] if gradient_rows else []
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.uniform(-1.0, 1.0, size=(len(rows), 3, 2, properties)),
            _labels(["sample", "system", "atom"], rows),
            [_labels(["xyz"], [[0], [1], [2]]), _labels(["c"], [[-1], [0]])],
            _labels(["p"], np.arange(properties) - 1),
        ),
    )
    return block


def many_blocks(n_blocks: int = 60, seed: int = 0) -> metatensor.TensorMap:
    """Tiny blocks of 0 to 5 samples and 1 to 3 properties, every fifth with a gradient
    of no row although it has samples."""
    rng = np.random.default_rng(seed)
    blocks = [
        _block(rng, 0 if i % 7 == 3 else 1 + i % 5, 1 + i % 3, gradient_rows=i % 5 != 2)
        for i in range(n_blocks)
    ]
    return metatensor.TensorMap(_labels(["k"], np.arange(n_blocks) - 10), blocks)


def _loaded(tmp_path, theirs: metatensor.TensorMap, chunks: int | None) -> mtd.TensorMap:
    metatensor.save(tmp_path / "theirs.mts", theirs)
    return mtd.load(tmp_path / "theirs.mts", chunks=chunks)


def _with_pointers(theirs: metatensor.TensorMap) -> mtd.TensorMap:
    """An in-memory map whose gradients carry their row pointer, as after any
    operation that paired its value rows with its gradient rows."""
    ours = mtd.from_metatensor(theirs)
    for block in ours.blocks():
        block_row_pointer(block, "positions")
    return ours


#: Every reduction of the map in memory; of the ``.mts`` file, read whole or in chunks,
#: one of ``sum`` and ``mean`` (their gradients: the same sums of rows, divided by the
#: counts for ``mean``) and one of ``var`` and ``std`` (the same centred sums) each.
REDUCED = [
    *(("memory", reduction) for reduction in ("sum", "mean", "var", "std")),
    ("mts", "sum"),
    ("mts", "std"),
    ("mts-chunked", "mean"),
    ("mts-chunked", "var"),
]


@pytest.mark.parametrize(("source", "reduction"), REDUCED)
def test_reduced_gradients_of_no_row_point_into_the_reduced_samples(tmp_path, source, reduction):
    """A gradient of no row kept by a samples reduction had the row pointer of the
    input (one entry per input sample): writing the result made a store that
    ``open_zarr`` refused as damaged."""
    theirs = many_blocks()
    if source == "memory":
        ours = _with_pointers(theirs)
    else:
        ours = _loaded(tmp_path, theirs, 2 if source == "mts-chunked" else None)
    with raise_if_dask_computes():
        result = getattr(mtd, f"{reduction}_over_samples")(ours, "atom")
    for block in result.blocks():
        pointer = block.gradient("positions").row_pointer
        assert pointer is None or len(pointer) == len(block) + 1
    result.to_zarr(tmp_path / "reduced.zarr")
    expected = getattr(metatensor, f"{reduction}_over_samples")(theirs, "atom")
    # (std gradients divide by small deviations: a few more ulps)
    assert_equal_to_metatensor(
        mtd.open_zarr(tmp_path / "reduced.zarr"), expected, rtol=1e-10, atol=1e-14
    )


# -- the strongest probes that found nothing, kept ---------------------------------------


@pytest.fixture
def small_groups(monkeypatch):
    """Groups of a few blocks (operations, comparisons, reads of .mts and of Zarr), so
    that a map of 60 tiny blocks crosses many group boundaries."""
    from metatensor_dask.io import _mts_tiny, zarr_tiny
    from metatensor_dask.operations import _compare, _grouping

    for module in (_grouping, _compare, _mts_tiny, zarr_tiny):
        monkeypatch.setattr(module, "GROUP_BYTES", 2000)
    monkeypatch.setattr(zarr_tiny, "GROUP_FILES", 5)


def _shuffled(theirs: metatensor.TensorMap) -> metatensor.TensorMap:
    """``theirs`` with the gradient rows of every other block in reverse order (not
    grouped by sample: no row pointer)."""
    blocks = []
    for i, block in enumerate(theirs.blocks()):
        gradient = block.gradient("positions")
        order = np.arange(len(gradient.samples))[:: -1 if i % 2 else 1]
        new = metatensor.TensorBlock(
            block.values.copy(), block.samples, block.components, block.properties
        )
        new.add_gradient(
            "positions",
            metatensor.TensorBlock(
                gradient.values[order],
                metatensor.Labels(gradient.samples.names, gradient.samples.values[order]),
                gradient.components,
                gradient.properties,
            ),
        )
        blocks.append(new)
    return metatensor.TensorMap(theirs.keys, blocks)


def _sources(tmp_path, theirs: metatensor.TensorMap, name: str) -> dict[str, mtd.TensorMap]:
    """``theirs`` in memory (row pointers attached), loaded from ``.mts`` and opened
    from a Zarr store written from that load."""
    metatensor.save(tmp_path / f"{name}.mts", theirs)
    loaded = mtd.load(tmp_path / f"{name}.mts")
    loaded.to_zarr(tmp_path / f"{name}.zarr")
    return {
        "memory": _with_pointers(theirs),
        "mts": loaded,
        "zarr": mtd.open_zarr(tmp_path / f"{name}.zarr"),
    }


def test_chained_operations_on_every_source_equal_metatensor(tmp_path, small_groups):
    """Element-wise operations, a reduction and keys moved to samples, chained, on
    blocks of no sample, gradients of no row and gradient rows out of order."""
    first, second = _shuffled(many_blocks(seed=1)), _shuffled(many_blocks(seed=2))
    ones = _sources(tmp_path, first, "first")
    others = _sources(tmp_path, second, "second")

    def chain(library, a, b):
        product = library.multiply(library.add(a, b), library.divide(a, b))
        return library.sum_over_samples(library.pow(product, 2), "atom")

    expected = chain(metatensor, first, second)
    moved = metatensor.remove_gradients(first).keys_to_samples("k")
    for source, a in ones.items():
        b = others["zarr" if source != "zarr" else "mts"]
        with raise_if_dask_computes():
            result = chain(mtd, a, b)
            keys_moved = mtd.remove_gradients(a).keys_to_samples("k")
        assert_equal_to_metatensor(result, expected, rtol=1e-12, atol=1e-14)
        assert_equal_to_metatensor(keys_moved, moved)


@pytest.mark.parametrize("where", ["values", "gradient"])
def test_one_element_changed_in_the_middle_of_a_group_is_seen(tmp_path, small_groups, where):
    theirs = many_blocks(seed=3)
    changed = many_blocks(seed=3)
    block = changed.block(33)
    array = block.values if where == "values" else block.gradient("positions").values
    array.reshape(-1)[array.size // 2] += 1e-9
    ours = _sources(tmp_path, theirs, "theirs")
    others = _sources(tmp_path, changed, "changed")
    for source, a in ours.items():
        b = others["zarr" if source != "zarr" else "mts"]
        assert not mtd.equal(a, b), source
        assert not mtd.allclose(a, b, rtol=0.0, atol=1e-10), source
        assert mtd.allclose(a, b, rtol=0.0, atol=1e-8), source
        # the same data through another source
        assert mtd.equal(a, ours["zarr" if source != "zarr" else "mts"]), source
