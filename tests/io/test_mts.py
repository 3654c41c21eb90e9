"""metatensor files: lazy loading, streamed saving, parity with metatensor-core."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import tempfile
import zipfile
from pathlib import Path

import dask
import dask.array as da
import metatensor
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import metatensor_dask as mtd
from metatensor_dask._partition import gradient_row_chunks, row_pointer
from metatensor_dask.datasets import TUTORIAL_FILES as TUTORIAL_NAMES
from metatensor_dask.datasets import tutorial_file
from metatensor_dask.io import _zip
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes, strategies

TUTORIAL_FILES = [Path(tutorial_file(name)) for name in TUTORIAL_NAMES]


# -- generated tensors (metatensor-core objects) ------------------------------------------


def _random_values(rng: np.random.Generator, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    if dtype is bool:
        return rng.random(shape) > 0.5
    if np.issubdtype(dtype, np.integer):
        return rng.integers(-1000, 1000, size=shape).astype(dtype)
    return rng.normal(size=shape).astype(dtype)


def _gradient(
    rng: np.random.Generator,
    n_parent_rows: int,
    extra_components: list[metatensor.Labels],
    components: list[metatensor.Labels],
    properties: metatensor.Labels,
    dtype: type,
) -> metatensor.TensorBlock:
    """A gradient with 0 to 3 rows per parent row, grouped by ``"sample"``."""
    rows = [(s, a) for s in range(n_parent_rows) for a in range(rng.integers(0, 4))]
    samples = metatensor.Labels(["sample", "atom"], np.array(rows, dtype=np.int32).reshape(-1, 2))
    all_components = extra_components + components
    shape = (len(samples), *(len(c) for c in all_components), len(properties))
    return metatensor.TensorBlock(
        _random_values(rng, shape, dtype), samples, all_components, properties
    )


def _block(
    rng: np.random.Generator,
    n_samples: int,
    n_properties: int,
    n_components: int,
    dtype: type,
    nested: bool,
) -> metatensor.TensorBlock:
    samples = metatensor.Labels(
        ["system", "atom"],
        np.array([[i // 2, i % 2] for i in range(n_samples)], dtype=np.int32).reshape(-1, 2),
    )
    components = [metatensor.Labels.range(f"c{j}", 2 + j) for j in range(n_components)]
    properties = metatensor.Labels.range("n", n_properties)
    shape = (n_samples, *(len(c) for c in components), n_properties)
    block = metatensor.TensorBlock(
        _random_values(rng, shape, dtype), samples, components, properties
    )
    xyz = [metatensor.Labels.range("xyz", 3)]
    positions = _gradient(rng, n_samples, xyz, components, properties, dtype)
    if nested:
        strain = [metatensor.Labels.range("xyz_2", 3), metatensor.Labels.range("xyz_1", 3)]
        nested_gradient = _gradient(
            rng, len(positions.samples), strain, positions.components, properties, dtype
        )
        positions.add_gradient("strain", nested_gradient)
    block.add_gradient("positions", positions)
    cell = metatensor.TensorBlock(
        _random_values(rng, (n_samples, 3, *shape[1:]), dtype),
        metatensor.Labels.range("sample", n_samples),
        [metatensor.Labels.range("abc", 3), *components],
        properties,
    )
    block.add_gradient("cell", cell)
    return block


def make_tensor(
    dtype: type = np.float64,
    nested: bool = True,
    info: bool = True,
    n_components: int = 1,
    seed: int = 0,
) -> metatensor.TensorMap:
    """Several blocks, one of them empty (0 samples) and one with 0 properties."""
    rng = np.random.default_rng(seed)
    sizes = [(5, 4), (0, 3), (3, 0), (8, 2)]
    blocks = [_block(rng, n, p, n_components, dtype, nested) for n, p in sizes]
    keys = metatensor.Labels(["key"], np.arange(len(blocks), dtype=np.int32)[:, None])
    tensor = metatensor.TensorMap(keys, blocks)
    if info:
        tensor.set_info("creator", "test_mts")
        tensor.set_info("a unicode value", "é—✓")
    return tensor


DTYPES = [np.float64, np.float32, np.int32, bool]


# -- loading ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", TUTORIAL_FILES, ids=lambda p: p.stem)
def test_tutorial_files_load_as_metatensor_does(path):
    assert_equal_to_metatensor(mtd.load(path), metatensor.load(path))


@pytest.mark.parametrize("path", TUTORIAL_FILES, ids=lambda p: p.stem)
def test_loading_and_printing_read_no_values(path):
    with raise_if_dask_computes():
        tensor = mtd.load(path)
        str(tensor)
        repr(tensor)
        for block in tensor:
            str(block)
            repr(block)
            str(block.gradient("positions"))
    assert all(isinstance(block.values, da.Array) for block in tensor)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_files_written_by_metatensor_load_equal(tmp_path, dtype):
    expected = make_tensor(dtype)
    metatensor.save(tmp_path / "theirs.mts", expected)
    loaded = mtd.load(tmp_path / "theirs.mts")
    assert_equal_to_metatensor(loaded, expected)
    assert loaded.block(0).gradient("positions").gradient("strain").values.dtype == np.dtype(dtype)


def test_load_block_and_load_labels_as_metatensor(tmp_path):
    block = make_tensor().block(3)
    metatensor.save(tmp_path / "block.mts", block)
    assert_equal_to_metatensor(mtd.load_block(tmp_path / "block.mts"), block)
    keys = metatensor.Labels(["a", "b"], np.array([[0, 1], [2, -3]], dtype=np.int32))
    metatensor.save(tmp_path / "keys.mts", keys)
    assert_equal_to_metatensor(mtd.load_labels(tmp_path / "keys.mts"), keys)


def test_files_written_with_numpy_load_equal(tmp_path):
    # metatensor's use_numpy writer goes through np.savez: numpy's headers and zip
    expected = make_tensor(bool)
    metatensor.save(tmp_path / "numpy.npz", expected, use_numpy=True)
    assert_equal_to_metatensor(mtd.load(tmp_path / "numpy.npz"), expected)


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def _write_members(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _npy(array: np.ndarray, **kwargs) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=True, **kwargs)
    return buffer.getvalue()


def _load_npy(data: bytes) -> np.ndarray:
    return np.lib.format.read_array(io.BytesIO(data))


def _rewrite(path: Path, transform) -> dict[str, bytes]:
    members = {}
    for name, data in _members(path).items():
        members[name] = _npy(transform(name, _load_npy(data))) if name.endswith(".npy") else data
    return members


def big_endian(name, array):
    """``array`` (a member named ``name``) stored big-endian, for :func:`_rewrite`."""
    if array.dtype.names:
        return array.astype([(n, ">i4") for n in array.dtype.names])
    return array.astype(array.dtype.newbyteorder(">"))


def test_big_endian_files_load(tmp_path):
    expected = make_tensor()
    metatensor.save(tmp_path / "little.mts", expected)
    _write_members(tmp_path / "big.mts", _rewrite(tmp_path / "little.mts", big_endian))
    loaded = mtd.load(tmp_path / "big.mts", chunks=2)
    assert loaded.block(0).values.dtype == np.dtype("=f8")
    assert_equal_to_metatensor(loaded, expected)
    assert_equal_to_metatensor(loaded, metatensor.load(tmp_path / "big.mts"))


def test_compressed_and_newer_npy_versions_load(tmp_path):
    expected = make_tensor(np.float32)
    metatensor.save(tmp_path / "stored.mts", expected)
    members = _members(tmp_path / "stored.mts")
    values = _load_npy(members["blocks/0/values.npy"])
    members["blocks/0/values.npy"] = _npy(values, version=(3, 0))
    members["blocks/3/values.npy"] = _npy(_load_npy(members["blocks/3/values.npy"]), version=(2, 0))
    _write_members(tmp_path / "deflated.mts", members, zipfile.ZIP_DEFLATED)
    loaded = mtd.load(tmp_path / "deflated.mts", chunks=3)
    assert loaded.block(3).values.chunks[0] == (3, 3, 2)
    assert_equal_to_metatensor(loaded, expected)


def test_gradient_rows_not_grouped_by_sample(tmp_path):
    block = metatensor.TensorBlock(
        np.arange(12.0).reshape(4, 3),
        metatensor.Labels.range("s", 4),
        [],
        metatensor.Labels.range("p", 3),
    )
    order = [3, 0, 2, 1, 0, 3]
    gradient = metatensor.TensorBlock(
        np.arange(18.0).reshape(6, 3),
        metatensor.Labels(
            ["sample", "i"], np.array([[s, i] for i, s in enumerate(order)], dtype=np.int32)
        ),
        [],
        metatensor.Labels.range("p", 3),
    )
    block.add_gradient("g", gradient)
    metatensor.save(tmp_path / "block.mts", block)
    loaded = mtd.load_block(tmp_path / "block.mts", chunks="48B")
    # 48 bytes: two rows of values per chunk; the gradient is chunked by size on its own
    assert loaded.values.chunks[0] == (2, 2)
    assert loaded.gradient("g").values.chunks[0] == (2, 2, 2)
    assert_equal_to_metatensor(loaded, block)


# -- chunking -----------------------------------------------------------------------------


@pytest.mark.parametrize("chunks", [None, 1, 3, "1KiB", "300B", "1B"])
def test_every_chunking_gives_the_same_tensor(tmp_path, chunks):
    expected = make_tensor()
    metatensor.save(tmp_path / "data.mts", expected)
    loaded = mtd.load(tmp_path / "data.mts", chunks=chunks)
    assert_equal_to_metatensor(loaded, expected)


def _check_co_partitioned(block, target: int | None, top_rows=None) -> None:
    """Gradient chunk *i* holds the rows of values chunk *i*; every array's chunk *i*
    meets ``target`` unless the top-level values chunk *i* is a single row."""
    values = block.values
    top_rows = values.chunks[0] if top_rows is None else top_rows
    for _, gradient in block.gradients():
        pointer = row_pointer(gradient.samples.column("sample"), len(block))
        assert gradient.values.chunks[0] == gradient_row_chunks(pointer, values.chunks[0])
        _check_co_partitioned(gradient, target, top_rows)
    if target is not None:
        row_bytes = values.nbytes // max(values.shape[0], 1)
        for top, rows in zip(top_rows, values.chunks[0], strict=True):
            assert top <= 1 or rows * row_bytes <= target


@pytest.mark.parametrize("chunks", ["200B", "2KiB"])
def test_gradients_are_co_partitioned_and_meet_the_target(tmp_path, chunks):
    metatensor.save(tmp_path / "data.mts", make_tensor())
    loaded = mtd.load(tmp_path / "data.mts", chunks=chunks)
    target = dask.utils.parse_bytes(chunks)
    for block in loaded:
        _check_co_partitioned(block, target)
    # the largest co-partitioned array (the nested gradient) sets the chunking: the
    # values alone would fit in fewer chunks
    values = loaded.block(3).values
    assert values.nbytes <= target or len(values.chunks[0]) > -(-values.nbytes // target)


def test_integer_chunks_are_value_rows(tmp_path):
    metatensor.save(tmp_path / "data.mts", make_tensor())
    loaded = mtd.load(tmp_path / "data.mts", chunks=3)
    assert loaded.block(0).values.chunks[0] == (3, 2)
    assert loaded.block(1).values.chunks[0] == (0,)
    assert loaded.block(3).values.chunks[0] == (3, 3, 2)
    for block in loaded:
        _check_co_partitioned(block, None)


def test_default_chunk_size_comes_from_the_configuration(tmp_path):
    metatensor.save(tmp_path / "data.mts", make_tensor())
    with dask.config.set({"metatensor_dask.chunk-size": "200B"}):
        configured = mtd.load(tmp_path / "data.mts")
    explicit = mtd.load(tmp_path / "data.mts", chunks="200B")
    assert configured.block(3).values.chunks == explicit.block(3).values.chunks
    assert len(explicit.block(3).values.chunks[0]) > 1
    assert len(mtd.load(tmp_path / "data.mts").block(3).values.chunks[0]) == 1


@pytest.mark.parametrize(
    ("chunks", "error", "message"),
    [
        (0, mtd.MetatensorDaskError, "at least one row per chunk"),
        ("lots", mtd.MetatensorDaskError, "must be a size such as '64MiB' or a number of rows"),
        (2.5, TypeError, "`chunks` must be None, a number of rows or a size"),
    ],
)
def test_bad_chunks_are_refused(chunks, error, message):
    with pytest.raises(error, match=message):
        mtd.load(TUTORIAL_FILES[0], chunks=chunks)


# -- what the tasks do --------------------------------------------------------------------


def _large_block(tmp_path: Path) -> Path:
    block = metatensor.TensorBlock(
        np.random.default_rng(1).normal(size=(1000, 50)),
        metatensor.Labels.range("s", 1000),
        [],
        metatensor.Labels.range("p", 50),
    )
    metatensor.save(tmp_path / "large.mts", block)
    return tmp_path / "large.mts"


def test_the_graph_is_small_and_holds_no_data(tmp_path):
    path = _large_block(tmp_path)  # 400 kB of values
    values = mtd.load_block(path, chunks=100).values
    assert values.numblocks == (10, 1)
    graph = dict(values.__dask_graph__())
    assert len(pickle.dumps(graph)) < 10_000
    # also with a process worker, which gets the tasks pickled (one: a second would
    # only cost another interpreter start)
    np.testing.assert_array_equal(
        values.compute(scheduler="processes", num_workers=1),
        metatensor.load_block(path).values,
    )


def test_a_task_reads_only_its_chunk(tmp_path, monkeypatch):
    path = _large_block(tmp_path)
    values = mtd.load_block(path, chunks=100).values
    reads = []
    preadv = os.preadv

    def recording_preadv(fd, buffers, offset):
        reads.append((offset, sum(memoryview(b).nbytes for b in buffers)))
        return preadv(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", recording_preadv)
    chunk = values.blocks[3].compute(scheduler="sync")
    np.testing.assert_array_equal(chunk, metatensor.load_block(path).values[300:400])
    assert len(reads) == 1
    assert reads[0][1] == 100 * 50 * 8
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("values.npy")
    assert info.header_offset < reads[0][0] < info.header_offset + info.file_size


def test_reading_a_file_changed_since_loading_fails(tmp_path):
    path = _large_block(tmp_path)
    values = mtd.load_block(path).values
    with open(path, "ab") as file:
        file.write(b"\0")
    with pytest.raises(mtd.MetatensorDaskError, match="changed since it was loaded"):
        values.compute()


# -- saving -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", TUTORIAL_FILES, ids=lambda p: p.stem)
def test_saved_tutorial_files_are_identical_to_metatensors(tmp_path, path):
    metatensor.save(tmp_path / "theirs.mts", metatensor.load(path))
    mtd.save(tmp_path / "ours.mts", mtd.load(path, chunks=1))
    assert (tmp_path / "ours.mts").read_bytes() == (tmp_path / "theirs.mts").read_bytes()


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_round_trip_through_metatensor(tmp_path, dtype):
    expected = make_tensor(dtype, n_components=2)
    metatensor.save(tmp_path / "theirs.mts", expected)
    mtd.save(tmp_path / "ours.mts", mtd.load(tmp_path / "theirs.mts", chunks="200B"))
    assert metatensor.equal(metatensor.load(tmp_path / "ours.mts"), expected)
    assert (tmp_path / "ours.mts").read_bytes() == (tmp_path / "theirs.mts").read_bytes()
    assert_equal_to_metatensor(mtd.load(tmp_path / "ours.mts"), expected)


def test_saving_computed_and_converted_tensors(tmp_path):
    expected = make_tensor(np.float32, nested=False, info=False)
    metatensor.save(tmp_path / "theirs.mts", expected)
    converted = mtd.from_metatensor(expected)
    with dask.config.set({"metatensor_dask.chunk-size": "100B"}):
        # numpy values are written in slices of the chunk size
        mtd.save(tmp_path / "computed.mts", converted.compute())
    mtd.save(tmp_path / "converted.mts", converted)
    for name in ["computed.mts", "converted.mts"]:
        assert (tmp_path / name).read_bytes() == (tmp_path / "theirs.mts").read_bytes()


def test_blocks_and_labels_are_saved_as_metatensor_does(tmp_path):
    block = make_tensor().block(0)
    metatensor.save(tmp_path / "theirs-block.mts", block)
    mtd.save(tmp_path / "ours-block.mts", mtd.from_metatensor(block))
    assert (tmp_path / "ours-block.mts").read_bytes() == (
        tmp_path / "theirs-block.mts"
    ).read_bytes()
    keys = metatensor.Labels(["a", "bb"], np.array([[0, 1], [2, -3]], dtype=np.int32))
    metatensor.save(tmp_path / "theirs-keys.mts", keys)
    mtd.save(tmp_path / "ours-keys.mts", mtd.from_metatensor(keys))
    assert (tmp_path / "ours-keys.mts").read_bytes() == (tmp_path / "theirs-keys.mts").read_bytes()
    assert metatensor.load_labels(tmp_path / "ours-keys.mts") == keys


def test_headers_match_metatensor_for_any_name_length(tmp_path):
    # the header padding rule, around every multiple of 64 bytes
    for length in range(1, 80):
        labels = metatensor.Labels(["n" * length], np.array([[1]], dtype=np.int32))
        metatensor.save(tmp_path / "theirs.mts", labels)
        mtd.save(tmp_path / "ours.mts", mtd.from_metatensor(labels))
        assert (tmp_path / "ours.mts").read_bytes() == (tmp_path / "theirs.mts").read_bytes()


def test_saving_twice_gives_identical_bytes(tmp_path):
    tensor = mtd.from_metatensor(make_tensor())
    mtd.save(tmp_path / "first.mts", tensor)
    mtd.save(tmp_path / "second.mts", mtd.load(tmp_path / "first.mts", chunks=1))
    assert (tmp_path / "first.mts").read_bytes() == (tmp_path / "second.mts").read_bytes()


def test_the_archive_follows_metatensors_layout(tmp_path):
    tensor = mtd.from_metatensor(make_tensor())
    mtd.save(tmp_path / "data.mts", tensor)
    with zipfile.ZipFile(tmp_path / "data.mts") as archive:
        infos = archive.infolist()
        assert {info.compress_type for info in infos} == {zipfile.ZIP_STORED}
        assert {info.date_time for info in infos} == {(2000, 1, 1, 0, 0, 0)}
        names = [info.filename for info in infos]
        assert json.loads(archive.read("info.json")) == tensor.info()
    assert names[:8] == [
        "keys.npy",
        "blocks/0/values.npy",
        "blocks/0/samples.npy",
        "blocks/0/components/0.npy",
        "blocks/0/properties.npy",
        "blocks/0/gradients/cell/values.npy",
        "blocks/0/gradients/cell/samples.npy",
        "blocks/0/gradients/cell/components/0.npy",
    ]
    assert names[-1] == "info.json"
    assert "blocks/0/gradients/positions/gradients/strain/components/2.npy" in names
    assert not any(
        name.startswith("blocks/0/gradients/") and name.endswith("properties.npy") for name in names
    )


def test_one_byte_types_get_a_little_endian_descr(tmp_path):
    block = mtd.TensorBlock(
        np.array([[True, False]]), mtd.Labels.range("s", 1), [], mtd.Labels.range("p", 2)
    )
    mtd.save(tmp_path / "bool.mts", block)
    assert b"'descr': '<b1'" in _members(tmp_path / "bool.mts")["values.npy"]
    assert_equal_to_metatensor(block, metatensor.load_block(tmp_path / "bool.mts"))


def test_save_computes_once_and_streams(tmp_path):
    metatensor.save(tmp_path / "data.mts", make_tensor())
    loaded = mtd.load(tmp_path / "data.mts", chunks=1)
    with raise_if_dask_computes(max_computes=1):
        mtd.save(tmp_path / "copy.mts", loaded)
    assert (tmp_path / "copy.mts").read_bytes() == (tmp_path / "data.mts").read_bytes()


def test_values_chunked_along_properties_are_saved(tmp_path):
    values = np.arange(60.0).reshape(6, 2, 5)
    block = mtd.TensorBlock(
        da.from_array(values, chunks=(4, 1, 2)),
        mtd.Labels.range("s", 6),
        [mtd.Labels.range("c", 2)],
        mtd.Labels.range("p", 5),
    )
    mtd.save(tmp_path / "block.mts", block)
    np.testing.assert_array_equal(metatensor.load_block(tmp_path / "block.mts").values, values)


def test_a_failed_save_leaves_no_file(tmp_path):
    def fail(chunk):
        raise RuntimeError("computation failed")

    values = da.ones((4, 3), chunks=(2, 3)).map_blocks(fail, dtype=float)
    block = mtd.TensorBlock(values, mtd.Labels.range("s", 4), [], mtd.Labels.range("p", 3))
    with pytest.raises(RuntimeError, match="computation failed"):
        mtd.save(tmp_path / "block.mts", block)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "block.mts").write_bytes(b"previous content")
    with pytest.raises(RuntimeError, match="computation failed"):
        mtd.save(tmp_path / "block.mts", block)
    assert list(tmp_path.iterdir()) == [tmp_path / "block.mts"]
    assert (tmp_path / "block.mts").read_bytes() == b"previous content"


def test_saving_over_the_loaded_file(tmp_path):
    expected = make_tensor()
    metatensor.save(tmp_path / "data.mts", expected)
    loaded = mtd.load(tmp_path / "data.mts", chunks=2)
    blocks = [block.copy() for block in loaded]
    for block in blocks:
        for parameter in block.gradients_list():
            del block._gradients[parameter]
    mtd.save(tmp_path / "data.mts", mtd.TensorMap(loaded.keys, blocks))
    assert_equal_to_metatensor(
        mtd.load(tmp_path / "data.mts"), metatensor.load(tmp_path / "data.mts")
    )
    for ours, theirs in zip(metatensor.load(tmp_path / "data.mts"), expected, strict=True):
        np.testing.assert_array_equal(ours.values, theirs.values)
        assert ours.gradients_list() == []


@pytest.mark.parametrize(
    ("name", "saved", "shown"),
    [
        ("data", "data.mts", "data.mts"),
        ("data.npz", "data.npz.mts", "data.npz.mts"),
    ],
)
def test_the_extension_is_added_as_metatensor_does(tmp_path, monkeypatch, name, saved, shown):
    monkeypatch.chdir(tmp_path)
    tensor = mtd.from_metatensor(make_tensor(nested=False))
    with pytest.warns(
        UserWarning, match=f"adding '.mts' extension, the file will be saved at '{shown}'"
    ):
        mtd.save(name, tensor)
    with pytest.warns(UserWarning, match=f"the file will be saved at '{saved}'"):
        mtd.save(tmp_path / name, tensor)  # a Path: only the file name is shown
    assert sorted(p.name for p in tmp_path.iterdir()) == [saved]


def test_the_zip64_format_is_used_past_its_limits(tmp_path, monkeypatch):
    expected = make_tensor()
    monkeypatch.setattr(_zip, "ZIP64_LIMIT", 1000)
    monkeypatch.setattr(_zip, "ZIP64_COUNT_LIMIT", 10)
    mtd.save(tmp_path / "zip64.mts", mtd.from_metatensor(expected))
    data = (tmp_path / "zip64.mts").read_bytes()
    assert b"PK\x06\x06" in data and b"PK\x06\x07" in data
    assert metatensor.equal(metatensor.load(tmp_path / "zip64.mts"), expected)
    with zipfile.ZipFile(tmp_path / "zip64.mts") as archive:
        assert archive.testzip() is None
    assert_equal_to_metatensor(mtd.load(tmp_path / "zip64.mts"), expected)


def test_crc32_of_concatenated_pieces():
    import zlib

    rng = np.random.default_rng(3)
    for length1, length2 in [(0, 0), (5, 0), (0, 7), (1000, 1), (3, 70000)]:
        first = rng.bytes(length1)
        second = rng.bytes(length2)
        combined = _zip.crc32_combine(zlib.crc32(first), zlib.crc32(second), length2)
        assert combined == zlib.crc32(first + second)


@given(
    tensor=strategies.tensor_maps(dtypes=(np.float64, np.float32), grouped=True)
    | strategies.tensor_maps(grouped=False),
    chunks=st.one_of(st.none(), st.integers(1, 4), st.sampled_from(["64B", "1KiB"])),
)
def test_random_tensors_round_trip(tensor, chunks):
    expected = mtd.to_metatensor(tensor)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "data.mts")
        mtd.save(path, tensor)
        assert metatensor.equal(metatensor.load(path), expected)
        assert_equal_to_metatensor(mtd.load(path, chunks=chunks), expected)


# -- bad input ----------------------------------------------------------------------------


def _tutorial_members() -> dict[str, bytes]:
    return _members(TUTORIAL_FILES[0])


def _damaged(tmp_path: Path, edit) -> Path:
    members = _tutorial_members()
    edit(members)
    _write_members(tmp_path / "damaged.mts", members)
    return tmp_path / "damaged.mts"


def _set(name: str, array: np.ndarray, **kwargs):
    def edit(members):
        members[name] = _npy(array, **kwargs)

    return edit


def _samples() -> np.ndarray:
    return _load_npy(_tutorial_members()["blocks/0/samples.npy"])


def _values() -> np.ndarray:
    return _load_npy(_tutorial_members()["blocks/0/values.npy"])


def _drop(name: str):
    def edit(members):
        del members[name]

    return edit


BAD_FILES = {
    "missing member": (
        _drop("blocks/0/samples.npy"),
        "specified file not found in archive: at 'blocks/0/samples.npy'",
    ),
    "missing gradient component": (
        _drop("blocks/0/gradients/positions/components/0.npy"),
        "not found in archive: at 'blocks/0/gradients/positions/components/0.npy'",
    ),
    "labels int64": (
        lambda m: _set(
            "blocks/0/samples.npy", _samples().astype([("system", "<i8"), ("atom", "<i8")])
        )(m),
        "invalid dtype for labels: at 'blocks/0/samples.npy'",
    ),
    "labels 2-D": (
        lambda m: _set("blocks/0/samples.npy", _samples().view(np.int32).reshape(1, 2))(m),
        "Expected a 1-D array when loading Labels",
    ),
    "object values": (
        lambda m: _set("blocks/0/values.npy", _values().astype(object))(m),
        "invalid type descriptor: '\\|O': arrays of Python objects would need unpickling",
    ),
    "structured values": (
        _set("blocks/0/values.npy", np.zeros((1, 3), dtype=[("a", "<f8")])),
        "structured arrays are not supported",
    ),
    "unsupported values dtype": (
        _set("blocks/0/values.npy", np.zeros((1, 3), dtype="M8[s]")),
        "unsupported dtype for values: '<M8\\[s\\]'",
    ),
    "one-dimensional values": (
        _set("blocks/0/values.npy", np.zeros(3)),
        "values must have at least 2 dimensions",
    ),
    "extra bytes": (
        lambda m: m.__setitem__("blocks/0/values.npy", m["blocks/0/values.npy"] + b"\0" * 8),
        "'blocks/0/values.npy' holds 32 bytes of data but its header describes 24",
    ),
    "garbage member": (
        lambda m: m.__setitem__("blocks/0/values.npy", b"garbage" * 4),
        "start does not match magic string: at 'blocks/0/values.npy'",
    ),
    "bad header": (
        lambda m: m.__setitem__(
            "blocks/0/values.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': oops}\n"
        ),
        "invalid .npy header",
    ),
    "info not an object": (
        lambda m: m.__setitem__("info.json", b"[1]"),
        "'info.json' should contain an object",
    ),
    "info not strings": (
        lambda m: m.__setitem__("info.json", b'{"a": 1}'),
        "values in 'info.json' should be strings",
    ),
    "info not json": (
        lambda m: m.__setitem__("info.json", b"{"),
        "'info.json' is not valid JSON",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_damaged_files_get_a_format_error(tmp_path, monkeypatch, case):
    edit, message = BAD_FILES[case]
    path = _damaged(tmp_path, edit)

    def no_unpickling(*args, **kwargs):
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    with pytest.raises(mtd.MetatensorError, match=message) as error:
        mtd.load(path)
    assert error.value.message.startswith(
        f"serialization format error: unable to load a TensorMap from '{path}': "
    )


def _replace_gradient_with_one_row(sample: int):
    def edit(members):
        names = [("sample", "<i4"), ("system", "<i4"), ("atom", "<i4")]
        prefix = "blocks/4/gradients/positions/"
        members[prefix + "samples.npy"] = _npy(np.array([(sample, 0, 1)], dtype=names))
        members[prefix + "values.npy"] = _npy(np.zeros((1, 3, 3)))

    return edit


METADATA_ERRORS = {
    "too many values": (
        _set("blocks/0/values.npy", np.zeros((2, 3))),
        "invalid block: the values shape along axis 0 is 2 but we have 1 sample label entries",
    ),
    "too few properties": (
        _set("blocks/0/values.npy", np.zeros((1, 4))),
        "the values shape along axis 1 is 4 but we have 3 property label entries",
    ),
    "duplicate samples": (
        lambda m: _set("blocks/4/samples.npy", _load_npy(m["blocks/4/samples.npy"])[[0, 0, 1]])(m),
        "can not have the same label entry multiple times",
    ),
    "gradient pointing past the values": (
        _replace_gradient_with_one_row(sample=7),
        "invalid value for the 'sample' dimension in gradient samples: we got 7",
    ),
    "gradient of another dtype": (
        lambda m: _set(
            "blocks/0/gradients/positions/values.npy",
            _load_npy(m["blocks/0/gradients/positions/values.npy"]).astype(np.float32),
        )(m),
        "the gradient values have dtype 'f32' but the block values have dtype 'f64'",
    ),
}


@pytest.mark.parametrize("case", list(METADATA_ERRORS))
def test_inconsistent_files_get_metatensors_error(tmp_path, case):
    edit, message = METADATA_ERRORS[case]
    path = _damaged(tmp_path, edit)
    with pytest.raises(mtd.MetatensorError, match=message) as error:
        mtd.load(path)
    assert error.value.message.startswith("invalid parameter: ")
    assert f"of '{path}': the file is damaged" in error.value.message
    # metatensor refuses these files too
    with pytest.raises(metatensor.MetatensorError):
        metatensor.load(path)


def test_not_a_zip_file(tmp_path):
    (tmp_path / "text.mts").write_bytes(b"hello" * 100)
    with pytest.raises(mtd.MetatensorError, match=r"invalid Zip archive: .*: at '<root>'"):
        mtd.load(tmp_path / "text.mts")


def test_truncated_file(tmp_path):
    data = TUTORIAL_FILES[0].read_bytes()
    (tmp_path / "cut.mts").write_bytes(data[: len(data) // 2])
    with pytest.raises(
        mtd.MetatensorError, match=r"unable to load a TensorMap from .*invalid Zip archive"
    ):
        mtd.load(tmp_path / "cut.mts")


def test_member_past_the_end_of_the_file(tmp_path):
    data = bytearray(TUTORIAL_FILES[0].read_bytes())
    # the central directory record of the last member claims more bytes than remain
    record = data.rfind(b"PK\x01\x02")
    data[record + 20 : record + 28] = (10**6).to_bytes(4, "little") * 2
    (tmp_path / "short.mts").write_bytes(bytes(data))
    # its local header says otherwise: damage
    with pytest.raises(mtd.DamagedFileError, match="disagree on its sizes"):
        mtd.load(tmp_path / "short.mts")
    # both say so
    (local,) = struct.unpack_from("<I", data, record + 42)
    data[local + 18 : local + 26] = (10**6).to_bytes(4, "little") * 2
    (tmp_path / "short.mts").write_bytes(bytes(data))
    with pytest.raises(
        mtd.DamagedFileError, match="extends past the end of the file, which is truncated"
    ):
        mtd.load(tmp_path / "short.mts")


def test_missing_file():
    with pytest.raises(mtd.MetatensorError, match="io error: No such file or directory"):
        mtd.load("/nonexistent/data.mts")


@pytest.mark.parametrize("load", [mtd.load, mtd.load_block, mtd.load_labels])
def test_a_directory_is_named_in_the_error(tmp_path, load):
    (tmp_path / "store.mts").mkdir()
    with pytest.raises(mtd.MetatensorError) as error:
        load(tmp_path / "store.mts")
    assert str(error.value).startswith("io error: Is a directory (os error 21): '")
    assert str(tmp_path / "store.mts") in str(error.value)


def test_the_wrong_loader_says_which_one_to_use(tmp_path):
    block = make_tensor(nested=False).block(0)
    metatensor.save(tmp_path / "block.mts", block)
    metatensor.save(tmp_path / "keys.mts", block.samples)
    with pytest.raises(mtd.MetatensorError, match="use `load_block` to load TensorBlock"):
        mtd.load(tmp_path / "block.mts")
    with pytest.raises(mtd.MetatensorError, match="use `load` to load TensorMap"):
        mtd.load_block(TUTORIAL_FILES[0])
    with pytest.raises(mtd.MetatensorError, match="use `load_labels` to load Labels"):
        mtd.load(tmp_path / "keys.mts")
    with pytest.raises(mtd.MetatensorError, match="use `load` to load TensorMap"):
        mtd.load_labels(TUTORIAL_FILES[0])
    with pytest.raises(mtd.MetatensorError, match="use `load_block` to load TensorBlock"):
        mtd.load_labels(tmp_path / "block.mts")


def test_paths_must_be_paths():
    with pytest.raises(TypeError, match="`path` must be a str or a path-like object"):
        mtd.load(io.BytesIO(TUTORIAL_FILES[0].read_bytes()))


def test_unsupported_values_are_not_saved(tmp_path):
    block = mtd.TensorBlock(
        np.zeros((1, 2), dtype="M8[s]"), mtd.Labels.range("s", 1), [], mtd.Labels.range("p", 2)
    )
    with pytest.raises(
        mtd.MetatensorDaskError, match="values of dtype datetime64\\[s\\] can not be saved"
    ):
        mtd.save(tmp_path / "block.mts", block)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(TypeError, match="must be one of 'Labels', 'TensorBlock' or 'TensorMap'"):
        mtd.save(tmp_path / "x.mts", np.zeros(3))


def test_zip64_end_record_is_metatensors():
    """With 65,535 members or more (10,000 blocks with a gradient), the ZIP64 end record
    holds the versions metatensor writes there (4.6 made by and needed, host 0), so
    that saves stay byte-identical (checked against metatensor by bench_many_blocks)."""
    names = [f"m{i}.npy" for i in range(_zip.ZIP64_COUNT_LIMIT)]
    zeros = [0] * len(names)
    data = _zip.central_directory(names, zeros, zeros, zeros, 0)
    start = data.index(b"PK\x06\x06")
    assert data[start + 12 : start + 16] == bytes([46, 0, 46, 0])
