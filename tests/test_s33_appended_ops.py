"""Operations on a store grown by appends equal metatensor-operations on the join of the
renumbered pieces in memory: pieces that do not fill the stored chunks (the partial
last chunks rewritten), keys that appear only in later appends, a piece with no rows
for a key, blocks with components, three gradients (one without rows), float32 and
float64, sharded without checksums; then an operation's output written, appended to
and read in other chunkings."""

from __future__ import annotations

import dask
import metatensor
import metatensor.operations as mo
import numpy as np
import pytest
from ingest_support import renumbered

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

NEXT = {"system": "next"}


def _labels(names: list[str], rows: list[tuple[int, ...]]) -> metatensor.Labels:
    values = np.array(rows, dtype=np.int32).reshape(len(rows), len(names))
    return metatensor.Labels(names, values)


def _mtd_labels(names: list[str], rows: list[tuple[int, ...]]) -> mtd.Labels:
    return mtd.from_metatensor(_labels(names, rows))


def _gradient(values, samples, components, properties) -> metatensor.TensorBlock:
    return metatensor.TensorBlock(values, samples, components, properties)


def _block(rng, systems: int, empty: bool, shape: tuple[int, ...], dtype) -> metatensor.TensorBlock:
    """Samples ``(system, atom)``; gradients ``positions`` (an ``xyz`` component, 0 to 2
    rows per sample, grouped by sample), ``strain`` (two components, one row per
    sample) and ``cell`` (no rows)."""
    rows = [] if empty else [(s, a) for s in range(systems) for a in range(rng.integers(0, 3))]
    components = [_labels([f"c{i}"], [(j,) for j in range(n)]) for i, n in enumerate(shape)]
    properties = _labels(["n"], [(0,), (1,)])
    inner = (*shape, 2)
    block = metatensor.TensorBlock(
        rng.standard_normal((len(rows), *inner)).astype(dtype),
        _labels(["system", "atom"], rows),
        components,
        properties,
    )
    neighbours = [(i, s, n) for i, (s, _) in enumerate(rows) for n in range(rng.integers(0, 3))]
    xyz = _labels(["xyz"], [(0,), (1,), (2,)])
    block.add_gradient(
        "positions",
        _gradient(
            rng.standard_normal((len(neighbours), 3, *inner)).astype(dtype),
            _labels(["sample", "system", "atom"], neighbours),
            [xyz, *components],
            properties,
        ),
    )
    block.add_gradient(
        "strain",
        _gradient(
            rng.standard_normal((len(rows), 3, 3, *inner)).astype(dtype),
            _labels(["sample"], [(i,) for i in range(len(rows))]),
            [_labels(["a"], [(0,), (1,), (2,)]), _labels(["b"], [(0,), (1,), (2,)]), *components],
            properties,
        ),
    )
    block.add_gradient(
        "cell",
        _gradient(
            np.zeros((0, 2, *inner), dtype=dtype),
            _labels(["sample"], []),
            [_labels(["abc"], [(0,), (1,)]), *components],
            properties,
        ),
    )
    return block


def _piece(rng, keys, systems, empty_key, shape, dtype) -> metatensor.TensorMap:
    blocks = [_block(rng, systems, key == empty_key, shape, dtype) for key in keys]
    return metatensor.TensorMap(_labels(["k"], [(k,) for k in keys]), blocks)


def _next_system(tensors: list[metatensor.TensorMap]) -> int:
    stored = [int(b.samples.column("system").max()) for t in tensors for b in t.blocks() if len(b)]
    return max(stored) + 1


def _grown(path, shape, dtype) -> metatensor.TensorMap:
    """Four appends to ``path`` (created in chunks of 2 rows); the join of the
    renumbered pieces."""
    rng = np.random.default_rng(33)
    plan = [([0], 3, None, NEXT), ([1, 0], 1, None, NEXT), ([2, 0, 1], 2, 2, {"system": 40}),
            ([1, 3], 3, None, NEXT)]  # fmt: skip
    pieces: list[metatensor.TensorMap] = []
    for keys, systems, empty_key, renumber in plan:
        piece = _piece(rng, keys, systems, empty_key, shape, dtype)
        mtd.from_metatensor(piece).to_zarr(path, append_dim="samples", renumber=renumber, chunks=2)
        offset = renumber["system"]
        if offset == "next":
            offset = _next_system(pieces) if pieces else 0
        pieces.append(renumbered(piece, offset))
    return metatensor.join(pieces, axis="samples", different_keys="union")


def _same(ours, theirs, rtol: float = 0.0) -> None:
    assert_equal_to_metatensor(ours, theirs, rtol=rtol, atol=0.0 if rtol == 0.0 else 1e-6)


def _weights(tensor: metatensor.TensorMap) -> metatensor.TensorMap:
    """Two rows of weights per key, over the properties of ``tensor``."""
    rng = np.random.default_rng(5)
    blocks = [
        metatensor.TensorBlock(
            rng.standard_normal((2, len(b.properties))).astype(b.values.dtype),
            _labels(["w"], [(0,), (1,)]),
            [],
            b.properties,
        )
        for b in tensor.blocks()
    ]
    return metatensor.TensorMap(tensor.keys, blocks)


OPERATIONS = {
    "add": lambda m, t, labels: m.add(t, t),
    "subtract scalar": lambda m, t, labels: m.subtract(t, 1.5),
    "multiply": lambda m, t, labels: m.multiply(t, t),
    "divide": lambda m, t, labels: m.divide(t, m.add(m.abs(t), 1.0)),
    "pow": lambda m, t, labels: m.pow(t, 3.0),
    "sum over atom": lambda m, t, labels: m.sum_over_samples(t, "atom"),
    "sum over properties": lambda m, t, labels: m.sum_over_properties(t, "n"),
    "slice": lambda m, t, labels: m.slice(t, "samples", labels(["system"], [(0,), (2,), (41,)])),
    "split": lambda m, t, labels: m.split(t, "samples", [labels(["system"], [(3,), (40,)])])[0],
    "keys to samples": lambda m, t, labels: t.keys_to_samples("k"),
    "keys to properties": lambda m, t, labels: t.keys_to_properties("k"),
    "components to properties": lambda m, t, labels: t.components_to_properties(t.component_names),
    "remove gradients": lambda m, t, labels: m.remove_gradients(t, ["strain"]),
    "drop blocks": lambda m, t, labels: m.drop_blocks(t, labels(["k"], [(1,)])),
}


@pytest.mark.parametrize(
    ("shape", "dtype", "settings", "chunks"),
    [
        ((3,), np.float64, {}, 1),
        ((2, 3), np.float32, {"shard-chunks": 2, "checksum": False}, None),
    ],
    ids=["(n, 3, p) float64, chunks of 1", "(n, 2, 3, p) float32 sharded, stored chunks"],
)
def test_operations_on_a_grown_store_equal_metatensor(tmp_path, shape, dtype, settings, chunks):
    """Read in the stored chunks of 2 rows, or in chunks of 1 row."""
    names = {f"metatensor_dask.{name}": value for name, value in settings.items()}
    with dask.config.set(names):
        joined = _grown(tmp_path / "grown.zarr", shape, dtype)
        stored = mtd.open_zarr(tmp_path / "grown.zarr", chunks=chunks)
        _same(stored, joined)
        for operation in OPERATIONS.values():
            _same(operation(mtd, stored, _mtd_labels), operation(mo, joined, _labels))
        weights = _weights(joined)
        rtol = 1e-5 if dtype == np.float32 else 1e-12
        _same(mtd.dot(stored, mtd.from_metatensor(weights)), mo.dot(joined, weights), rtol)
        assert mtd.equal(stored, mtd.from_metatensor(joined))
        assert_equal_to_metatensor(
            mtd.unique_metadata(stored, "samples", "system"),
            mo.unique_metadata(joined, "samples", "system"),
        )


def test_an_operation_written_then_appended_to_reads_in_other_chunks(tmp_path):
    joined = _grown(tmp_path / "grown.zarr", (3,), np.float64)
    product = mtd.multiply(mtd.open_zarr(tmp_path / "grown.zarr", chunks=3), 2.0)
    product.to_zarr(tmp_path / "product.zarr", chunks=2)
    more = _piece(np.random.default_rng(7), [3, 0, 4], 2, 0, (3,), np.float64)
    mtd.from_metatensor(more).to_zarr(
        tmp_path / "product.zarr", append_dim="samples", renumber=NEXT
    )
    squares = mtd.pow(mtd.from_metatensor(more), 2.0)
    squares.to_zarr(tmp_path / "product.zarr", append_dim="samples", renumber={"system": 1000})
    first = mo.multiply(joined, 2.0)
    expected = metatensor.join(
        [first, renumbered(more, _next_system([first])), renumbered(mo.pow(more, 2.0), 1000)],
        axis="samples",
        different_keys="union",
    )
    for chunks in (None, 1, 4):
        stored = mtd.open_zarr(tmp_path / "product.zarr", chunks=chunks)
        _same(stored, expected)
        _same(mtd.sum_over_samples(stored, "atom"), mo.sum_over_samples(expected, "atom"))
        _same(stored.keys_to_samples("k"), expected.keys_to_samples("k"))
