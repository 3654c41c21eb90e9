"""Fortran-ordered arrays, as ``metatensor.save(..., use_numpy=True)`` writes them.

metatensor's numpy writer keeps the memory order of the values: a block of
Fortran-ordered values is saved with ``'fortran_order': True`` headers, which
``metatensor.load(..., use_numpy=True)`` reads (and its native loader refuses).
"""

import io
import zipfile

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd


def fortran_block(values_dtype="f8"):
    rng = np.random.default_rng(0)
    values = np.asfortranarray(rng.normal(size=(5, 3, 4)).astype(values_dtype))
    block = metatensor.TensorBlock(
        values,
        metatensor.Labels.range("s", 5),
        [metatensor.Labels.range("c", 3)],
        metatensor.Labels.range("p", 4),
    )
    samples = np.array([[0, 0], [0, 1], [2, 0], [4, 0], [4, 1], [4, 2]], dtype=np.int32)
    gradient = np.asfortranarray(rng.normal(size=(6, 2, 3, 4)).astype(values_dtype))
    block.add_gradient(
        "g",
        metatensor.TensorBlock(
            gradient,
            metatensor.Labels(["sample", "i"], samples),
            [metatensor.Labels.range("x", 2), metatensor.Labels.range("c", 3)],
            metatensor.Labels.range("p", 4),
        ),
    )
    return block


def assert_loads_as_metatensor(path, theirs):
    for chunks in (None, 2):
        ours = mtd.load(path, chunks)
        metatensor.equal_raise(mtd.to_metatensor(ours), theirs)
        # read in native byte order, as every array of a loaded file
        assert ours.block(0).values.dtype == theirs.block(0).values.dtype.newbyteorder("=")


def test_numpy_writer_output_loads_and_saves_as_metatensor(tmp_path):
    tensor = metatensor.TensorMap(metatensor.Labels.single(), [fortran_block()])
    path = tmp_path / "fortran.mts"
    metatensor.save(path, tensor, use_numpy=True)
    with zipfile.ZipFile(path) as archive:
        assert b"'fortran_order': True" in archive.read("blocks/0/values.npy")[:128]
    theirs = metatensor.load(path, use_numpy=True)
    assert_loads_as_metatensor(path, theirs)
    mtd.save(tmp_path / "ours.mts", mtd.load(path, 2))
    metatensor.save(tmp_path / "theirs.mts", theirs)
    assert (tmp_path / "ours.mts").read_bytes() == (tmp_path / "theirs.mts").read_bytes()

    block_path = tmp_path / "block.mts"
    metatensor.save(block_path, fortran_block(), use_numpy=True)
    ours = mtd.load_block(block_path, 2)
    metatensor.equal_block_raise(
        mtd.to_metatensor(ours), metatensor.load_block(block_path, use_numpy=True)
    )


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_big_endian_fortran_members_stored_or_compressed(tmp_path, compression):
    tensor = metatensor.TensorMap(metatensor.Labels.single(), [fortran_block(">f4")])
    source = io.BytesIO(metatensor.io.save_buffer(tensor, use_numpy=True))
    path = tmp_path / "big-endian.mts"
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(path, "w", compression) as new:
        for name in old.namelist():
            data = old.read(name)
            if name.endswith("values.npy"):
                array = np.load(io.BytesIO(data))
                assert array.dtype == ">f4" and array.flags.f_contiguous
            new.writestr(name, data)
    theirs = metatensor.load(path, use_numpy=True)
    assert_loads_as_metatensor(path, theirs)


def test_a_changed_byte_of_a_fortran_member_is_found(tmp_path):
    path = tmp_path / "fortran.mts"
    tensor = metatensor.TensorMap(metatensor.Labels.single(), [fortran_block()])
    metatensor.save(path, tensor, use_numpy=True)
    with zipfile.ZipFile(path) as archive:
        member = archive.getinfo("blocks/0/values.npy")
    data = bytearray(path.read_bytes())
    # the last byte of the member's data, after its local header (30 bytes, the name
    # and the extra field, whose lengths are at 26 and 28)
    local = member.header_offset
    name_length, extra_length = np.frombuffer(data[local + 26 : local + 30], "<u2")
    last = local + 30 + int(name_length) + int(extra_length) + member.compress_size - 1
    data[last] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(mtd.DamagedFileError, match=r"Invalid checksum.*'blocks/0/values\.npy'"):
        mtd.load(path)
