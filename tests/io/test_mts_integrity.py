"""metatensor files: damaged bytes are found (CRC-32), whatever reads them whole."""

from __future__ import annotations

import io
import multiprocessing
import os
import shutil
import struct
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import dask
import metatensor
import metatensor.operations as mops
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.datasets import tutorial_file
from metatensor_dask.execution.cli import main
from metatensor_dask.io import _zip
from metatensor_dask.io.mts import check_file
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes

SPHERICAL = Path(tutorial_file("spherical-expansion.npz"))
GRADIENT = "blocks/8/gradients/positions/values.npy"


def _data_offset(path: Path, name: str) -> tuple[int, int]:
    """Where the bytes of member ``name`` start in ``path``, and how many there are."""
    member = _zip.read_directory(str(path))[name]
    return member.offset, member.size


def _flip(path: Path, name: str, position: int) -> Path:
    """A copy of ``path`` (next to it) with one bit changed at ``position`` in member
    ``name``."""
    target = path.parent / f"damaged-{path.name}"
    offset, size = _data_offset(path, name)
    assert 0 <= position < size
    data = bytearray(path.read_bytes())
    data[offset + position] ^= 0x10
    target.write_bytes(bytes(data))
    return target


@pytest.fixture
def damaged(tmp_path):
    """The tutorial file, with a bit changed in the data of a gradient's values."""
    source = shutil.copy(SPHERICAL, tmp_path / "source.npz")
    return _flip(Path(source), GRADIENT, 1500)


def _metatensor_refuses(path: Path) -> None:
    with pytest.raises(metatensor.MetatensorError, match="Invalid checksum"):
        metatensor.load(str(path))


# -- labels: checked when read ----------------------------------------------------------


def test_damaged_labels_are_refused_at_load(tmp_path):
    source = Path(shutil.copy(SPHERICAL, tmp_path / "source.npz"))
    _, size = _data_offset(source, "blocks/1/samples.npy")
    path = _flip(source, "blocks/1/samples.npy", size - 3)
    _metatensor_refuses(path)
    with pytest.raises(mtd.DamagedFileError) as error:
        mtd.load(path)
    assert isinstance(error.value, mtd.MetatensorError)
    assert f"'{path}' is damaged: Invalid checksum" in str(error.value)
    assert "in member 'blocks/1/samples.npy'" in str(error.value)
    assert "write it again from its source" in str(error.value)


def test_damaged_values_header_is_refused(tmp_path):
    source = Path(shutil.copy(SPHERICAL, tmp_path / "source.npz"))
    # a space of the header's padding becomes a digit: the header no longer parses
    offset, _ = _data_offset(source, GRADIENT)
    header = source.read_bytes()[offset : offset + 128]
    path = _flip(source, GRADIENT, header.index(b"   ") + 1)
    with pytest.raises(mtd.DamagedFileError, match=f"Invalid checksum.*in member '{GRADIENT}'"):
        mtd.load(path)
    with pytest.raises(mtd.DamagedFileError, match=f"Invalid checksum.*in member '{GRADIENT}'"):
        check_file(path)


# -- values: checked by every computation that reads a member whole ----------------------


@pytest.mark.parametrize("chunks", [None, 1])
def test_a_clean_file_computes_as_metatensor_loads_it(chunks):
    tensor = mtd.load(SPHERICAL, chunks=chunks)
    expected = metatensor.load(str(SPHERICAL))
    assert_equal_to_metatensor(tensor.compute(), expected)
    assert_equal_to_metatensor(tensor.persist().compute(), expected)
    # the checks are part of what a whole map computes
    # members of several chunks are checked by a task of their own, part of what a
    # whole map computes; a member of one chunk is checked by its read task
    checks = [key for key in tensor.__dask_keys__() if str(key).startswith("mts-check-")]
    arrays = [block.values for block in tensor.blocks()]
    arrays += [gradient.values for block in tensor.blocks() for _, gradient in block.gradients()]
    assert len(checks) == sum(array.npartitions > 1 for array in arrays)
    assert (len(checks) > 0) == (chunks is not None)


@pytest.fixture(scope="module")
def process_pool():
    """Two worker processes for dask's ``processes`` scheduler, started once for the
    module (spawning them for each computation took a few seconds)."""
    context = multiprocessing.get_context(dask.config.get("multiprocessing.context", "spawn"))
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        yield pool


@pytest.mark.parametrize("chunks", [None, 1, 7])
def test_computing_a_damaged_map_or_block_fails(damaged, process_pool, chunks):
    _metatensor_refuses(damaged)
    with raise_if_dask_computes():
        tensor = mtd.load(damaged, chunks=chunks)
    with pytest.raises(mtd.DamagedFileError, match=f"in member '{GRADIENT}'"):
        tensor.compute()
    with pytest.raises(mtd.DamagedFileError, match=f"in member '{GRADIENT}'"):
        tensor.block(8).compute()
    with pytest.raises(mtd.DamagedFileError):
        dask.compute(tensor.block(8), scheduler="processes", pool=process_pool)
    with pytest.raises(mtd.DamagedFileError):
        tensor.persist()
    # an array computed alone reads its member alone: other blocks are still read;
    # so is a slice that dask makes of a member of several chunks (dask optimises
    # its own arrays: no check), while a member of one chunk is checked by any read
    tensor.block(1).values.compute()
    damaged_group = _group_key(tensor.block(8).gradient("positions"))
    if damaged_group is not None and _group_key(tensor.block(1)) == damaged_group:
        # tiny blocks are read by groups of neighbours, each member checked by its
        # group's task: the blocks of the damaged member's group are refused too
        with pytest.raises(mtd.DamagedFileError, match=f"in member '{GRADIENT}'"):
            tensor.block(1).compute()
    else:
        tensor.block(1).compute()
    gradient = tensor.block(8).gradient("positions").values
    if gradient.npartitions > 1:
        gradient[:2].compute()
    else:
        with pytest.raises(mtd.DamagedFileError, match=f"in member '{GRADIENT}'"):
            gradient[:2].compute()


DERIVED = {
    "multiply": lambda t, _: mtd.to_metatensor(mtd.multiply(t, t)),
    "sum_over_samples": lambda t, _: mtd.sum_over_samples(t, "atom").compute(),
    "keys_to_samples": lambda t, _: mtd.keys_to_samples(t, "neighbor_type").compute(),
    "equal": lambda t, _: mtd.equal(t, t),
    "allclose": lambda t, _: mtd.allclose(mtd.multiply(t, 1.0), t),
    "to_zarr": lambda t, folder: mtd.pow(t, 2).to_zarr(folder / "p.zarr"),
    "save": lambda t, folder: mtd.save(folder / "p.mts", mtd.abs(t)),
}


@pytest.mark.parametrize("chunks", [1, 7])
@pytest.mark.parametrize("derive", DERIVED)
def test_an_operation_reading_a_damaged_member_whole_fails(damaged, tmp_path, chunks, derive):
    tensor = mtd.load(damaged, chunks=chunks)
    with pytest.raises(mtd.DamagedFileError, match=f"in member '{GRADIENT}'"):
        DERIVED[derive](tensor, tmp_path)
    assert not (tmp_path / "p.mts").exists()
    if (tmp_path / "p.zarr").exists():
        with pytest.raises(mtd.MetatensorDaskError, match="incomplete"):
            mtd.open_zarr(tmp_path / "p.zarr")


def test_an_operation_reading_part_of_a_damaged_member_fails(tmp_path):
    # a member read in part is checked by its streamed check, which reads the chunks
    # that the computation does not need (the last one, damaged here); before, the
    # first sample was read without an error
    source = Path(shutil.copy(SPHERICAL, tmp_path / "source.npz"))
    _, size = _data_offset(source, GRADIENT)
    tensor = mtd.load(_flip(source, GRADIENT, size - 3), chunks=1)
    assert tensor.block(8).gradient("positions").values.npartitions > 1
    first = tensor.block(8).samples.values[:1]
    selection = mtd.Labels(tensor.block(8).samples.names, first)
    with pytest.raises(mtd.DamagedFileError, match=f"in member '{GRADIENT}'"):
        mtd.slice(mtd.multiply(tensor, 2.0), "samples", selection).compute()
    # the same slice of the clean file computes as metatensor's
    clean = mtd.slice(mtd.multiply(mtd.load(source, chunks=1), 2.0), "samples", selection)
    expected = mops.multiply(metatensor.load(str(SPHERICAL)), 2.0)
    names = tensor.block(8).samples.names
    expected = mops.slice(expected, "samples", metatensor.Labels(names, first))
    assert_equal_to_metatensor(clean.compute(), expected)


def _group_key(block) -> str | None:
    """The group whose task reads the values of ``block``, if any."""
    return getattr(block._held_values(), "group_key", None)


def test_blocks_outside_the_damaged_group_are_read(damaged, monkeypatch):
    from metatensor_dask.io import _mts_tiny

    monkeypatch.setattr(_mts_tiny, "GROUP_BYTES", 1)  # a group per member
    tensor = mtd.load(damaged)
    expected = metatensor.load(str(SPHERICAL))
    assert_equal_to_metatensor(tensor.block(1).compute(), expected.block(1))
    with pytest.raises(mtd.DamagedFileError, match=f"in member '{GRADIENT}'"):
        tensor.block(8).compute()


def test_saving_a_damaged_file_fails_and_writes_nothing(damaged, tmp_path):
    target = tmp_path / "copy.mts"
    with pytest.raises(mtd.DamagedFileError, match=f"in member '{GRADIENT}'"):
        mtd.save(target, mtd.load(damaged, chunks=3))
    assert sorted(os.listdir(tmp_path)) == sorted([damaged.name, "source.npz"])


def test_a_zarr_store_of_a_damaged_file_is_not_complete(damaged, tmp_path):
    store = tmp_path / "copy.zarr"
    with pytest.raises(mtd.DamagedFileError, match=f"in member '{GRADIENT}'"):
        mtd.load(damaged, chunks=3).to_zarr(store)
    with pytest.raises(mtd.MetatensorDaskError, match="is incomplete"):
        mtd.open_zarr(store)


def test_convert_refuses_a_damaged_file(damaged, tmp_path, capsys):
    for destination in [tmp_path / "copy.zarr", tmp_path / "copy.mts"]:
        assert main(["convert", str(damaged), str(destination), "--quiet"]) == 1
        assert f"in member '{GRADIENT}'" in capsys.readouterr().err
    with pytest.raises(mtd.MetatensorDaskError, match="is incomplete"):
        mtd.open_zarr(tmp_path / "copy.zarr")
    assert not (tmp_path / "copy.mts").exists()


def test_process_workers_of_a_local_cluster_check_too(damaged, tmp_path):
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
        ) as cluster,
        distributed.Client(cluster),
    ):
        tensor = mtd.load(damaged, chunks=5)
        with pytest.raises(mtd.DamagedFileError, match=f"in member '{GRADIENT}'"):
            tensor.compute()
        with pytest.raises(mtd.DamagedFileError, match=f"in member '{GRADIENT}'"):
            tensor.to_zarr(tmp_path / "copy.zarr")
        with pytest.raises(mtd.DamagedFileError, match=f"in member '{GRADIENT}'"):
            mtd.save(tmp_path / "copy.mts", tensor)
        # a slice reading the gradient's last chunk only: its streamed check runs on a
        # worker, whose record of checked members is its own
        rows = mtd.load(damaged, chunks=1)
        assert rows.block(8).gradient("positions").values.npartitions > 1
        last = rows.block(8).samples.values[-1:]
        sliced = mtd.slice(rows, "samples", mtd.Labels(rows.block(8).samples.names, last))
        with pytest.raises(mtd.DamagedFileError, match=f"in member '{GRADIENT}'"):
            sliced.compute()
        clean = mtd.load(SPHERICAL, chunks=5).compute()
    assert_equal_to_metatensor(clean, metatensor.load(str(SPHERICAL)))
    with pytest.raises(mtd.MetatensorDaskError, match="is incomplete"):
        mtd.open_zarr(tmp_path / "copy.zarr")
    assert not (tmp_path / "copy.mts").exists()


# -- check_file --------------------------------------------------------------------------


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def _write(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _edited(tmp_path: Path, name: str, edit) -> Path:
    """The tutorial file with member ``name`` replaced (a valid archive: CRCs match)."""
    members = _members(SPHERICAL)
    array = np.load(io.BytesIO(members[name]))
    members[name] = _npy(edit(array))
    return _write(tmp_path / "edited.mts", members)


def test_check_file_accepts_clean_files(tmp_path):
    check_file(SPHERICAL)
    tensor = mtd.load(SPHERICAL)
    mtd.save(tmp_path / "map.mts", tensor)
    mtd.save(tmp_path / "block.mts", tensor.block(2))
    mtd.save(tmp_path / "labels.mts", tensor.keys)
    for name in ["map.mts", "block.mts", "labels.mts"]:
        check_file(tmp_path / name)


def test_check_file_finds_damaged_members(damaged, tmp_path):
    with pytest.raises(mtd.DamagedFileError, match=f"Invalid checksum.*in member '{GRADIENT}'"):
        check_file(damaged)
    path = _flip(damaged.parent / "source.npz", "blocks/2/properties.npy", 130)
    with pytest.raises(mtd.DamagedFileError, match=r"in member 'blocks/2/properties\.npy'"):
        check_file(path)


def _duplicate_first_sample(samples):
    samples[1] = samples[0]
    return samples


def _sample_out_of_range(samples):
    samples["sample"][-1] = 10_000
    return samples


@pytest.mark.parametrize(
    ("name", "edit", "message"),
    [
        ("blocks/8/samples.npy", _duplicate_first_sample, "can not have the same label entry"),
        ("blocks/8/samples.npy", lambda s: s[:-1], "the values shape along axis 0 is 2 but"),
        (
            "blocks/8/gradients/positions/samples.npy",
            _sample_out_of_range,
            "invalid value for the 'sample' dimension in gradient samples",
        ),
    ],
    ids=["duplicated labels", "values against labels", "gradient sample out of range"],
)
def test_check_file_finds_inconsistent_content(tmp_path, name, edit, message):
    path = _edited(tmp_path, name, edit)
    with pytest.raises(mtd.DamagedFileError, match=message) as error:
        check_file(path)
    assert f"'{path}' is damaged" in str(error.value)


def test_check_file_of_a_truncated_or_missing_file(tmp_path):
    data = SPHERICAL.read_bytes()
    (tmp_path / "cut.mts").write_bytes(data[: len(data) // 2])
    with pytest.raises(mtd.DamagedFileError, match=r"cut\.mts"):
        check_file(tmp_path / "cut.mts")
    with pytest.raises(mtd.MetatensorError, match="io error") as error:
        check_file(tmp_path / "missing.mts")
    assert not isinstance(error.value, mtd.DamagedFileError)


def test_check_file_reads_in_bounded_pieces(tmp_path, monkeypatch):
    values = np.arange(3 * 2**20, dtype=np.float64).reshape(-1, 8)  # 24 MiB
    block = metatensor.TensorBlock(
        values,
        metatensor.Labels.range("s", len(values)),
        [],
        metatensor.Labels.range("p", 8),
    )
    metatensor.save(str(tmp_path / "big.mts"), block)
    sizes = []
    preadv = os.preadv

    def recording(fd, buffers, offset):
        sizes.append(sum(memoryview(b).nbytes for b in buffers))
        return preadv(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", recording)
    check_file(tmp_path / "big.mts")
    assert sum(sizes) >= values.nbytes
    assert max(sizes) <= 2**24


# -- compressed members ------------------------------------------------------------------


def test_compressed_members_are_checked(tmp_path):
    members = _members(SPHERICAL)
    path = _write(tmp_path / "compressed.npz", members, zipfile.ZIP_DEFLATED)
    assert_equal_to_metatensor(mtd.load(path), metatensor.load(str(SPHERICAL)))
    check_file(path)
    for name in ["blocks/0/samples.npy", GRADIENT]:
        offset, size = _data_offset(path, name)
        data = bytearray(path.read_bytes())
        data[offset + size // 2] ^= 0x01
        (tmp_path / "bad.npz").write_bytes(bytes(data))
        with pytest.raises(mtd.DamagedFileError, match=f"in member '{name}'"):
            mtd.load(tmp_path / "bad.npz")
        with pytest.raises(mtd.DamagedFileError, match=f"in member '{name}'"):
            check_file(tmp_path / "bad.npz")


def _set_declared_size(path: Path, name: str, size: int) -> None:
    """Edit the uncompressed size that the central directory and the local header
    record for ``name`` (a crafted file: both agree)."""
    data = bytearray(path.read_bytes())
    start = data.index(b"PK\x01\x02")
    while True:
        length, extra, comment = struct.unpack_from("<HHH", data, start + 28)
        if data[start + 46 : start + 46 + length].decode() == name:
            struct.pack_into("<I", data, start + 24, size)
            (local,) = struct.unpack_from("<I", data, start + 42)
            struct.pack_into("<I", data, local + 22, size)
            break
        start += 46 + length + extra + comment
    path.write_bytes(bytes(data))


def test_zip_bombs_are_refused_before_decompressing(tmp_path):
    # a header claiming 8 GB of float64 (while the member holds 8 bytes of data)
    header = _npy(np.zeros((1, 1)))[:-8]
    bomb = header.replace(b"(1, 1), }         ", b"(10000000, 100), }")
    assert len(bomb) == len(header)
    members = _members(SPHERICAL)
    members["blocks/0/values.npy"] = bomb + b"\0" * 8
    path = _write(tmp_path / "bomb.npz", members, zipfile.ZIP_DEFLATED)
    with pytest.raises(mtd.MetatensorError, match="header describes 8000000000"):
        mtd.load(path)
    # the directory declares a size that no DEFLATE stream of this length can produce
    _set_declared_size(path, "blocks/0/values.npy", 4_000_000_000)
    with pytest.raises(mtd.MetatensorError, match="more than DEFLATE can produce"):
        mtd.load(path)


# -- names that would escape -------------------------------------------------------------


def _copy(block: metatensor.TensorBlock) -> metatensor.TensorBlock:
    """``block`` without its gradients."""
    return metatensor.TensorBlock(block.values, block.samples, block.components, block.properties)


def _with_gradient(name: str, nested: bool = False) -> metatensor.TensorMap:
    """A one-block map with a gradient called ``name`` (in ``positions`` if ``nested``)."""
    block = metatensor.load(str(SPHERICAL)).block(0)
    positions = block.gradient("positions")
    result = _copy(block)
    if nested:
        gradient = _copy(positions)
        gradient.add_gradient(name, _copy(positions))
        result.add_gradient("positions", gradient)
    else:
        result.add_gradient(name, _copy(positions))
    return metatensor.TensorMap(metatensor.Labels.range("k", 1), [result])


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", "a\\b"])
@pytest.mark.parametrize("nested", [False, True])
def test_unsafe_gradient_names_are_not_saved(tmp_path, name, nested):
    tensor = mtd.from_metatensor(_with_gradient(name, nested))
    with pytest.raises(mtd.UnsafeNameError, match="gradient name"):
        mtd.save(tmp_path / "x.mts", tensor)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["../../x", "a/b", ".."])
def test_unsafe_member_names_are_refused_when_reading(tmp_path, name):
    path = tmp_path / "x.mts"
    metatensor.save(str(path), _with_gradient(name))
    with pytest.raises(mtd.UnsafeNameError, match=r"x\.mts"):
        mtd.load(path)
    with pytest.raises(mtd.UnsafeNameError):
        check_file(path)


# -- mtd.verify and the CLI's verify on metatensor files ----------------------------------


def test_verify_reports_a_clean_file_intact(tmp_path, capsys):
    path = Path(shutil.copy(SPHERICAL, tmp_path / "clean.npz"))
    report = mtd.verify(path)
    assert report.ok and report.problems == []
    assert main(["verify", str(path), "--quiet"]) == 0


def test_verify_names_the_damaged_member(damaged, capsys):
    report = mtd.verify(damaged)
    assert not report.ok
    assert len(report.problems) == 1 and "Invalid checksum" in report.problems[0]
    assert main(["verify", str(damaged), "--quiet"]) == 1
    assert "Invalid checksum" in capsys.readouterr().err
