"""Format 4: a chunk file that is not the one the store lists is an error (swapped with
another of the same size, an older copy put back), and so is reading a store that was
overwritten since it was opened; appends, which rewrite the partial last chunk with its
rows unchanged, are not."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import dask
import metatensor
import numpy as np
import pytest
from older_formats import make_format_3

import metatensor_dask as mtd
from metatensor_dask.execution.cli import main
from metatensor_dask.testing import assert_equal_to_metatensor

CODECS = {
    "default": {},
    "zstd": {"metatensor_dask.compressor": "zstd"},
    # uncompressed: every full shard has the same index, so the same checksum
    "sharded": {"metatensor_dask.shard-chunks": 2},
    "sharded-zstd": {"metatensor_dask.shard-chunks": 2, "metatensor_dask.compressor": "zstd"},
}
TABLE = "chunk_crc32c"


def _tensor(
    seed: int, keys: tuple[int, ...] = (0, 1), rows: int = 16, start: int = 0
) -> metatensor.TensorMap:
    """Blocks of ``rows`` samples (systems from ``start``) and 2 properties, with a
    gradient of one row per sample and no components of its own: its values have the
    values' chunk shape."""
    rng = np.random.default_rng(seed)
    blocks = []
    for _ in keys:
        block = metatensor.TensorBlock(
            rng.random((rows, 2)),
            metatensor.Labels(["system"], np.arange(start, start + rows, dtype=np.int32)[:, None]),
            [],
            metatensor.Labels.range("p", 2),
        )
        block.add_gradient(
            "alpha",
            metatensor.TensorBlock(
                rng.random((rows, 2)),
                metatensor.Labels(["sample"], np.arange(rows, dtype=np.int32)[:, None]),
                [],
                block.properties,
            ),
        )
        blocks.append(block)
    return metatensor.TensorMap(metatensor.Labels(["k"], np.array(keys, np.int32)[:, None]), blocks)


def _write(path, tensor, codecs: str = "default", mode: str = "w-") -> None:
    with dask.config.set(CODECS[codecs]):
        mtd.from_metatensor(tensor).to_zarr(path, chunks=4, mode=mode)


def _chunk(path, array: str, index: int) -> Path:
    return Path(path) / array / f"c.{index}.0"


def _swap(first: Path, second: Path) -> None:
    a, b = first.read_bytes(), second.read_bytes()
    assert a != b
    first.write_bytes(b)
    second.write_bytes(a)


def _refused(path, match: str) -> None:
    """Every read path refuses the store: computing it, to_metatensor, verify (the
    function and the command line)."""
    with pytest.raises(mtd.DamagedStoreError, match=match):
        for block in mtd.open_zarr(path).blocks():
            block.values.compute()
            block.gradient("alpha").values.compute()
    with pytest.raises(mtd.DamagedStoreError, match=match):
        mtd.to_metatensor(mtd.open_zarr(path))
    problems = mtd.verify(path).problems
    assert any(re.search(match, problem) for problem in problems), problems
    assert main(["verify", str(path)]) != 0


NOT_LISTED = "is not the chunk the store lists: swapped with another, or an older copy put back"


@pytest.mark.parametrize("codecs", sorted(CODECS))
def test_chunks_swapped_within_an_array_are_refused(tmp_path, codecs):
    path = tmp_path / "t.zarr"
    tensor = _tensor(0)
    _write(path, tensor, codecs)
    assert_equal_to_metatensor(mtd.open_zarr(path), tensor)
    _swap(_chunk(path, "blocks/0/values", 0), _chunk(path, "blocks/0/values", 1))
    # (sharded: an inner chunk of the shard, which is what a reader reads)
    where = r"the chunk (\d of the shard )?'c\.[01]\.0'"
    _refused(path, rf"{where} of the array 'blocks/0/values' {NOT_LISTED}")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("blocks/0/values", "blocks/1/values"),
        ("blocks/0/values", "blocks/0/gradients/alpha/values"),
        ("blocks/1/gradients/alpha/values", "blocks/0/gradients/alpha/values"),
    ],
)
def test_chunks_swapped_across_arrays_of_the_same_chunk_shape_are_refused(tmp_path, first, second):
    path = tmp_path / "t.zarr"
    _write(path, _tensor(1))
    a, b = _chunk(path, first, 2), _chunk(path, second, 2)
    assert os.path.getsize(a) == os.path.getsize(b)  # both decode in either place
    _swap(a, b)
    _refused(path, NOT_LISTED)


@pytest.mark.parametrize("codecs", sorted(CODECS))
def test_an_older_chunk_put_back_after_an_overwrite_is_refused(tmp_path, codecs):
    path = tmp_path / "t.zarr"
    _write(path, _tensor(2), codecs)
    old = _chunk(path, "blocks/0/values", 0).read_bytes()
    _write(path, _tensor(3), codecs, mode="w")
    _chunk(path, "blocks/0/values", 0).write_bytes(old)
    where = r"the chunk (\d of the shard )?'c\.0\.0'"
    _refused(path, rf"{where} of the array 'blocks/0/values' {NOT_LISTED}")


@pytest.mark.parametrize("mode", ["w", "r+"])
@pytest.mark.parametrize("codecs", sorted(CODECS))
def test_a_tensor_opened_before_an_overwrite_refuses_to_compute(tmp_path, codecs, mode):
    path = tmp_path / "t.zarr"
    _write(path, _tensor(4), codecs)
    opened = mtd.open_zarr(path)
    _write(path, _tensor(5), codecs, mode=mode)
    with pytest.raises(mtd.MetatensorDaskError, match=r"overwritten .* since this tensor was"):
        opened.block(0).values.compute()
    with pytest.raises(mtd.MetatensorDaskError, match="open the store again"):
        mtd.to_metatensor(opened)
    assert_equal_to_metatensor(mtd.open_zarr(path), _tensor(5))  # opened again: the new one


def test_rewriting_the_same_values_keeps_an_opened_tensor_right(tmp_path):
    """mode='r+' gives the store a new id, but chunks that did not change are the ones
    the opened tensor lists: its values are right."""
    path = tmp_path / "t.zarr"
    _write(path, _tensor(6))
    opened = mtd.open_zarr(path)
    _write(path, _tensor(6), mode="r+")
    assert_equal_to_metatensor(opened, _tensor(6))


@pytest.mark.parametrize("codecs", sorted(CODECS))
def test_a_tensor_opened_before_appends_reads_its_rows(tmp_path, codecs):
    """Appends rewrite the partial last chunk (or shard) with its rows unchanged, and
    add blocks: a tensor opened before reads what it opened; the store, opened again,
    reads every row; verify passes."""
    path = tmp_path / "t.zarr"
    first = _tensor(7, rows=14)  # a partial last chunk (and shard)
    _write(path, first, codecs)
    opened = mtd.open_zarr(path)
    ids = json.loads((path / "zarr.json").read_text())["attributes"]["metatensor_dask"]
    with dask.config.set(CODECS[codecs]):
        for seed in (8, 9):
            appended = mtd.from_metatensor(_tensor(seed, keys=(0, 2), rows=5))
            appended.to_zarr(path, append_dim="samples", renumber={"system": "next"})
    root = json.loads((path / "zarr.json").read_text())["attributes"]["metatensor_dask"]
    assert root["store_id"] == ids["store_id"]  # appends keep the store's id
    assert_equal_to_metatensor(opened, first)
    assert mtd.verify(path).ok, mtd.verify(path).problems
    assert len(mtd.open_zarr(path).block(0).samples) == 24
    # a swap is still refused after appends
    _swap(_chunk(path, "blocks/0/values", 0), _chunk(path, "blocks/0/values", 1))
    problems = mtd.verify(path).problems
    assert any(NOT_LISTED in problem for problem in problems), problems


def test_an_interrupted_then_discarded_append_leaves_the_store_readable(tmp_path):
    """An append killed once it replaced a partial last chunk (its rows kept, new ones
    after them): readers accept that chunk while the append's record is there, and
    after discard_append, which lists it."""
    path = tmp_path / "t.zarr"
    first = _tensor(10, rows=14)
    _write(path, first)
    opened = mtd.open_zarr(path)
    appended = shutil.copytree(path, tmp_path / "appended.zarr")
    extra = mtd.from_metatensor(_tensor(11, keys=(0,), rows=1))
    extra.to_zarr(appended, append_dim="samples", renumber={"system": "next"})
    # the append killed right after it replaced the partial last chunk
    (path / ".progress").mkdir()
    (path / ".progress/append.json").write_text(json.dumps({"token": "killed"}))
    for array in ("blocks/0/values", "blocks/0/gradients/alpha/values"):
        shutil.copyfile(_chunk(appended, array, 3), _chunk(path, array, 3))
    assert_equal_to_metatensor(opened, first)
    assert_equal_to_metatensor(mtd.open_zarr(path), first)
    assert not any(NOT_LISTED in problem for problem in mtd.verify(path).problems)
    assert mtd.discard_append(path) is True
    assert_equal_to_metatensor(opened, first)
    assert_equal_to_metatensor(mtd.open_zarr(path), first)
    assert mtd.verify(path).ok, mtd.verify(path).problems


def test_write_batches_stores_list_their_chunks(tmp_path):
    path = tmp_path / "t.zarr"
    parts = [_tensor(seed, rows=6, start=6 * seed) for seed in (12, 13, 14)]
    mtd.write_batches(
        lambda items: parts[items[0]], range(3), path, renumber=None, chunks=4, quiet=True
    )
    assert mtd.verify(path).ok, mtd.verify(path).problems
    document = json.loads((path / "blocks/0/values/zarr.json").read_text())
    assert len(document["attributes"][TABLE]) == len(os.listdir(path / "blocks/0/values")) - 1
    _swap(_chunk(path, "blocks/0/values", 0), _chunk(path, "blocks/0/values", 1))
    assert any(NOT_LISTED in problem for problem in mtd.verify(path).problems)


def test_format_3_stores_read_and_stay_format_3(tmp_path):
    path = tmp_path / "t.zarr"
    tensor = _tensor(15, rows=14)
    _write(path, tensor)
    make_format_3(path)
    assert_equal_to_metatensor(mtd.open_zarr(path), tensor)
    assert mtd.verify(path).ok
    # appends and writes of some blocks keep the format: no chunk tables
    appended = mtd.from_metatensor(_tensor(16, keys=(0, 3), rows=5))
    appended.to_zarr(path, append_dim="samples", renumber={"system": "next"})
    mtd.from_metatensor(_tensor(17, keys=(4,))).to_zarr(path, mode="a")
    root = json.loads((path / "zarr.json").read_text())
    assert root["attributes"]["metatensor_dask"]["format"] == 3
    assert "store_id" not in root["attributes"]["metatensor_dask"]
    assert not any(
        TABLE in document.get("attributes", {})
        for document in root["consolidated_metadata"]["metadata"].values()
    )
    assert mtd.verify(path).ok, mtd.verify(path).problems
    assert len(mtd.open_zarr(path).block(0).samples) == 19
    # a whole write makes it a store of the current format
    _write(path, tensor, mode="w")
    assert (
        json.loads((path / "zarr.json").read_text())["attributes"]["metatensor_dask"]["format"] == 5
    )


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda ours, values: ours.pop("store_id"), "no valid 'metatensor_dask.store_id'"),
        (lambda ours, values: values.pop(TABLE), f"'blocks/0/values' has no valid '{TABLE}'"),
        (lambda ours, values: values[TABLE].pop(), "of 3 entries for 4 chunks"),
    ],
)
def test_format_4_stores_without_their_tables_are_refused(tmp_path, change, match):
    path = tmp_path / "t.zarr"
    _write(path, _tensor(18))
    root = json.loads((path / "zarr.json").read_text())
    values = root["consolidated_metadata"]["metadata"]["blocks/0/values"]["attributes"]
    change(root["attributes"]["metatensor_dask"], values)
    (path / "zarr.json").write_text(json.dumps(root))
    with pytest.raises(mtd.DamagedStoreError, match=match):
        mtd.open_zarr(path)
    assert not mtd.verify(path).ok


def test_a_copy_of_a_store_reads(tmp_path):
    """The tables list chunk files by their content, not their location."""
    path = tmp_path / "t.zarr"
    _write(path, _tensor(19))
    copy = shutil.copytree(path, tmp_path / "copy.zarr")
    assert_equal_to_metatensor(mtd.open_zarr(copy), _tensor(19))


@pytest.mark.parametrize("codecs", sorted(CODECS))
def test_an_append_refuses_a_partial_chunk_the_store_does_not_list(tmp_path, codecs):
    """An append merges the stored rows of the partial last chunk with its own: from a
    chunk put back, they would be listed as the store's from then on."""
    path = tmp_path / "t.zarr"
    _write(path, _tensor(20, rows=14), codecs)
    last = 1 if codecs.startswith("sharded") else 3  # the file of rows 12 and 13
    old = _chunk(path, "blocks/0/values", last).read_bytes()
    _write(path, _tensor(21, rows=14), codecs, mode="w")
    _chunk(path, "blocks/0/values", last).write_bytes(old)
    appended = mtd.from_metatensor(_tensor(22, keys=(0,), rows=1))
    with dask.config.set(CODECS[codecs]), pytest.raises(mtd.DamagedStoreError, match=NOT_LISTED):
        appended.to_zarr(path, append_dim="samples", renumber={"system": "next"})


def test_inner_chunks_swapped_inside_a_shard_are_refused(tmp_path):
    path = tmp_path / "t.zarr"
    _write(path, _tensor(23), "sharded")
    shard = _chunk(path, "blocks/0/values", 0)
    raw = shard.read_bytes()
    index = np.frombuffer(raw[-36:-4], dtype="<u8").reshape(2, 2)
    (a, size), (b, other) = index.tolist()
    assert size == other
    swapped = bytearray(raw)
    swapped[a : a + size], swapped[b : b + size] = raw[b : b + size], raw[a : a + size]
    shard.write_bytes(bytes(swapped))
    _refused(
        path, rf"the chunk [01] of the shard 'c\.0\.0' of the array 'blocks/0/values' {NOT_LISTED}"
    )


def test_sample_labels_read_after_an_overwrite_are_refused_as_such(tmp_path):
    """Sample labels are read on first use: from a store overwritten since, with other
    samples, they do not match the digest opened, because of the overwrite."""
    path = tmp_path / "t.zarr"
    _write(path, _tensor(24))
    opened = mtd.open_zarr(path)
    _write(path, _tensor(24, start=100), mode="w")
    with pytest.raises(
        mtd.MetatensorDaskError, match=r"overwritten .*the (Labels|array) 'blocks/0/samples'"
    ):
        opened.block(0).samples.values  # noqa: B018
