"""Blocks without properties grown by appends, and two errors of appends.

A block whose values have no properties (shape ``(n, 0)`` or ``(n, c, 0)``) holds no
bytes per row: the rows per chunk that an append gives it when it creates it follow the
rule of every block (at most 16 times its first rows), not one row per chunk, and its
gradients stay co-partitioned with its values when read. Sources of ``convert --append``
whose sample names are in another order are refused naming both orders and the
permutation; renumbering a key dimension is refused saying that key dimensions are
never renumbered, by ``to_zarr``, ``write_batches`` and ``convert``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.errors import MetatensorDaskError
from metatensor_dask.execution.cli import main
from metatensor_dask.io.zarr_plan import GROWTH
from metatensor_dask.testing import assert_equal_to_metatensor

#: Gradient rows of the samples, by their row in the block (cycling): none for some.
GRADIENT_ROWS = (1, 0, 2)


def _labels(names: list[str], rows: Any) -> metatensor.Labels:
    return metatensor.Labels(names, np.array(rows, dtype=np.int32).reshape(-1, len(names)))


def _no_properties(systems: range, components: bool) -> metatensor.TensorMap:
    """One block of two atoms per system of ``systems``, values of no properties (with a
    component of 3 entries when ``components``), and a ``positions`` gradient of
    :data:`GRADIENT_ROWS` rows per sample."""
    rows = [(s, a) for s in systems for a in range(2)]
    own = [_labels(["xyz"], [[0], [1], [2]])] if components else []
    shape = (len(rows), *(3 for _ in own), 0)
    properties = _labels(["p"], np.zeros((0, 1)))
    block = metatensor.TensorBlock(
        np.zeros(shape), _labels(["system", "atom"], rows), own, properties
    )
    gradient_rows = [
        (i, s, g) for i, (s, _) in enumerate(rows) for g in range(GRADIENT_ROWS[i % 3])
    ]
    samples = _labels(["sample", "system", "g"], gradient_rows)
    values = np.zeros((len(gradient_rows), 2, *shape[1:]))
    gradient = metatensor.TensorBlock(
        values, samples, [_labels(["d"], [[0], [1]]), *own], properties
    )
    block.add_gradient("positions", gradient)
    return metatensor.TensorMap(_labels(["k"], [[0]]), [block])


def _stored_rows(path: Path, array: str) -> int:
    """The rows per chunk of the stored ``array`` of the first block."""
    document = json.loads((path / "blocks" / "0" / array / "zarr.json").read_text())
    return document["chunk_grid"]["configuration"]["chunk_shape"][0]


def _assert_co_partitioned(block: Any) -> None:
    """Each gradient chunk of ``block`` (read lazily) holds the rows whose ``sample`` is
    in the values chunk of the same index."""
    bounds = np.cumsum((0, *block.values.chunks[0]))
    gradient = block.gradient("positions")
    sample = np.asarray(gradient.samples.column("sample"))
    expected = tuple(int(n) for n in np.diff(np.searchsorted(sample, bounds, side="left")))
    assert gradient.values.chunks[0] == expected


@pytest.mark.parametrize("components", [False, True], ids=["n-0", "n-c-0"])
def test_appends_give_a_block_without_properties_the_chunks_of_any_block(tmp_path, components):
    """An append creating such a block with 2 rows stored it in chunks of 2 rows, and
    each later append added one chunk file per array every 2 rows."""
    path = tmp_path / "grown.zarr"
    parts = [_no_properties(range(0, 1), components), _no_properties(range(1, 60), components)]
    with dask.config.set(scheduler="threads", num_workers=2):
        for part in parts:
            mtd.from_metatensor(part).to_zarr(path, append_dim="samples", chunks="1MiB")
    rows = GROWTH * 2
    assert _stored_rows(path, "values") == rows
    assert _stored_rows(path, "samples") == rows
    stored = mtd.open_zarr(path)
    block = stored.block(0)
    assert len(block.values.chunks[0]) == -(-120 // rows)
    _assert_co_partitioned(block)
    assert_equal_to_metatensor(
        stored, metatensor.join(parts, axis="samples", different_keys="union")
    )
    assert mtd.verify(path).ok


def test_a_plain_write_of_a_block_without_properties_is_one_chunk(tmp_path):
    """What an append extends in chunks of at most 16 times its rows, a plain write
    stores in one chunk, whatever the size asked for: rows of no bytes meet any."""
    path = tmp_path / "plain.zarr"
    tensor = _no_properties(range(0, 60), components=False)
    mtd.from_metatensor(tensor).to_zarr(path, chunks="1KiB")
    assert _stored_rows(path, "values") == 120
    block = mtd.open_zarr(path, chunks="1KiB").block(0)
    assert block.values.chunks[0] == (120,)
    _assert_co_partitioned(block)


class NoProperties:
    """Batches of blocks without properties, their systems numbered from 0."""

    def __call__(self, items: list[int]) -> metatensor.TensorMap:
        return _no_properties(range(len(items)), components=False)


def test_write_batches_of_blocks_without_properties(tmp_path):
    """The first batch (one item, 2 rows) gave the block chunks of 2 rows: 30 batches
    made 30 chunk files of each array."""
    path = tmp_path / "batches.zarr"
    with dask.config.set(scheduler="threads", num_workers=2):
        mtd.write_batches(NoProperties(), list(range(30)), path, quiet=True)
    assert _stored_rows(path, "values") == GROWTH * 2
    expected = [_no_properties(range(i, i + 1), components=False) for i in range(30)]
    stored = mtd.open_zarr(path)
    _assert_co_partitioned(stored.block(0))
    assert_equal_to_metatensor(
        stored, metatensor.join(expected, axis="samples", different_keys="union")
    )


def _system_map(order: list[str], systems: range) -> metatensor.TensorMap:
    """A block of two atoms per system of ``systems``, samples named in ``order``: the
    ``atom`` column holds the atom, any other the system."""
    pairs = [(s, a) for s in systems for a in range(2)]
    rows = [[a if name == "atom" else s for name in order] for s, a in pairs]
    values = np.arange(2 * len(rows), dtype=np.float64).reshape(-1, 2)
    block = metatensor.TensorBlock(values, _labels(order, rows), [], _labels(["p"], [[0], [1]]))
    return metatensor.TensorMap(_labels(["k"], [[0]]), [block])


@pytest.mark.parametrize(
    ("order", "remedy"),
    [
        (["atom", "system"], "metatensor.permute_dimensions(tensor, 'samples', [1, 0])"),
        (["structure", "atom"], "metatensor.rename_dimension"),
    ],
)
def test_convert_of_sources_with_other_sample_names(tmp_path, capsys, order, remedy):
    """metatensor's join refused sample names in another order with its text and stray
    punctuation, naming neither the names nor the files."""
    first, second = tmp_path / "first.mts", tmp_path / "second.mts"
    metatensor.save(str(first), _system_map(["system", "atom"], range(2)))
    metatensor.save(str(second), _system_map(order, range(2, 4)))
    out = tmp_path / "out.zarr"
    assert main(["convert", str(first), str(second), str(out), "--append", "--quiet"]) != 0
    error = capsys.readouterr().err
    assert f"{second} has the sample names {order}, {first} ['system', 'atom']" in error
    assert "nothing was written" in error
    assert remedy in error
    assert ".;" not in error
    assert not out.exists()


def _keyed_by_system(items: list[int]) -> metatensor.TensorMap:
    """A block per item, keyed by its ``system``, samples ``atom`` only."""
    blocks = [
        metatensor.TensorBlock(
            np.ones((2, 1)), _labels(["atom"], [[0], [1]]), [], _labels(["p"], [[0]])
        )
        for _ in items
    ]
    return metatensor.TensorMap(_labels(["system"], [[i] for i in items]), blocks)


KEY_DIMENSION = "it is a key dimension of"
NEVER = "key dimensions are never renumbered"
REMEDY = "keys_to_samples(tensor, 'system')"


def _assert_key_dimension_error(text: str) -> None:
    assert KEY_DIMENSION in text and NEVER in text and REMEDY in text, text
    assert "number the keys apart" in text and "not a sample dimension (['atom'])" in text


def test_to_zarr_renumbering_a_key_dimension(tmp_path):
    path = tmp_path / "keys.zarr"
    tensor = mtd.from_metatensor(_keyed_by_system([0]))
    with pytest.raises(MetatensorDaskError) as new:
        tensor.to_zarr(path, append_dim="samples", renumber={"system": "next"})
    _assert_key_dimension_error(str(new.value))
    assert not path.exists()
    tensor.to_zarr(path)
    with pytest.raises(MetatensorDaskError) as existing:
        mtd.from_metatensor(_keyed_by_system([1])).to_zarr(
            path, append_dim="samples", renumber={"system": 5}
        )
    _assert_key_dimension_error(str(existing.value))


def test_to_zarr_of_no_blocks_renumbering_a_key_dimension_of_the_store(tmp_path):
    """A tensor without blocks is checked against the store's samples and keys."""
    path = tmp_path / "keys.zarr"
    mtd.from_metatensor(_keyed_by_system([0])).to_zarr(path)
    empty = mtd.from_metatensor(_keyed_by_system([]))
    with pytest.raises(MetatensorDaskError) as found:
        empty.to_zarr(path, append_dim="samples", renumber={"system": "next"})
    _assert_key_dimension_error(str(found.value))
    assert f"the store {path}" in str(found.value)


def test_write_batches_renumbering_a_key_dimension(tmp_path):
    path = tmp_path / "keys.zarr"
    with pytest.raises(MetatensorDaskError) as found:
        mtd.write_batches(_keyed_by_system, [0, 1], path, renumber="system", quiet=True)
    _assert_key_dimension_error(str(found.value))


def test_convert_renumbering_a_key_dimension(tmp_path, capsys):
    source = tmp_path / "keys.mts"
    metatensor.save(str(source), _keyed_by_system([0, 1]))
    out = tmp_path / "out.zarr"
    argv = ["convert", str(source), str(source), str(out), "--append", "--renumber", "system"]
    assert main([*argv, "--quiet"]) != 0
    _assert_key_dimension_error(capsys.readouterr().err)
    assert not out.exists()


@pytest.mark.parametrize(
    ("order", "remedy"),
    [
        (["atom", "system"], "permute_dimensions(tensor, 'samples', [1, 0])"),
        (["structure", "atom"], "rename_dimension, append_dimension or remove_dimension"),
    ],
)
def test_an_append_of_other_sample_names_says_how_to_give_it_the_stored_ones(
    tmp_path, order, remedy
):
    """The refusal gave the remedy of other components or properties ("only samples can
    be appended"), which does not fit samples named otherwise; it names the stored order
    now, and the remedy it names gives an append equal to metatensor's join."""
    store = str(tmp_path / "s.zarr")
    first = _system_map(["system", "atom"], range(2))
    mtd.from_metatensor(first).to_zarr(store)
    other = _system_map(order, range(2, 4))
    with pytest.raises(MetatensorDaskError) as raised:
        mtd.from_metatensor(other).to_zarr(store, append_dim="samples")
    message = str(raised.value)
    assert f"has the samples {order}, the store ['system', 'atom']" in message
    assert remedy in message and "Only samples can be appended" not in message
    assert "nothing was written" in message
    assert_equal_to_metatensor(mtd.open_zarr(store).compute(), first)
    if order == ["atom", "system"]:
        fixed = metatensor.permute_dimensions(other, "samples", [1, 0])
        mtd.from_metatensor(fixed).to_zarr(store, append_dim="samples")
        joined = metatensor.join([first, fixed], axis="samples", different_keys="union")
        assert_equal_to_metatensor(mtd.open_zarr(store).compute(), joined)
