"""Damage made the unusual ways a user may make it: folders copied from another store of
the same shapes, roots rewritten by other tools, edits that keep every checksum right,
stores half copied or moved while open, and `.mts` members replaced. Each read either
gives metatensor's numbers or raises a clear error; never other numbers."""

from __future__ import annotations

import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import dask
import google_crc32c
import metatensor
import metatensor.operations as reference
import numpy as np
import pytest
import zarr
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

SHAPES = {"n_samples": (12, 8), "n_properties": (3, 3), "nested": False}
THEIRS = make_metatensor(seed=1, **SHAPES)
OTHER = make_metatensor(seed=2, **SHAPES)
SYSTEM_1 = np.array([[1]], np.int32)

#: operations reading a store, as ``(ours, metatensor's)``
READS = {
    "compute": (lambda t: t, lambda t: t),
    "sum_over_samples": (
        lambda t: mtd.sum_over_samples(t, "atom"),
        lambda t: reference.sum_over_samples(t, "atom"),
    ),
    "slice": (
        lambda t: mtd.slice(t, "samples", mtd.Labels(["system"], SYSTEM_1)),
        lambda t: reference.slice(t, "samples", metatensor.Labels(["system"], SYSTEM_1)),
    ),
    "multiply": (lambda t: mtd.multiply(t, t), lambda t: reference.multiply(t, t)),
    "pow": (lambda t: mtd.pow(t, 2.0), lambda t: reference.pow(t, 2.0)),
    "sum_over_properties": (
        lambda t: mtd.sum_over_properties(t, "n"),
        lambda t: reference.sum_over_properties(t, "n"),
    ),
    "sort": (lambda t: mtd.sort(t, descending=True), lambda t: reference.sort(t, descending=True)),
}


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, Path]:
    """Stores of ``THEIRS`` and ``OTHER``, of the same shapes, 3 chunks per block."""
    folder = tmp_path_factory.mktemp("written")
    stores = {"theirs": folder / "theirs.zarr", "other": folder / "other.zarr"}
    for name, tensor in (("theirs", THEIRS), ("other", OTHER)):
        mtd.from_metatensor(tensor).to_zarr(stores[name], chunks=4)
    return stores


@pytest.fixture
def store(tmp_path, written) -> Path:
    """A copy of the store of ``THEIRS``, to damage."""
    path = tmp_path / "t.zarr"
    shutil.copytree(written["theirs"], path)
    return path


def _read_as_metatensor_or_refuse(store: Path, read: str) -> None:
    """The read ``read`` of ``store`` gives metatensor's numbers or raises our error."""
    ours, theirs = READS[read]
    try:
        with dask.config.set(scheduler="synchronous"):
            result = ours(mtd.open_zarr(store))
            assert_equal_to_metatensor(result, theirs(THEIRS))
    except mtd.MetatensorDaskError:
        pass


def _refused(store: Path, read: str, match: str) -> None:
    ours, _ = READS[read]
    with pytest.raises(mtd.MetatensorDaskError, match=match):
        with dask.config.set(scheduler="synchronous"):
            mtd.to_metatensor(ours(mtd.open_zarr(store)))


def _without_inline_metadata(store: Path) -> None:
    root = json.loads((store / "zarr.json").read_text())
    del root["consolidated_metadata"]
    (store / "zarr.json").write_text(json.dumps(root))


def _block_from(store: Path, other: Path, block: int = 0) -> None:
    shutil.rmtree(store / "blocks" / str(block))
    shutil.copytree(other / "blocks" / str(block), store / "blocks" / str(block))


# --- folders of another store of the same shapes ---------------------------------------


@pytest.mark.parametrize("read", sorted(READS))
def test_a_block_from_another_store_is_refused(store, written, read):
    _block_from(store, written["other"])
    _refused(store, read, "is damaged")
    assert not mtd.verify(store).ok


@pytest.mark.parametrize("read", sorted(READS))
def test_a_block_from_another_store_under_a_root_without_inline_metadata_is_refused(
    store, written, read
):
    # the nodes' own documents came with the folder: read from them, every check of the
    # block passed and the other store's numbers were read as this one's
    _block_from(store, written["other"])
    _without_inline_metadata(store)
    _refused(store, read, "holds no inline \\(consolidated\\) metadata")
    assert not mtd.verify(store).ok


def test_a_format_4_root_without_inline_metadata_is_refused_and_says_why(store):
    _without_inline_metadata(store)
    with pytest.raises(mtd.DamagedStoreError) as raised:
        mtd.open_zarr(store)
    assert str(raised.value) == (
        f"the store at {store} is damaged: its root 'zarr.json' holds no inline "
        "(consolidated) metadata, which every format 4 writer stores with the chunk tables "
        "and Labels digests of every array: the nodes' own documents, which move with "
        "their folders, can not tell this store's blocks from blocks copied from another "
        "store; `metatensor-dask verify` lists every problem; write or convert the tensor "
        "again from its source"
    )


def _later_samples(tensor: metatensor.TensorMap) -> metatensor.TensorMap:
    """``tensor`` with its systems moved past those of ``THEIRS``: an append of it."""
    blocks = []
    for block in tensor.blocks():
        samples = block.samples.values + np.array([100, 100], np.int32)
        moved = metatensor.TensorBlock(
            block.values.copy(),
            metatensor.Labels(block.samples.names, samples),
            block.components,
            block.properties,
        )
        for parameter, gradient in block.gradients():
            moved.add_gradient(parameter, gradient.copy())
        blocks.append(moved)
    return metatensor.TensorMap(tensor.keys, blocks)


def _new_key(tensor: metatensor.TensorMap) -> metatensor.TensorMap:
    """The first block of ``tensor`` under a key ``THEIRS`` does not have."""
    keys = metatensor.Labels(tensor.keys.names, np.array([[8, 8]], np.int32))
    return metatensor.TensorMap(keys, [tensor.block(0).copy()])


def _append_later_samples(path: Path) -> None:
    later = _later_samples(make_metatensor(seed=3, **SHAPES))
    mtd.from_metatensor(later).to_zarr(path, append_dim="samples")


def _add_a_key(path: Path) -> None:
    mtd.from_metatensor(_new_key(make_metatensor(seed=3, **SHAPES))).to_zarr(path, mode="a")


def _rewrite_values(path: Path) -> None:
    mtd.from_metatensor(THEIRS).to_zarr(path, mode="r+", chunks=4)


@pytest.mark.parametrize("write", [_append_later_samples, _add_a_key, _rewrite_values])
def test_writes_into_a_format_4_root_without_inline_metadata_are_refused(store, written, write):
    # they stored a root holding the nodes' documents again, consolidated: the copied
    # block's chunk tables and digests became the store's, and every read and verify
    # took the other store's numbers for this one's
    _block_from(store, written["other"])
    _without_inline_metadata(store)
    root = (store / "zarr.json").read_bytes()
    with pytest.raises(mtd.DamagedStoreError, match="holds no inline"):
        write(store)
    assert (store / "zarr.json").read_bytes() == root
    assert not mtd.verify(store).ok


def test_mode_w_replaces_a_format_4_root_without_inline_metadata(store, written):
    _block_from(store, written["other"])
    _without_inline_metadata(store)
    mtd.from_metatensor(THEIRS).to_zarr(store, mode="w", chunks=4)
    assert_equal_to_metatensor(mtd.open_zarr(store), THEIRS)
    assert mtd.verify(store).ok


@pytest.mark.xfail(
    strict=True,
    reason="zarr.consolidate_metadata copies the block's documents from the other store "
    "into the root, whose chunk tables and digests then match the block's chunks; the "
    "root's store_id (a digest of every node's attributes) no longer does, but appends "
    "and mode='a' keep the id while changing the attributes, so it can not be compared. "
    "Proposed fix: every writer records in the root a digest of the node attributes it "
    "leaves (content_id), which readers and verify compare with the documents they read",
)
@pytest.mark.filterwarnings("ignore:Consolidated metadata is currently not part")
def test_a_block_from_another_store_then_consolidated_by_zarr_is_refused(store, written):
    _block_from(store, written["other"])
    zarr.consolidate_metadata(str(store))
    _refused(store, "compute", "damaged")


def test_blocks_of_two_stores_exchanged_are_refused_in_both(tmp_path, written):
    first, second = tmp_path / "first.zarr", tmp_path / "second.zarr"
    shutil.copytree(written["theirs"], first)
    shutil.copytree(written["other"], second)
    (first / "blocks").rename(tmp_path / "blocks")
    (second / "blocks").rename(first / "blocks")
    (tmp_path / "blocks").rename(second / "blocks")
    for path in (first, second):
        with pytest.raises(mtd.DamagedStoreError):
            mtd.to_metatensor(mtd.open_zarr(path))
        assert not mtd.verify(path).ok


# --- edits that keep every checksum right ----------------------------------------------


def _with_crc32c(body: np.ndarray) -> bytes:
    data = body.tobytes()
    return data + np.uint32(google_crc32c.value(data)).astype("<u4").tobytes()


def _move_a_gradient_row_to_the_sample_before(store: Path, gradient: str) -> None:
    """Lower one entry of the row pointer of ``gradient`` of block 0 by one, its order
    kept and its chunk's crc32c recomputed: the pointer stays valid on its own, and
    gives a gradient row to the sample before."""
    folder = store / "blocks" / "0" / "gradients" / gradient / "row_pointer"
    files = sorted(folder.glob("c.*"), key=lambda p: int(p.name[2:]))
    chunks = [np.frombuffer(p.read_bytes()[:-4], dtype="<i8").copy() for p in files]
    pointer = np.concatenate(chunks)
    entry = next(i for i in range(1, len(pointer) - 1) if pointer[i] > pointer[i - 1])
    index, within = divmod(entry, len(chunks[0]))
    chunks[index][within] -= 1
    files[index].write_bytes(_with_crc32c(chunks[index]))


@pytest.mark.parametrize("gradient", ["positions", "strain"])
@pytest.mark.parametrize("read", sorted(READS))
def test_a_row_pointer_edited_with_its_checksum_is_refused(store, gradient, read):
    _move_a_gradient_row_to_the_sample_before(store, gradient)
    _refused(store, read, "damaged")
    assert not mtd.verify(store).ok


def _edit_chunk(path: Path, dtype: str, columns: int, change) -> None:
    """Apply ``change`` to the entries of a plain chunk and recompute its crc32c."""
    entries = np.frombuffer(path.read_bytes()[:-4], dtype=dtype).reshape(-1, columns).copy()
    change(entries)
    path.write_bytes(_with_crc32c(entries))


def test_a_gradient_row_moved_to_another_sample_in_two_files_is_refused(store):
    # the strain gradient has one row per sample: its row 4 becomes sample 5's
    gradient = store / "blocks" / "0" / "gradients" / "strain"
    _edit_chunk(gradient / "row_pointer" / "c.1", "<i8", 4, lambda p: p.__setitem__((0, 1), 4))
    _edit_chunk(gradient / "samples" / "c.1.0", "<i4", 3, lambda s: s.__setitem__((0, 0), 5))
    with dask.config.set(scheduler="synchronous"):
        with pytest.raises(mtd.DamagedStoreError):
            mtd.to_metatensor(mtd.multiply(*[mtd.open_zarr(store)] * 2))
        # the chunk-wise tasks agreed with both edits and gave other numbers: each chunk
        # of the row pointer and of the gradient samples is compared with the table of
        # its array (the pointers of tiny blocks are read on opening)
        with pytest.raises(mtd.DamagedStoreError, match=r"'c\.1' .* is not the chunk the store"):
            tensor = mtd.open_zarr(store)
            mtd.multiply(tensor, tensor).block(0).gradient("strain").values.compute()
    assert any("not the chunk the store lists" in p for p in mtd.verify(store).problems)


@pytest.mark.parametrize("read", sorted(READS))
def test_gradient_samples_from_another_store_are_refused(store, written, read):
    # the "sample" column of both stores' gradient rows: the same pointer, other atoms
    name = "blocks/0/gradients/strain/samples/c.1.0"
    shutil.copy(written["other"] / name, store / name)
    _read_as_metatensor_or_refuse(store, read)


# --- files that are not where they should be ------------------------------------------


@pytest.mark.parametrize(
    "chunk",
    [
        "keys/c.0.0",
        "blocks/0/values/c.1.0.0",
        "blocks/0/samples/c.1.0",
        "blocks/0/components/0/c.0.0",
        "blocks/0/properties/c.0.0",
        "blocks/1/gradients/positions/values/c.1.0.0.0",
        "blocks/1/gradients/positions/samples/c.1.0",
        "blocks/1/gradients/positions/row_pointer/c.1",
    ],
)
def test_a_folder_in_place_of_a_chunk_is_a_missing_chunk(store, chunk):
    # a folder opens read-only: reading it raised a bare IsADirectoryError, naming no
    # file, from every read and from verify (zarr reads it as no chunk)
    (store / chunk).unlink()
    (store / chunk).mkdir()
    with pytest.raises(mtd.DamagedStoreError, match=f"'{chunk.rpartition('/')[2]}'.* is missing"):
        with dask.config.set(scheduler="synchronous"):
            mtd.to_metatensor(mtd.open_zarr(store))
    report = mtd.verify(store)
    assert any(chunk.rpartition("/")[0] in problem for problem in report.problems)


@pytest.mark.parametrize("chunk", ["blocks/0/values/c.1.0.0", "blocks/0/samples/c.1.0"])
def test_a_named_pipe_in_place_of_a_chunk_is_a_missing_chunk(store, chunk):
    # opening it waited for a writer forever; with one (held here, writing nothing), a
    # pipe was read as an empty chunk file
    (store / chunk).unlink()
    os.mkfifo(store / chunk)
    writer = os.open(store / chunk, os.O_RDWR)
    try:
        with pytest.raises(mtd.DamagedStoreError, match="is missing"):
            with dask.config.set(scheduler="synchronous"):
                mtd.to_metatensor(mtd.open_zarr(store))
    finally:
        os.close(writer)
    os.unlink(store / chunk)
    os.mkfifo(store / chunk)  # without a writer
    assert any("is missing" in problem for problem in mtd.verify(store).problems)


def test_a_store_half_copied_is_refused(tmp_path, written):
    half = tmp_path / "half.zarr"
    files = sorted(p for p in written["theirs"].rglob("*") if p.is_file())
    for number, path in enumerate(files):
        if number % 2 == 0 or path.name == "zarr.json":
            target = half / path.relative_to(written["theirs"])
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    with pytest.raises(mtd.DamagedStoreError, match="is missing"):
        mtd.to_metatensor(mtd.open_zarr(half))
    assert not mtd.verify(half).ok


def test_a_store_moved_while_open_is_refused(store, tmp_path):
    tensor = mtd.open_zarr(store)
    store.rename(tmp_path / "moved.zarr")
    with pytest.raises(mtd.MetatensorDaskError, match=re.escape(str(store))):
        mtd.to_metatensor(tensor)


def test_a_store_moved_and_another_put_in_its_place_is_refused(store, written):
    tensor = mtd.open_zarr(store)
    shutil.rmtree(store)
    shutil.copytree(written["other"], store)
    with pytest.raises(mtd.MetatensorDaskError, match="was overwritten"):
        mtd.to_metatensor(tensor)


def test_saving_a_damaged_store_to_mts_writes_nothing(store, written, tmp_path):
    name = "blocks/1/values/c.1.0.0"
    shutil.copy(written["other"] / name, store / name)
    target = tmp_path / "t.mts"
    with pytest.raises(mtd.DamagedStoreError, match="not the chunk the store lists"):
        mtd.save(target, mtd.open_zarr(store))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.zarr"]


# --- .mts files -----------------------------------------------------------------------


def _member(path: Path, name: str) -> tuple[int, int]:
    """``(offset of the first byte of the member's data, its size)``."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    with open(path, "rb") as file:
        file.seek(info.header_offset + 26)
        lengths = np.frombuffer(file.read(4), dtype="<u2")
    return info.header_offset + 30 + int(lengths.sum()), info.file_size


@pytest.fixture
def mts_files(tmp_path) -> tuple[Path, Path]:
    paths = tmp_path / "theirs.mts", tmp_path / "other.mts"
    metatensor.save(paths[0], THEIRS)
    metatensor.save(paths[1], OTHER)
    return paths


@pytest.mark.parametrize("member", ["blocks/0/values.npy", "blocks/1/gradients/strain/values.npy"])
def test_a_member_copied_from_another_file_is_refused(mts_files, tmp_path, member):
    # byte for byte over the member, which keeps its place and size but not its CRC-32
    theirs, other = mts_files
    offset, size = _member(other, member)
    assert _member(theirs, member)[1] == size
    with open(other, "rb") as file:
        file.seek(offset)
        replacement = file.read(size)
    with open(theirs, "r+b") as file:
        file.seek(_member(theirs, member)[0])
        file.write(replacement)
    with pytest.raises(mtd.DamagedFileError, match=re.escape(member)):
        mtd.to_metatensor(mtd.load(theirs))
    with pytest.raises(mtd.DamagedFileError):
        mtd.save(tmp_path / "copy.mts", mtd.load(theirs))
    assert not (tmp_path / "copy.mts").exists()
    assert not mtd.verify(theirs).ok


def _central_record(data: bytes, name: str) -> int:
    """The offset of the central directory record of the member ``name``: the record's
    46 fixed bytes precede the last copy of the name (the directory ends the file)."""
    return data.rindex(name.encode()) - 46


def test_a_wrong_crc_in_the_central_directory_only_is_refused(mts_files):
    theirs, _ = mts_files
    data = bytearray(theirs.read_bytes())
    record = _central_record(bytes(data), "blocks/0/values.npy")
    assert data[record : record + 4] == b"PK\x01\x02"
    crc = int.from_bytes(data[record + 16 : record + 20], "little")
    data[record + 16 : record + 20] = (crc ^ 1).to_bytes(4, "little")
    theirs.write_bytes(bytes(data))  # the member's local header keeps the right CRC-32
    with pytest.raises(mtd.DamagedFileError, match=re.escape("blocks/0/values.npy")):
        mtd.to_metatensor(mtd.load(theirs))


@pytest.mark.parametrize("chunk", ["blocks/0/values/c.1.0.0", "blocks/0/samples/c.1.0"])
def test_a_chunk_the_system_refuses_to_read_is_reported_by_verify(store, chunk):
    # a loop of symbolic links in place of a chunk (as root, the way to make a file that
    # the system refuses to open, as it does an unreadable file to other users): verify
    # raised the OSError instead of reporting it with the rest of the store's problems
    (store / chunk).unlink()
    os.symlink(chunk.rpartition("/")[2], store / chunk)
    report = mtd.verify(store)
    assert not report.ok
    (problem,) = [p for p in report.problems if "can not read" in p]
    assert str(store / chunk) in problem and "symbolic links" in problem
    with pytest.raises(OSError, match=re.escape(str(store / chunk))):
        with dask.config.set(scheduler="synchronous"):
            mtd.to_metatensor(mtd.open_zarr(store))
