"""Ingestion of data of unusual shapes, against metatensor's ``join`` of the renumbered
batches (values, every gradient, labels, dtypes), each store read back lazily and
checked by ``verify``: the renumbered dimension between two others, several components
and gradients (one with components of its own, one with rows for the last sample only,
one nested), keys that come, vanish and come back, batches without blocks, blocks
without properties, big-endian batches, items that are objects, appends after a run
(``renumber="next"``, maps read lazily from other stores and results of operations),
``convert --append`` of sources without blocks and of other keys; and what batches
that overlap, or a ``renumber`` of a dimension named ``"sample"``, are told."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.execution.cli import main
from metatensor_dask.testing import assert_equal_to_metatensor

XYZ = [[0], [1], [2]]


def _labels(names: list[str], rows: Any) -> metatensor.Labels:
    return metatensor.Labels(names, np.array(rows, dtype=np.int32).reshape(-1, len(names)))


def _gradient_rows(parameter: str, rows: list[tuple[int, ...]], column: int) -> tuple:
    """The samples and own components of the gradient ``parameter`` of a block whose
    samples are ``rows``, ``system`` being their column ``column``: ``positions``,
    two atoms per sample but a few rows left out; ``strain``, every other sample;
    ``cell``, the last sample only."""
    if parameter == "positions":
        found = [(i, row[column], a) for i, row in enumerate(rows) for a in range(2) if (i + a) % 3]
        return _labels(["sample", "system", "atom"], found), [_labels(["xyz"], XYZ)]
    if parameter == "strain":
        found = [(i,) for i in range(0, len(rows), 2)]
        return _labels(["sample"], found), [_labels(["i"], XYZ), _labels(["j"], XYZ)]
    found = [(len(rows) - 1,)] if rows else []
    return _labels(["sample"], found), [_labels(["abc"], [[0], [1]])]


def _block(
    rows: list[tuple[int, ...]],
    names: list[str],
    seed: int,
    *,
    components: tuple[int, ...] = (2, 3),
    properties: int = 2,
    gradients: tuple[str, ...] = ("positions", "strain", "cell"),
) -> metatensor.TensorBlock:
    """A block of samples ``rows`` (``names``), components of ``components`` entries
    and ``properties`` properties, values drawn from ``seed``, with ``gradients``."""
    rng = np.random.default_rng(seed)
    own = [_labels([f"c{i}"], [[j] for j in range(n)]) for i, n in enumerate(components)]
    labels = _labels(["p"], [[j] for j in range(properties)])
    shape = [len(rows), *components, properties]
    block = metatensor.TensorBlock(rng.standard_normal(shape), _labels(names, rows), own, labels)
    for parameter in gradients:
        samples, extra = _gradient_rows(parameter, rows, names.index("system"))
        values = rng.standard_normal([len(samples), *(len(c) for c in extra), *shape[1:]])
        block.add_gradient(parameter, metatensor.TensorBlock(values, samples, extra + own, labels))
    return block


def _map(keys: list[tuple[int, ...]], blocks: list, names: tuple[str, ...] = ("k",)):
    return metatensor.TensorMap(_labels(list(names), keys), blocks)


def _renumbered(tensor: metatensor.TensorMap, offset: int) -> metatensor.TensorMap:
    """``tensor`` with ``offset`` added to the ``system`` of its blocks' samples and of
    their gradients' samples (what ``renumber`` does), built with metatensor."""

    def shifted(labels: metatensor.Labels) -> metatensor.Labels:
        if "system" not in labels.names:
            return labels
        values = np.array(labels.values)
        values[:, list(labels.names).index("system")] += offset
        return metatensor.Labels(labels.names, values)

    def block(b: metatensor.TensorBlock) -> metatensor.TensorBlock:
        new = metatensor.TensorBlock(
            b.values.copy(), shifted(b.samples), b.components, b.properties
        )
        for parameter, gradient in b.gradients():
            new.add_gradient(parameter, block(gradient))
        return new

    return metatensor.TensorMap(tensor.keys, [block(b) for b in tensor.blocks()])


def _batches_joined(function: Any, items: list, batch_size: int) -> metatensor.TensorMap:
    """metatensor's join of the batches of ``function``, each renumbered by the index
    of its first item, as ``write_batches`` promises its store to be."""
    parts = [
        _renumbered(function(list(items[start : start + batch_size])), start)
        for start in range(0, len(items), batch_size)
    ]
    return metatensor.join(parts, axis="samples", different_keys="union")


def _assert_store(path: Path, expected: metatensor.TensorMap) -> None:
    """The store at ``path`` passes ``verify`` and reads lazily as ``expected``."""
    report = mtd.verify(path)
    assert report.ok, report.problems
    assert_equal_to_metatensor(mtd.open_zarr(path), expected)


class MiddleSystem:
    """Batches whose samples are ``(atom, system, x)``, systems numbered from 0: the
    keys ``(a=1, b=2)`` and ``(a=0, b=5)`` come, vanish (a batch of no block) and come
    back, in either order."""

    PATTERN = ([(1, 2)], [], [(0, 5), (1, 2)], [(1, 2), (0, 5)], [(0, 5)], [(1, 2)])

    def __call__(self, items: list[int]) -> metatensor.TensorMap:
        keys = self.PATTERN[items[0] % len(self.PATTERN)]
        rows = [(a, s, 7 * a - 3) for s in range(len(items)) for a in range(2)]
        names = ["atom", "system", "x"]
        blocks = [_block(rows, names, 10 * items[0] + k[1]) for k in keys]
        return _map(keys, blocks, ("a", "b"))


@pytest.mark.parametrize("batch_size", [1, 4])
def test_batches_renumbered_between_two_sample_dimensions(tmp_path, batch_size):
    """Three gradients (components of their own, rows left out, rows for the last
    sample only), two components, keys that come and go, 6 items in batches of
    ``batch_size`` (the last one shorter)."""
    items = list(range(6))
    path = tmp_path / "middle.zarr"
    with dask.config.set(num_workers=2):
        mtd.write_batches(MiddleSystem(), items, path, batch_size=batch_size, quiet=True)
    _assert_store(path, _batches_joined(MiddleSystem(), items, batch_size))


class EmptyFirst:
    """No block for the items of ``empty``; else one block of one system per item,
    whose ``cell`` gradient has a row for the last sample only (none without rows)."""

    def __init__(self, empty: tuple[int, ...], rows_of_zero: bool = False):
        self.empty = empty
        self.rows_of_zero = rows_of_zero

    def __call__(self, items: list[int]) -> metatensor.TensorMap:
        if items[0] in self.empty and not self.rows_of_zero:
            return _map([], [])
        n = 0 if items[0] in self.empty else len(items)
        rows = [(s,) for s in range(n)]
        block = _block(rows, ["system"], items[0], components=(), gradients=("cell", "positions"))
        return _map([(0,)], [block])


@pytest.mark.parametrize(
    "function",
    [EmptyFirst((0,)), EmptyFirst((0, 4)), EmptyFirst((0,), rows_of_zero=True)],
    ids=["first batch without blocks", "and one later", "first block without rows"],
)
def test_batches_after_a_first_batch_without_rows(tmp_path, function):
    """The store is created by a batch without blocks (or with a block of no rows, whose
    gradients count as grouped): the later batches' rows, and their gradients' rows
    for a single sample, are appended as the join has them."""
    items = list(range(7))
    path = tmp_path / "empty.zarr"
    mtd.write_batches(function, items, path, batch_size=2, quiet=True)
    _assert_store(path, _batches_joined(function, items, 2))


def test_a_run_of_batches_without_blocks_reads_as_a_map_without_blocks(tmp_path):
    path = tmp_path / "nothing.zarr"
    mtd.write_batches(lambda items: _map([], []), [0, 1, 2], path, quiet=True)
    assert mtd.verify(path).ok
    stored = mtd.open_zarr(path)
    assert len(stored) == 0
    assert stored.keys.names == ["k"]


def _no_properties(items: list[int]) -> metatensor.TensorMap:
    """Blocks of no property: values of shape ``(n, 2, 0)``, two gradients."""
    rows = [(s, 0) for s in range(len(items))]
    block = _block(
        rows,
        ["system", "atom"],
        items[0],
        components=(2,),
        properties=0,
        gradients=("positions", "strain"),
    )
    return _map([(0,)], [block])


def test_blocks_without_properties_through_batches_and_appends(tmp_path):
    """Arrays with no column: chunked, appended and read back as the join has them."""
    items = list(range(5))
    path = tmp_path / "batches.zarr"
    mtd.write_batches(_no_properties, items, path, batch_size=2, quiet=True)
    _assert_store(path, _batches_joined(_no_properties, items, 2))

    appended = tmp_path / "appended.zarr"
    first, second = _no_properties([0]), _no_properties([0, 1])
    mtd.from_metatensor(first).to_zarr(appended, append_dim="samples")
    mtd.from_metatensor(second).to_zarr(appended, append_dim="samples", renumber={"system": "next"})
    expected = metatensor.join([first, _renumbered(second, 1)], axis="samples")
    _assert_store(appended, expected)


def _big_endian(tensor: metatensor.TensorMap) -> metatensor.TensorMap:
    """``tensor`` with its values and gradients in big-endian byte order."""

    def block(b: metatensor.TensorBlock) -> metatensor.TensorBlock:
        new = metatensor.TensorBlock(b.values.astype(">f8"), b.samples, b.components, b.properties)
        for parameter, gradient in b.gradients():
            new.add_gradient(parameter, block(gradient))
        return new

    return metatensor.TensorMap(tensor.keys, [block(b) for b in tensor.blocks()])


class SomeBigEndian:
    """:class:`MiddleSystem`, the batches of odd first items in big-endian order."""

    def __call__(self, items: list[int]) -> metatensor.TensorMap:
        tensor = MiddleSystem()(items)
        return _big_endian(tensor) if items[0] % 2 else tensor


def test_metatensor_core_batches_in_either_byte_order(tmp_path):
    """A metatensor-core result is written from its own memory: rows of the other byte
    order are stored little-endian, as the join of the native batches."""
    items = list(range(5))
    path = tmp_path / "endian.zarr"
    mtd.write_batches(SomeBigEndian(), items, path, batch_size=1, quiet=True)
    _assert_store(path, _batches_joined(MiddleSystem(), items, 1))


class Item:
    """An item that is an object of no particular kind."""

    def __init__(self, value: float):
        self.value = value


def _one_row_per_item(items: list) -> metatensor.TensorMap:
    """A row per item (``system`` from 0), its value the item's ``value`` (else 1)."""
    values = [[float(getattr(item, "value", 1.0))] for item in items]
    block = metatensor.TensorBlock(
        np.array(values),
        _labels(["system"], [[s] for s in range(len(items))]),
        [],
        _labels(["p"], [[0]]),
    )
    return _map([(0,)], [block])


ITEMS = {
    "objects": lambda: [Item(i / 2) for i in range(5)],
    "None": lambda: [None] * 5,
    "dicts": lambda: [{"frame": i} for i in range(5)],
    "paths": lambda: [Path(f"frames/{i}.xyz") for i in range(5)],
    "rows of an array": lambda: np.arange(10).reshape(5, 2),
    "of several kinds": lambda: [1, "a", (2,), None, Item(3.5)],
}


@pytest.mark.parametrize("kind", sorted(ITEMS))
def test_items_that_are_not_numbers(tmp_path, kind):
    items = ITEMS[kind]()
    path = tmp_path / "items.zarr"
    with dask.config.set(num_workers=2):
        mtd.write_batches(_one_row_per_item, items, path, batch_size=2, quiet=True)
    _assert_store(path, _batches_joined(_one_row_per_item, items, 2))


def _nested(items: list[int]) -> metatensor.TensorMap:
    """One system per item, a ``positions`` gradient with a gradient ``cell`` of its
    own, both holding ``system`` in their samples."""
    n = len(items)
    properties = _labels(["p"], [[0], [1]])
    block = metatensor.TensorBlock(
        np.arange(2.0 * n).reshape(n, 2) + items[0],
        _labels(["system", "atom"], [(s, 0) for s in range(n)]),
        [],
        properties,
    )
    positions = metatensor.TensorBlock(
        np.full((n, 3, 2), float(items[0])),
        _labels(["sample", "system", "atom"], [(i, i, 0) for i in range(n)]),
        [_labels(["xyz"], XYZ)],
        properties,
    )
    cell = metatensor.TensorBlock(
        np.full((n, 2, 3, 2), items[0] + 0.5),
        _labels(["sample", "system"], [(i, i) for i in range(n)]),
        [_labels(["c"], [[0], [1]]), _labels(["xyz"], XYZ)],
        properties,
    )
    positions.add_gradient("cell", cell)
    block.add_gradient("positions", positions)
    return _map([(0,)], [block])


@pytest.mark.parametrize("output", ["core", "dask"])
def test_nested_gradients_are_renumbered_and_appended(tmp_path, output):
    """metatensor's join refuses gradients of gradients: the nested ``cell`` gradient is
    compared by hand, its ``system`` renumbered and its ``sample`` shifted by the
    ``positions`` rows before."""

    def function(items: list[int]) -> Any:
        tensor = _nested(items)
        return tensor if output == "core" else mtd.from_metatensor(tensor)

    path = tmp_path / "nested.zarr"
    mtd.write_batches(function, list(range(5)), path, batch_size=2, quiet=True)
    assert mtd.verify(path).ok
    positions = mtd.to_metatensor(mtd.open_zarr(path)).block(0).gradient("positions")
    expected = metatensor.join(
        [
            metatensor.remove_gradients(_renumbered(_nested(i), s))
            for i, s in [([0, 1], 0), ([2, 3], 2), ([4], 4)]
        ],
        axis="samples",
    )
    assert positions.samples.values.tolist() == [[i, i, 0] for i in range(5)]
    np.testing.assert_array_equal(positions.values[:, 0, 0], [0, 0, 2, 2, 4])
    cell = positions.gradient("cell")
    assert cell.samples.names == ["sample", "system"]
    assert cell.samples.values.tolist() == [[i, i] for i in range(5)]
    np.testing.assert_array_equal(cell.values[:, 0, 0, 0], [0.5, 0.5, 2.5, 2.5, 4.5])
    assert_equal_to_metatensor(mtd.remove_gradients(mtd.open_zarr(path), ["positions"]), expected)


def _atoms_but_the_last(items: list[int]) -> metatensor.TensorMap:
    """Two atoms per system, none for the batch of item 4 (its block has no rows)."""
    rows = [(s, a) for s in range(0 if 4 in items else len(items)) for a in range(2)]
    block = _block(rows, ["system", "atom"], items[0], components=(2,), gradients=("positions",))
    return _map([(0,)], [block])


def test_appends_after_a_run_of_batches(tmp_path):
    """``renumber={"system": "next"}`` after ``write_batches`` (whose last batch has no
    row), of a map read lazily from another store in chunks of one row (a key the run
    did not have), and of results of operations on it (a product, a slice): the join
    of all, in that order, each numbered past the largest system stored before it."""
    items = list(range(5))
    path = tmp_path / "all.zarr"
    mtd.write_batches(_atoms_but_the_last, items, path, batch_size=2, quiet=True)
    parts = [_renumbered(_atoms_but_the_last(items[s : s + 2]), s) for s in range(0, 5, 2)]

    rows = [(s, a) for s in range(3) for a in range(2)]
    blocks = [
        _block(rows, ["system", "atom"], k, components=(2,), gradients=("positions",))
        for k in (0, 1)
    ]
    source = _map([(1,), (0,)], blocks)
    other = tmp_path / "other.zarr"
    mtd.from_metatensor(source).to_zarr(other, chunks=1)
    lazy = mtd.open_zarr(other)
    only = metatensor.Labels(["atom"], np.array([[1]], dtype=np.int32))
    appended = [
        (lazy, source),
        (mtd.multiply(lazy, 3.0), metatensor.multiply(source, 3.0)),
        (
            mtd.slice(lazy, "samples", mtd.from_metatensor(only)),
            metatensor.slice(source, "samples", only),
        ),
    ]
    for (ours, theirs), offset in zip(appended, [4, 7, 10], strict=True):
        ours.to_zarr(path, append_dim="samples", renumber={"system": "next"})
        parts.append(_renumbered(theirs, offset))
    _assert_store(path, metatensor.join(parts, axis="samples", different_keys="union"))


def _saved(folder: Path, tensors: list[metatensor.TensorMap], prefix: str) -> list[str]:
    paths = []
    for i, tensor in enumerate(tensors):
        path = folder / f"{prefix}{i}.mts"
        metatensor.save(str(path), tensor)
        paths.append(str(path))
    return paths


def test_convert_of_sources_without_blocks_then_of_other_keys(tmp_path):
    """Sources without blocks before and between the others, renumbered on ``system``
    between two sample dimensions; then a Zarr source and a file of a new key appended
    to the store: the join of the sources with blocks, each past the ones before."""
    empty = _map([], [])
    first, second = MiddleSystem()([2, 3]), MiddleSystem()([0, 1, 2])
    out = tmp_path / "all.zarr"
    sources = _saved(tmp_path, [empty, first, empty, second], "a")
    assert main(["convert", *sources, str(out), "--append", "--renumber", "system", "--quiet"]) == 0
    parts = [first, _renumbered(second, 2)]
    _assert_store(out, metatensor.join(parts, axis="samples", different_keys="union"))

    zarr_source = tmp_path / "source.zarr"
    third = MiddleSystem()([4])
    mtd.from_metatensor(third).to_zarr(zarr_source, chunks=1)
    fourth = _map([(3, 3)], [_block([(0, 0, 0)], ["atom", "system", "x"], 9)], ("a", "b"))
    argv = [str(zarr_source), *_saved(tmp_path, [fourth], "b"), str(out)]
    assert main(["convert", *argv, "--append", "--renumber", "system", "--quiet"]) == 0
    parts += [_renumbered(third, 5), _renumbered(fourth, 6)]
    _assert_store(out, metatensor.join(parts, axis="samples", different_keys="union"))


def test_convert_without_renumbering_of_sources_of_other_keys(tmp_path):
    """Samples apart already (their systems differ where a key is in both sources), keys
    in another order, a key in the second source only: stored as they are."""
    names = ["system", "atom"]
    gradients = ("positions", "strain")
    first = _map([(0,)], [_block([(0, 0), (1, 0)], names, 1, gradients=gradients)])
    second = _map(
        [(1,), (0,)],
        [
            _block([(0, 0)], names, 2, gradients=gradients),
            _block([(2, 0)], names, 3, gradients=gradients),
        ],
    )
    out = tmp_path / "all.zarr"
    sources = _saved(tmp_path, [first, second], "s")
    assert main(["convert", *sources, str(out), "--append", "--quiet"]) == 0
    joined = metatensor.join([first, second], axis="samples", different_keys="union")
    _assert_store(out, joined)


class Overlapping:
    """Samples ``(atom, system)`` with systems 0 to 3 in every batch (of 2 items):
    the atom of every batch is 0 when ``repeat``, else the index of its first item,
    so that the renumbered systems of two batches overlap, and their samples repeat
    only with ``repeat``."""

    def __init__(self, repeat: bool):
        self.repeat = repeat

    def __call__(self, items: list[int]) -> metatensor.TensorMap:
        atom = 0 if self.repeat else items[0]
        rows = [(atom, s) for s in range(4)]
        block = _block(rows, ["atom", "system"], items[0], components=(), gradients=("positions",))
        return _map([(0,)], [block])


def test_overlapping_renumbered_batches_without_repeats_equal_the_join(tmp_path):
    """The appended systems are not all past the stored ones, nor do the samples sort
    after them: the stored samples are read and compared, and none repeats."""
    items = list(range(6))
    path = tmp_path / "overlap.zarr"
    mtd.write_batches(Overlapping(False), items, path, batch_size=2, quiet=True)
    _assert_store(path, _batches_joined(Overlapping(False), items, 2))


def test_renumbered_batches_repeating_a_sample_say_how_the_function_numbers_them(tmp_path):
    """Batches renumbered by write_batches that repeat a sample: the function numbered
    the systems of a batch of 2 items from 0 to 3. The error advised passing
    ``renumber='system'`` to write_batches (what the run did), and ``to_zarr``'s and
    ``convert``'s options; it now says what renumber='system' expects of the function,
    and the other remedy, renumber=None."""
    path = tmp_path / "overlap.zarr"
    with pytest.raises(mtd.MetatensorDaskError) as error:
        mtd.write_batches(Overlapping(True), list(range(6)), path, batch_size=2, quiet=True)
    message = str(error.value)
    assert message.startswith("batch 1 (items 2 to 3, first item 2) failed: ")
    assert "the block (k=0) has the sample {'atom': 0, 'system': 2}, which is already stored" in (
        message
    )
    assert "renumber='system' adds the index of the batch's first item (2) to its 'system'" in (
        message
    )
    assert "number 'system' from 0 to 1, one per item of the batch" in message
    assert "or pass renumber=None and number it apart in the function" in message
    assert "--renumber" not in message
    assert "(to_zarr)" not in message
    report = mtd.verify(path)
    assert report.problems[0].startswith("the store is incomplete")


def _sample_named_sample(items: list[int]) -> metatensor.TensorMap:
    """Samples named ``"sample"`` (as a gradient's first dimension is named), and a
    ``strain`` gradient."""
    rows = [(s,) for s in range(len(items))]
    block = metatensor.TensorBlock(
        np.ones((len(rows), 1)), _labels(["sample"], rows), [], _labels(["p"], [[0]])
    )
    block.add_gradient(
        "strain",
        metatensor.TensorBlock(
            np.ones((len(rows), 3, 1)),
            _labels(["sample"], rows),
            [_labels(["xyz"], XYZ)],
            _labels(["p"], [[0]]),
        ),
    )
    return _map([(0,)], [block])


@pytest.mark.parametrize("how", ["write_batches", "to_zarr"])
def test_renumbering_samples_named_sample_says_why_it_is_refused(tmp_path, how):
    """A tensor whose samples are named ``"sample"`` was told that ``'sample'`` "is not a
    sample dimension of this tensor (['sample'])". Renumbering it is refused (its name is
    every gradient's row index, which is never renumbered), saying so, with the remedy:
    another name."""
    path = tmp_path / "samples.zarr"
    with pytest.raises(mtd.MetatensorDaskError) as error:
        if how == "write_batches":
            mtd.write_batches(_sample_named_sample, [0, 1], path, renumber="sample", quiet=True)
        else:
            stored = mtd.from_metatensor(_sample_named_sample([0]))
            stored.to_zarr(path)
            stored.to_zarr(path, append_dim="samples", renumber={"sample": "next"})
    message = str(error.value)
    assert "is not a sample dimension" not in message
    assert "can not renumber 'sample', a sample dimension of " in message
    assert "every gradient names 'sample' its first sample dimension" in message
    assert "rename_dimension(tensor, 'samples', 'sample', NEW)" in message


class AtTheLimits:
    """Keys and samples (other than ``system``) at both ends of the int32 range, keys
    in either order, a key new in every other batch."""

    def __call__(self, items: list[int]) -> metatensor.TensorMap:
        low, high = -(2**31), 2**31 - 1
        keys = [(high,), (low,)] if items[0] % 2 == 0 else [(low,), (0,)]
        n = len(items)
        rows = [(low, s, high) for s in range(n)] + [(high, s, low) for s in range(n)]
        names = ["atom", "system", "x"]
        blocks = [
            _block(rows, names, items[0] + i, components=(), gradients=("positions", "cell"))
            for i in range(len(keys))
        ]
        return _map(keys, blocks)


def test_labels_at_the_int32_limits_are_stored_exactly(tmp_path):
    """Renumbering ``system`` leaves the other columns as they are, at the limits too,
    in the batches and in an append after them."""
    items = list(range(5))
    path = tmp_path / "limits.zarr"
    mtd.write_batches(AtTheLimits(), items, path, batch_size=2, quiet=True)
    parts = [_renumbered(AtTheLimits()(items[s : s + 2]), s) for s in range(0, 5, 2)]
    _assert_store(path, metatensor.join(parts, axis="samples", different_keys="union"))
    mtd.from_metatensor(AtTheLimits()([0])).to_zarr(
        path, append_dim="samples", renumber={"system": "next"}
    )
    parts.append(_renumbered(AtTheLimits()([0]), 5))
    _assert_store(path, metatensor.join(parts, axis="samples", different_keys="union"))
