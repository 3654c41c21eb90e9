"""Stores grown by appends that leave unusual layouts, read every way and through every
family of operation, against metatensor on the join of the renumbered batches.

The layouts: a block whose first append had no samples, appends of one row and of no
rows for some keys, an empty batch (a map without blocks), keys that appear only in later
appends (``keys`` in several chunks), gradients without rows in some appends, appends that
fill a chunk exactly and that leave one row in a new chunk; float64 in plain chunks and
float32 in shards with a compressor; a store of ``write_batches`` with empty batches; a
store converted to other chunks then appended to. Each is opened in its stored chunks, in
chunks of 1 and 3 rows and of a size, then computed, verified, described, saved to
``.mts``, written over in the modes ``"a"`` and ``"r+"`` and appended to again.
"""

from __future__ import annotations

import contextlib
import io
import shutil

import dask
import metatensor
import metatensor.operations as mo
import numpy as np
import pytest
from ingest_support import renumbered

import metatensor_dask as mtd
from metatensor_dask.__main__ import main
from metatensor_dask.testing import assert_equal_to_metatensor

NEXT = {"system": "next"}

#: Appends, each ``{key: (systems, atoms per system, gradient rows per sample)}``; an
#: empty dict is a map without blocks. With chunks of 3 rows, key 0 gets 0, 1, 0, 2, 0
#: and 4 rows: its first append stores nothing, the fourth fills its first chunk, the last
#: fills the second and leaves one row in a third; key 1 first comes in the fourth
#: append, key 2 in the fifth; gradients have no rows in the second and third appends.
APPENDS = [
    {0: (0, 1, 1)},
    {0: (1, 1, 0)},
    {},
    {0: (2, 1, 1), 1: (1, 2, 0)},
    {0: (0, 1, 1), 1: (2, 1, 2), 2: (1, 1, 1)},
    {0: (4, 1, 1)},
]

#: Settings of the two stores grown by ``APPENDS``: plain float64 chunks of 3 rows, and
#: float32 in chunks of 2 rows, 2 chunks per shard, compressed.
GROWN = {
    "float64": (np.float64, 3, {}),
    "float32 sharded": (
        np.float32,
        2,
        {"metatensor_dask.shard-chunks": 2, "metatensor_dask.compressor": "zstd"},
    ),
}


def _labels(names: list[str], rows: list[tuple[int, ...]]) -> metatensor.Labels:
    values = np.array(rows, dtype=np.int32).reshape(len(rows), len(names))
    return metatensor.Labels(names, values)


def _block(rng, rows: list[tuple[int, int]], gradient_rows: int, dtype) -> metatensor.TensorBlock:
    """Samples ``(system, atom)``, a component ``c`` of 3, 2 properties; a ``positions``
    gradient of ``gradient_rows`` rows per sample, grouped by sample."""
    component = _labels(["c"], [(0,), (1,), (2,)])
    properties = _labels(["n"], [(0,), (1,)])
    block = metatensor.TensorBlock(
        rng.standard_normal((len(rows), 3, 2)).astype(dtype),
        _labels(["system", "atom"], rows),
        [component],
        properties,
    )
    neighbours = [(i, s, a + j) for i, (s, a) in enumerate(rows) for j in range(gradient_rows)]
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.standard_normal((len(neighbours), 3, 3, 2)).astype(dtype),
            _labels(["sample", "system", "atom"], neighbours),
            [_labels(["xyz"], [(0,), (1,), (2,)]), component],
            properties,
        ),
    )
    return block


def _batch(rng, spec: dict[int, tuple[int, int, int]], dtype) -> metatensor.TensorMap:
    """The map of one append: systems numbered from 0, as featomic numbers them."""
    keys = sorted(spec)
    blocks = [
        _block(rng, [(s, a) for s in range(systems) for a in range(atoms)], gradient_rows, dtype)
        for systems, atoms, gradient_rows in (spec[k] for k in keys)
    ]
    return metatensor.TensorMap(_labels(["k"], [(k,) for k in keys]), blocks)


def _empty_map() -> metatensor.TensorMap:
    return metatensor.TensorMap(_labels(["k"], []), [])


def _next_system(tensors: list[metatensor.TensorMap]) -> int:
    """What ``renumber={"system": "next"}`` adds after ``tensors``."""
    stored = [int(b.samples.column("system").max()) for t in tensors for b in t.blocks() if len(b)]
    return max(stored) + 1 if stored else 0


def _joined(tensors: list[metatensor.TensorMap]) -> metatensor.TensorMap:
    return metatensor.join(
        [t for t in tensors if len(t.keys)], axis="samples", different_keys="union"
    )


def _append(path, tensor: metatensor.TensorMap, stored: list[metatensor.TensorMap], **kwargs):
    """Append ``tensor`` renumbered ``"next"``; add what it became to ``stored``."""
    offset = _next_system(stored)
    mtd.from_metatensor(tensor).to_zarr(path, append_dim="samples", renumber=NEXT, **kwargs)
    stored.append(renumbered(tensor, offset))


def _grow(path, dtype, chunks: int) -> metatensor.TensorMap:
    rng = np.random.default_rng(46)
    stored: list[metatensor.TensorMap] = []
    for spec in APPENDS:
        batch = _batch(rng, spec, dtype) if spec else _empty_map()
        _append(path, batch, stored, chunks=chunks)
    return _joined(stored)


def _cli(*arguments) -> int:
    """``metatensor-dask ARGUMENTS``, its output discarded; the exit code."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return main([str(a) for a in arguments])


def _same(ours, theirs, rtol: float = 0.0) -> None:
    assert_equal_to_metatensor(ours, theirs, rtol=rtol, atol=0.0 if rtol == 0.0 else 1e-12)


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    """``{name: (path, joined batches, settings)}`` of the stores grown by ``APPENDS``;
    also the same tensors written whole, ``whole <name>``."""
    folder = tmp_path_factory.mktemp("grown")
    stores = {}
    for name, (dtype, chunks, settings) in GROWN.items():
        path = folder / f"{name.replace(' ', '-')}.zarr"
        with dask.config.set(settings):
            joined = _grow(path, dtype, chunks)
        mtd.from_metatensor(joined).to_zarr(folder / f"whole-{name.replace(' ', '-')}.zarr")
        stores[name] = (path, joined, settings)
        stores[f"whole {name}"] = (folder / f"whole-{name.replace(' ', '-')}.zarr", joined, {})
    return stores


@pytest.mark.parametrize("name", list(GROWN))
def test_a_grown_store_reads_as_the_join_in_every_chunking(grown, name):
    path, joined, _ = grown[name]
    for chunks in (None, 1, 3, "1KiB", "auto"):
        _same(mtd.open_zarr(path, chunks=chunks), joined)
    assert mtd.verify(path).ok, mtd.verify(path).problems


def _operations(m, tensor, whole, other, labels):
    """One operation of each family on ``tensor`` (``m`` is metatensor-dask or
    metatensor-operations); ``whole`` is the same tensor written whole, ``other``
    another store."""
    systems = labels(["system"], [(0,), (3,), (4,), (7,)])
    rest = labels(["system"], [(1,), (2,), (5,), (6,)])
    return {
        "add to itself": m.add(tensor, tensor),
        "multiply by the whole": m.multiply(tensor, whole),
        "subtract the whole": m.subtract(tensor, whole),
        "divide": m.divide(tensor, m.add(m.abs(whole), 1.0)),
        "sum over atom": m.sum_over_samples(tensor, "atom"),
        "sum over system": m.sum_over_samples(tensor, "system"),
        "mean over system (values)": m.mean_over_samples(m.remove_gradients(tensor), "system"),
        "std over atom (values)": m.std_over_samples(m.remove_gradients(tensor), "atom"),
        "slice systems": m.slice(tensor, "samples", systems),
        "split systems, second": m.split(tensor, "samples", [systems, rest])[1],
        "join with another store": m.join([tensor, other], axis="samples"),
        "keys to samples": tensor.keys_to_samples("k"),
        "keys to properties": tensor.keys_to_properties("k"),
        "sort descending": m.sort(tensor, descending=True),
    }


@pytest.mark.parametrize("name", list(GROWN))
def test_operations_on_a_grown_store_equal_metatensor(grown, tmp_path, name):
    """In chunks of 1 row; with the whole store in its own chunks."""
    path, joined, _ = grown[name]
    whole_path = grown[f"whole {name}"][0]
    other = renumbered(joined, 1000)
    mtd.from_metatensor(other).to_zarr(tmp_path / "other.zarr", chunks=2)
    stored = mtd.open_zarr(path, chunks=1)
    whole = mtd.open_zarr(whole_path)
    ours = _operations(mtd, stored, whole, mtd.open_zarr(tmp_path / "other.zarr"), _mtd_labels)
    theirs = _operations(mo, joined, joined, other, _labels)
    rtol = 1e-6 if joined.block(0).values.dtype == np.float32 else 1e-12
    for operation, result in ours.items():
        # sums of groups split across chunks add the sums of their chunks: to rounding
        exact = operation not in (
            "sum over system",
            "mean over system (values)",
            "std over atom (values)",
        )
        _same(result, theirs[operation], rtol=0.0 if exact else rtol)
    assert mtd.equal(stored, whole) and mtd.allclose(stored, whole)
    mtd.equal_raise(stored, mtd.open_zarr(whole_path, chunks=2))
    for gradient in (None, "positions"):
        _same(
            mtd.unique_metadata(stored, "samples", ["system", "atom"], gradient=gradient),
            mo.unique_metadata(joined, "samples", ["system", "atom"], gradient=gradient),
        )


def _mtd_labels(names, rows):
    return mtd.from_metatensor(_labels(names, rows))


@pytest.mark.parametrize("name", list(GROWN))
def test_a_grown_store_is_described_saved_and_appended_to_again(grown, tmp_path, name):
    source, joined, settings = grown[name]
    path = tmp_path / "grown.zarr"
    shutil.copytree(source, path)
    assert _cli("info", path) == 0
    assert _cli("verify", path) == 0
    mtd.save(tmp_path / "grown.mts", mtd.open_zarr(path, chunks=3))
    _same(mtd.from_metatensor(metatensor.load(tmp_path / "grown.mts")), joined)
    stored = [joined]
    more = _batch(np.random.default_rng(1), {1: (1, 1, 1), 3: (2, 1, 0)}, joined.dtype)
    with dask.config.set(settings):
        _append(path, more, stored)
    for chunks in (None, 2):
        _same(mtd.open_zarr(path, chunks=chunks), _joined(stored))
    assert mtd.verify(path).ok, mtd.verify(path).problems


def _with_cell_gradient(tensor: metatensor.TensorMap) -> metatensor.TensorMap:
    """``tensor`` whose blocks have a ``cell`` gradient too (a row per sample)."""
    blocks = []
    for block in tensor.blocks():
        new = block.copy()
        rows = len(block.samples)
        new.add_gradient(
            "cell",
            metatensor.TensorBlock(
                np.arange(rows * 18, dtype=block.values.dtype).reshape(rows, 3, 3, 2),
                _labels(["sample"], [(i,) for i in range(rows)]),
                [_labels(["abc"], [(0,), (1,), (2,)]), *block.components],
                block.properties,
            ),
        )
        blocks.append(new)
    return metatensor.TensorMap(tensor.keys, blocks)


def test_modes_a_and_r_plus_after_appends_then_one_more_append(grown, tmp_path):
    """``mode="a"`` adds a gradient to the appended blocks, then a key (``keys`` in one
    chunk again); ``mode="r+"`` rewrites the values; appends go on after each."""
    source, joined, _ = grown["float64"]
    path = tmp_path / "grown.zarr"
    shutil.copytree(source, path)
    rng = np.random.default_rng(2)
    with_cell = _with_cell_gradient(joined)
    mtd.from_metatensor(with_cell).to_zarr(path, mode="a")
    _same(mtd.open_zarr(path, chunks=1), with_cell)
    stored = [with_cell]
    _append(
        path, _with_cell_gradient(_batch(rng, {0: (1, 1, 1), 5: (1, 1, 0)}, np.float64)), stored
    )
    key_9 = _with_cell_gradient(_batch(rng, {9: (2, 1, 1)}, np.float64))
    mtd.from_metatensor(key_9).to_zarr(path, mode="a")
    grown_so_far = _joined(stored)
    stored = [
        metatensor.TensorMap(
            _labels(["k"], [*map(tuple, grown_so_far.keys.values), (9,)]),
            [b.copy() for b in [*grown_so_far.blocks(), key_9.block(0)]],
        )
    ]
    _same(mtd.open_zarr(path, chunks=3), stored[0])
    doubled = mo.multiply(stored[0], 2.0)
    mtd.from_metatensor(doubled).to_zarr(path, mode="r+")
    _same(mtd.open_zarr(path, chunks=2), doubled)
    stored = [doubled]
    _append(
        path, _with_cell_gradient(_batch(rng, {9: (1, 1, 1), 1: (1, 2, 1)}, np.float64)), stored
    )
    for chunks in (None, "1KiB"):
        _same(mtd.open_zarr(path, chunks=chunks), _joined(stored))
    assert mtd.verify(path).ok, mtd.verify(path).problems


def test_a_store_converted_to_other_chunks_then_appended_to(grown, tmp_path):
    """``convert`` into chunks of 2 rows in shards of 2, then ``convert --append`` of a
    ``.mts`` file and an append from Python."""
    source, joined, _ = grown["float64"]
    path = tmp_path / "converted.zarr"
    assert _cli("convert", source, path, "--chunks", "2", "--shard-chunks", "2") == 0
    rng = np.random.default_rng(3)
    more = _batch(rng, {2: (2, 1, 1), 4: (1, 2, 0)}, np.float64)
    metatensor.save(tmp_path / "more.mts", more)
    assert _cli("convert", tmp_path / "more.mts", path, "--append", "--renumber", "system") == 0
    stored = [joined, renumbered(more, _next_system([joined]))]
    _append(path, _batch(rng, {0: (1, 1, 0), 4: (3, 1, 1)}, np.float64), stored)
    for chunks in (None, 1, 3):
        tensor = mtd.open_zarr(path, chunks=chunks)
        _same(tensor, _joined(stored))
        _same(mtd.sum_over_samples(tensor, "atom"), mo.sum_over_samples(_joined(stored), "atom"))
    assert mtd.verify(path).ok, mtd.verify(path).problems


#: Items of ``write_batches``, each one system: ``{key: (atoms, gradient rows)}``, or no
#: block at all.
ITEMS = [{0: (1, 1)}, {}, {}, {1: (2, 0)}, {0: (1, 0), 2: (1, 1)}, {0: (3, 2)}, {}]


def _item(index: int) -> metatensor.TensorMap:
    spec = {k: (1, atoms, rows) for k, (atoms, rows) in ITEMS[index].items()}
    return _batch(np.random.default_rng(100 + index), spec, np.float64) if spec else _empty_map()


def _items_batch(items: list[int]) -> metatensor.TensorMap:
    """The systems of ``items`` numbered from 0 in the batch (``write_batches`` adds the
    index of the first)."""
    return (
        _joined([renumbered(_item(i), j) for j, i in enumerate(items)])
        if any(ITEMS[i] for i in items)
        else _empty_map()
    )


@pytest.mark.parametrize("batch_size", [1, 2])
def test_a_store_of_write_batches_with_empty_batches(tmp_path, batch_size):
    """Batches without blocks, keys first given by later batches, then an append."""
    path = tmp_path / "batches.zarr"
    with dask.config.set(scheduler="synchronous"):
        mtd.write_batches(_items_batch, list(range(len(ITEMS))), path, batch_size, quiet=True)
    stored = [_joined([renumbered(_item(i), i) for i in range(len(ITEMS))])]
    for chunks in (None, 1, "1KiB"):
        tensor = mtd.open_zarr(path, chunks=chunks)
        _same(tensor, stored[0])
        _same(tensor.keys_to_properties("k"), stored[0].keys_to_properties("k"))
    _append(
        path, _batch(np.random.default_rng(4), {2: (1, 1, 1), 3: (1, 1, 0)}, np.float64), stored
    )
    _same(mtd.open_zarr(path, chunks=2), _joined(stored))
    assert mtd.verify(path).ok, mtd.verify(path).problems


@pytest.mark.parametrize(
    ("chunks", "chunk_size", "expected"),
    [(None, "64MiB", 4), (2, "64MiB", 2), (None, "300B", 2)],
    ids=["stored chunks of the first rows", "chunks=2", "gradient rows beyond the chunk size"],
)
def test_a_gradient_created_without_rows_is_not_stored_a_row_per_chunk(
    tmp_path, chunks, chunk_size, expected
):
    """A block whose first write gives its gradient no rows (an isolated atom has no
    neighbours) took 1-row gradient chunks: every gradient row appended later was a
    file of its own (24 chunks here, against 4 of values). It takes the rows per
    chunk of its values, at most the ``chunk-size`` setting (2 rows of 144 bytes in
    300 bytes)."""
    from metatensor_dask.io.inspection import describe_store

    path = tmp_path / "store.zarr"
    rng = np.random.default_rng(5)
    stored: list[metatensor.TensorMap] = []
    with dask.config.set({"metatensor_dask.chunk-size": chunk_size}):
        _append(path, _batch(rng, {0: (4, 1, 0)}, np.float64), stored, chunks=chunks)
    for _ in range(3):
        _append(path, _batch(rng, {0: (4, 1, 2)}, np.float64), stored)
    _same(mtd.open_zarr(path), _joined(stored))
    values, gradient = describe_store(path).blocks[0]
    assert gradient.name == "positions" and gradient.shape[0] == 24
    assert gradient.chunk_rows == expected, (gradient.n_chunks, values.n_chunks)


def test_a_gradient_created_with_fewer_rows_than_its_values_is_not_stored_a_row_per_chunk(
    tmp_path,
):
    """The block of an append whose gradient has 1 row for 4 samples took 1-row gradient
    chunks too (25 chunks here, against 4 of values). An append gives it at least the
    rows per chunk of its values; a plain write keeps exact chunks (a sparse gradient
    is not padded)."""
    from metatensor_dask.io.inspection import describe_store

    path = tmp_path / "store.zarr"
    rng = np.random.default_rng(6)
    first = _batch(rng, {0: (4, 1, 0)}, np.float64)
    block = first.block(0)
    sparse = metatensor.TensorBlock(block.values, block.samples, block.components, block.properties)
    sparse.add_gradient(
        "positions",
        metatensor.TensorBlock(
            np.ones((1, 3, 3, 2)),
            _labels(["sample", "system", "atom"], [(3, 3, 0)]),
            block.gradient("positions").components,
            block.properties,
        ),
    )
    sparse_map = metatensor.TensorMap(first.keys, [sparse])
    stored: list[metatensor.TensorMap] = []
    _append(path, sparse_map, stored)
    for _ in range(3):
        _append(path, _batch(rng, {0: (4, 1, 2)}, np.float64), stored)
    _same(mtd.open_zarr(path), _joined(stored))
    values, gradient = describe_store(path).blocks[0]
    assert gradient.chunk_rows == values.chunk_rows, (gradient.n_chunks, values.n_chunks)
    mtd.from_metatensor(sparse_map).to_zarr(tmp_path / "plain.zarr")
    assert describe_store(tmp_path / "plain.zarr").blocks[0][1].chunk_rows == 1
