"""Round trips through Zarr, the stored layout, chunking and laziness."""

from __future__ import annotations

import json
import os

import dask
import metatensor
import numpy as np
import pytest
import zarr
from store_support import CountingStore
from zarr.storage import LocalStore
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask._partition import gradient_row_chunks, row_pointer
from metatensor_dask.datasets import tutorial_file
from metatensor_dask.io.zarr_samples import chained_digest
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes


@pytest.fixture(scope="module")
def generated() -> metatensor.TensorMap:
    return make_metatensor(seed=3)


@pytest.mark.parametrize("name", ["spherical-expansion.npz", "radial-spectrum.npz"])
@pytest.mark.parametrize("chunks", [None, 1, "1KiB"])
def test_tutorial_data_round_trip(tmp_path, name, chunks):
    theirs = metatensor.load(tutorial_file(name))
    mtd.from_metatensor(theirs).to_zarr(tmp_path / "t.zarr", chunks=chunks)
    for read_chunks in [None, "2KiB"]:
        assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "t.zarr", chunks=read_chunks), theirs)


@pytest.mark.parametrize(
    ("dtype", "chunks"),
    [
        (np.float64, None),
        (np.float64, 1),
        (np.float64, 5),
        (np.float64, "2KiB"),
        (np.float32, 5),
        (np.int32, 1),
        (np.int64, "2KiB"),
    ],
)
def test_generated_round_trip(tmp_path, dtype, chunks):
    theirs = make_metatensor(seed=1, dtype=dtype)
    mtd.from_metatensor(theirs).to_zarr(tmp_path / "t.zarr", chunks=chunks)
    for read_chunks in [None, 3, "1KiB"]:
        ours = mtd.open_zarr(tmp_path / "t.zarr", chunks=read_chunks)
        assert ours.dtype == np.dtype(dtype)
        assert_equal_to_metatensor(ours, theirs)


def test_round_trip_from_chunked_dask_arrays(tmp_path, generated):
    # irregular dask chunks are aligned to the stored grid before writing
    ours = mtd.from_metatensor(generated)
    block = ours.block(0)
    assert block.values.shape[0] == 23
    irregular = ours._with_arrays([a.rechunk({0: _irregular(a.shape[0])}) for a in ours._arrays()])
    assert irregular.block(0).values.chunks[0] != (23,)
    irregular.to_zarr(tmp_path / "t.zarr", chunks=4)
    stored = zarr.open_array(tmp_path / "t.zarr", path="blocks/0/values", mode="r")
    assert stored.chunks[0] == 4
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "t.zarr"), generated)
    # computed tensors (numpy arrays) are written too
    ours.compute().to_zarr(tmp_path / "computed.zarr", chunks=6)
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "computed.zarr"), generated)


def _irregular(n: int) -> tuple[int, ...]:
    sizes, left, step = [], n, 1
    while left:
        sizes.append(min(step, left))
        left -= sizes[-1]
        step = step % 5 + 1
    return tuple(sizes) if sizes else (0,)


def test_gradients_are_co_partitioned(tmp_path, generated):
    mtd.from_metatensor(generated).to_zarr(tmp_path / "t.zarr", chunks=3)
    for chunks in [None, 5, "1KiB"]:
        block = mtd.open_zarr(tmp_path / "t.zarr", chunks=chunks).block(0)
        for parent, gradient in [
            (block, block.gradient("positions")),
            (block.gradient("positions"), block.gradient("positions").gradient("cell")),
        ]:
            rows = parent.values.chunks[0]
            pointer = row_pointer(gradient.samples.column("sample"), len(parent.samples))
            assert gradient.values.chunks[0] == gradient_row_chunks(pointer, rows)
            np.testing.assert_array_equal(gradient._row_pointer, pointer)
            # gradient chunk i only refers to the value rows of values chunk i
            bounds = np.cumsum((0, *rows))
            start = 0
            for i, size in enumerate(gradient.values.chunks[0]):
                column = gradient.samples.column("sample")[start : start + size]
                assert np.all((column >= bounds[i]) & (column < bounds[i + 1]))
                start += size
        if chunks == 5:
            assert block.values.chunks[0] == (5, 5, 5, 5, 3)
        if chunks is None:
            assert block.values.chunks[0] == (3,) * 7 + (2,)


def test_stored_chunk_grids_are_regular(tmp_path, generated):
    mtd.from_metatensor(generated).to_zarr(tmp_path / "t.zarr", chunks=4)
    group = zarr.open_group(tmp_path / "t.zarr", mode="r")
    values = group["blocks/0/values"]
    gradient = group["blocks/0/gradients/positions/values"]
    # as many gradient chunks as value chunks
    n_chunks = -(-values.shape[0] // values.chunks[0])
    assert -(-gradient.shape[0] // gradient.chunks[0]) <= n_chunks
    assert gradient.chunks[0] == -(-gradient.shape[0] // n_chunks)
    np.testing.assert_array_equal(gradient[:], generated.block(0).gradient("positions").values)


def test_layout(tmp_path, generated):
    mtd.from_metatensor(generated).to_zarr(tmp_path / "t.zarr")
    group = zarr.open_group(tmp_path / "t.zarr", mode="r")
    ours = group.attrs["metatensor_dask"]
    assert ours == {
        "format": 5,
        "complete": True,
        "store_id": ours["store_id"],
        "dtype": "float64",
        "gradients": ["positions", "positions/cell", "strain"],
        "token": ours["token"],
    }
    assert group.attrs["info"] == {"creator": "zarr tests"}
    assert group["keys"].attrs["names"] == ["center_type", "neighbor_type"]
    np.testing.assert_array_equal(group["keys"][:], generated.keys.values)
    block = generated.block(0)
    values = group["blocks/0/values"]
    assert values.metadata.dimension_names == ("samples", "o3_mu", "properties")
    np.testing.assert_array_equal(values[:], block.values)
    samples = group["blocks/0/samples"]
    assert samples.dtype == np.int32 and samples.attrs["names"] == ["system", "atom"]
    assert samples.chunks[0] == values.chunks[0]
    assert samples.attrs["digest"] == chained_digest(["system", "atom"], block.samples.values)
    # what an append extends without reading the stored samples (format 3)
    assert samples.attrs["max"] == [int(v) for v in block.samples.values[-1]]
    assert samples.attrs["column_max"] == [int(v) for v in block.samples.values.max(axis=0)]
    assert samples.attrs["chain"]["rows"] == 0  # fewer rows than one chained block
    np.testing.assert_array_equal(group["blocks/0/components/0"][:], block.components[0].values)
    np.testing.assert_array_equal(group["blocks/0/properties"][:], block.properties.values)
    positions = block.gradient("positions")
    prefix = "blocks/0/gradients/positions"
    assert f"{prefix}/properties" not in group
    np.testing.assert_array_equal(group[f"{prefix}/values"][:], positions.values)
    np.testing.assert_array_equal(
        group[f"{prefix}/components/0"][:], positions.components[0].values
    )
    pointer = group[f"{prefix}/row_pointer"][:]
    assert pointer.dtype == np.int64 and pointer.shape == (len(block.samples) + 1,)
    assert group[f"{prefix}/row_pointer"].chunks == values.chunks[:1]  # format 3
    np.testing.assert_array_equal(
        pointer,
        np.searchsorted(positions.samples.column("sample"), np.arange(len(block.samples) + 1)),
    )
    nested = group[f"{prefix}/gradients/cell/values"]
    np.testing.assert_array_equal(nested[:], positions.gradient("cell").values)
    assert group[f"{prefix}/gradients/cell/row_pointer"].shape == (len(positions.samples) + 1,)
    assert not any(key.startswith(".progress") for key in os.listdir(tmp_path / "t.zarr"))


def test_default_codecs_and_settings(tmp_path, generated):
    tensor = mtd.from_metatensor(generated)
    tensor.to_zarr(tmp_path / "default.zarr")
    codecs = zarr.open_array(tmp_path / "default.zarr", path="blocks/0/values").metadata.codecs
    assert [c.to_dict()["name"] for c in codecs] == ["bytes", "crc32c"]

    settings = {
        "metatensor_dask.compressor": "zstd",
        "metatensor_dask.checksum": False,
        "metatensor_dask.shard-chunks": 2,
    }
    with dask.config.set(settings):
        tensor.to_zarr(tmp_path / "custom.zarr", chunks=3)
    array = zarr.open_array(tmp_path / "custom.zarr", path="blocks/0/values")
    assert array.shards == (6, 3, 4) and array.chunks == (3, 3, 4)
    inner = array.metadata.codecs[0].to_dict()["configuration"]["codecs"]
    assert [c["name"] for c in inner] == ["bytes", "zstd"]
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "custom.zarr"), generated)
    # reading follows the inner chunks, gradients stay co-partitioned
    block = mtd.open_zarr(tmp_path / "custom.zarr").block(0)
    assert block.values.chunks[0][0] == 3

    with dask.config.set({"metatensor_dask.compressor": 12}):
        with pytest.raises(mtd.MetatensorDaskError, match=r"metatensor_dask.compressor"):
            tensor.to_zarr(tmp_path / "bad.zarr")
    with dask.config.set({"metatensor_dask.shard-chunks": 0}):
        with pytest.raises(mtd.MetatensorDaskError, match="shard-chunks"):
            tensor.to_zarr(tmp_path / "bad2.zarr")


def test_size_targets_apply_to_the_largest_array(tmp_path):
    # positions gradients have ~2 rows per sample of 3x more data: they set the size
    theirs = make_metatensor(seed=2, n_samples=(200,), n_properties=(8,), nested=False)
    tensor = mtd.from_metatensor(theirs)
    target = 8 * 1024
    tensor.to_zarr(tmp_path / "t.zarr", chunks="8KiB")
    block = mtd.open_zarr(tmp_path / "t.zarr").block(0)
    largest = max(
        max(c * np.prod(a.shape[1:]) * a.dtype.itemsize for c in a.chunks[0])
        for a in [block.values, block.gradient("positions").values]
    )
    assert largest <= target * 1.5
    assert len(block.values.chunks[0]) > 4
    # the same target when opening
    opened = mtd.open_zarr(tmp_path / "t.zarr", chunks="4KiB").block(0)
    assert len(opened.values.chunks[0]) > len(block.values.chunks[0])
    with dask.config.set({"metatensor_dask.chunk-size": "4KiB"}):
        auto = mtd.open_zarr(tmp_path / "t.zarr", chunks="auto").block(0)
    assert auto.values.chunks == opened.values.chunks


@pytest.mark.parametrize(
    ("chunks", "error"),
    [
        (0, mtd.MetatensorDaskError),
        (-2, mtd.MetatensorDaskError),
        ("lots", mtd.MetatensorDaskError),
        (1.5, TypeError),
        (True, TypeError),
    ],
)
def test_invalid_chunks(tmp_path, generated, chunks, error):
    with pytest.raises(error, match="`chunks`"):
        mtd.from_metatensor(generated).to_zarr(tmp_path / "t.zarr", chunks=chunks)


def test_single_chunk_larger_than_the_target_is_split(tmp_path):
    theirs = make_metatensor(seed=2, n_samples=(60,), n_properties=(8,), nested=False)
    with dask.config.set({"metatensor_dask.chunk-size": "4KiB"}):
        mtd.from_metatensor(theirs).to_zarr(tmp_path / "t.zarr")
    assert len(mtd.open_zarr(tmp_path / "t.zarr").block(0).values.chunks[0]) > 1
    mtd.from_metatensor(theirs).to_zarr(tmp_path / "t2.zarr")
    assert mtd.open_zarr(tmp_path / "t2.zarr").block(0).values.chunks[0] == (60,)


def _data_reads(reads: list[str]) -> list[str]:
    return [k for k in reads if "/values/" in k or "/samples/" in k]


def test_open_and_print_read_no_values_and_no_samples(tmp_path, generated):
    mtd.from_metatensor(generated).to_zarr(tmp_path / "t.zarr", chunks=4)
    store = CountingStore(LocalStore(tmp_path / "t.zarr", read_only=True))
    with raise_if_dask_computes():
        tensor = mtd.open_zarr(store)
        text = str(tensor) + repr(tensor) + tensor._repr_html_()
        for block in tensor:
            text += str(block) + repr(block) + block._repr_html_()
            for _, gradient in block.gradients():
                text += str(gradient)
    assert "TensorMap with 3 blocks" in text
    assert store.reads and _data_reads(store.reads) == []
    # metadata comes in one read: no per-array zarr.json
    assert [k for k in store.reads if k.endswith("zarr.json")] == ["zarr.json"]
    block = tensor.block(0)
    assert not block.samples.is_loaded
    assert len(block.samples) == 23
    np.testing.assert_array_equal(block.samples.values, generated.block(0).samples.values)
    assert any(k.startswith("blocks/0/samples/") for k in store.reads)
    assert not any("/values/" in k for k in store.reads)


def test_identical_small_labels_are_read_once(tmp_path):
    theirs = make_metatensor(seed=1, n_samples=(3, 4, 5), n_properties=(2, 2, 2), nested=False)
    blocks = [b.copy() for b in theirs.blocks()]
    for block in blocks:  # the same properties everywhere
        assert block.properties.names == ["n"]
    same = metatensor.TensorMap(
        theirs.keys,
        [
            metatensor.TensorBlock(b.values, b.samples, b.components, blocks[0].properties)
            for b in blocks
        ],
    )
    mtd.from_metatensor(same).to_zarr(tmp_path / "t.zarr")
    store = CountingStore(LocalStore(tmp_path / "t.zarr", read_only=True))
    tensor = mtd.open_zarr(store)
    assert len([k for k in store.reads if "/properties/" in k]) == 1
    assert len([k for k in store.reads if "/components/" in k]) == 1
    assert_equal_to_metatensor(tensor, same)


def test_sample_digests_compare_without_loading(tmp_path, generated):
    tensor = mtd.from_metatensor(generated)
    tensor.to_zarr(tmp_path / "a.zarr")
    tensor.to_zarr(tmp_path / "b.zarr", chunks=2)
    a = mtd.open_zarr(tmp_path / "a.zarr").block(0)
    b = mtd.open_zarr(tmp_path / "b.zarr").block(0)
    assert a.samples == b.samples
    assert not a.samples.is_loaded and not b.samples.is_loaded
    # stored sample digests are chained (format 3): a function of names and entries only
    samples = tensor.block(0).samples
    assert a.samples.digest() == chained_digest(samples.names, samples.values)
    # different content: different digests, and equality loads and compares
    c = mtd.open_zarr(tmp_path / "a.zarr").block(2)
    assert c.samples != a.samples


def test_open_builds_dask_arrays_with_deterministic_names(tmp_path, generated):
    mtd.from_metatensor(generated).to_zarr(tmp_path / "t.zarr")
    first = mtd.open_zarr(tmp_path / "t.zarr")
    second = mtd.open_zarr(tmp_path / "t.zarr")
    assert first.block(0).values.name == second.block(0).values.name
    assert mtd.open_zarr(tmp_path / "t.zarr", chunks=2).block(0).values.name != (
        first.block(0).values.name
    )
    assert dask.base.tokenize(first) == dask.base.tokenize(second)


def test_consolidated_metadata_is_readable_by_zarr(tmp_path, generated):
    mtd.from_metatensor(generated).to_zarr(tmp_path / "t.zarr")
    with open(tmp_path / "t.zarr" / "zarr.json") as file:
        root = json.load(file)
    assert "blocks/1/gradients/strain/values" in root["consolidated_metadata"]["metadata"]
    group = zarr.open_consolidated(tmp_path / "t.zarr")
    assert group["blocks/1/values"].shape == (0, 3, 3)


def test_plain_chunks_match_zarr(tmp_path):
    from metatensor_dask.io.zarr_codecs import decode_chunks, encode_chunks, small_template
    from metatensor_dask.io.zarr_layout import array_document

    values = np.arange(14, dtype=np.int32).reshape(7, 2) - 3
    document = array_document(small_template(np.int32, 2), (7, 2), 3, None, {})
    array = zarr.create_array(
        tmp_path / "z.zarr",
        shape=(7, 2),
        dtype=np.int32,
        chunks=(3, 2),
        compressors=[{"name": "crc32c", "configuration": {}}],
        filters=None,
        chunk_key_encoding=document["chunk_key_encoding"],
    )
    array[:] = values
    # the same bytes as zarr writes, and zarr's chunks decode here
    encoded = encode_chunks(values, document)
    keys = sorted(encoded)
    assert keys == ["c.0.0", "c.1.0", "c.2.0"]
    for key in keys:
        assert (tmp_path / "z.zarr" / key).read_bytes() == encoded[key]
    raw = [(tmp_path / "z.zarr" / key).read_bytes() for key in keys]
    np.testing.assert_array_equal(decode_chunks(raw, document, "z", "s"), values)
    # every chunk is stored, all-zero ones too: a missing chunk is damage
    with pytest.raises(mtd.DamagedStoreError, match=r"chunk 'c\.0\.0' of the array 'z' is missing"):
        decode_chunks([None, *raw[1:]], document, "z", "s")
    with pytest.raises(mtd.DamagedStoreError, match=r"checksum of the chunk 'c\.0\.0'"):
        decode_chunks([raw[0][:-1] + b"\0", *raw[1:]], document, "z", "s")


def test_mts_conversion_both_ways(tmp_path, generated):
    metatensor.save(str(tmp_path / "t.mts"), generated)
    mtd.load(str(tmp_path / "t.mts")).to_zarr(tmp_path / "t.zarr", chunks=4)
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "t.zarr"), generated)
    mtd.save(str(tmp_path / "back.mts"), mtd.open_zarr(tmp_path / "t.zarr", chunks=3))
    back = metatensor.load(str(tmp_path / "back.mts"))
    assert metatensor.equal(back, generated)
