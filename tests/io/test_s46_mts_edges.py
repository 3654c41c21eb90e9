"""metatensor files that other tools wrote, re-zipped or edited: each is read as
metatensor reads it, or refused naming the problem and the remedy."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.io.mts import check_file
from metatensor_dask.testing import assert_equal_to_metatensor

_DATE = (2000, 1, 1, 0, 0, 0)


def _labels(names: list[str], entries: list[list[int]]) -> metatensor.Labels:
    return metatensor.Labels(names, np.array(entries, np.int32).reshape(-1, len(names)))


def _map(fill: float | None = None) -> metatensor.TensorMap:
    """Two blocks with negative label entries, a gradient, a gradient of it and info."""
    rng = np.random.default_rng(46)
    components = [_labels(["c"], [[-1], [0], [1]])]
    properties = _labels(["p"], [[7], [-3]])
    blocks = []
    for _ in range(2):
        values = rng.normal(size=(5, 3, 2)) if fill is None else np.full((5, 3, 2), fill)
        samples = _labels(["system", "atom"], [[i, -i] for i in range(5)])
        block = metatensor.TensorBlock(values, samples, components, properties)
        gradient = metatensor.TensorBlock(
            rng.normal(size=(4, 3, 3, 2)),
            _labels(["sample", "xyz"], [[0, 0], [0, 1], [2, 0], [4, 1]]),
            [_labels(["d"], [[0], [1], [2]]), *components],
            properties,
        )
        gradient.add_gradient(
            "strain",
            metatensor.TensorBlock(
                rng.normal(size=(2, 2, 3, 3, 2)),
                _labels(["sample", "q"], [[1, 0], [3, 5]]),
                [_labels(["e"], [[0], [1]]), _labels(["d"], [[0], [1], [2]]), *components],
                properties,
            ),
        )
        block.add_gradient("pösitions", gradient)
        blocks.append(block)
    tensor = metatensor.TensorMap(_labels(["k", "m"], [[0, -1], [1, 2]]), blocks)
    tensor.set_info("note", "ünïcode ☃")
    return tensor


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("source") / "source.mts"
    metatensor.save(path, _map())
    return path


def _members(path: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def _rezip(source: Path, target: Path, compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(target, "w", compression) as archive:
        for name, data in _members(source):
            archive.writestr(zipfile.ZipInfo(name, _DATE), data, compress_type=compression)
    return target


def _commented(source: Path, target: Path) -> Path:
    _rezip(source, target)
    with zipfile.ZipFile(target, "a") as archive:
        archive.comment = b"written by another tool, PK\x05\x06 in its comment"
    return target


def _after_another_archive(source: Path, target: Path) -> Path:
    # `cat other.mts source.mts`: ZIP readers take the directory at the end, metatensor too
    other = target.with_name("other.mts")
    metatensor.save(other, _map(fill=42.0))
    target.write_bytes(other.read_bytes() + source.read_bytes())
    return target


def _bytes_appended(source: Path, target: Path) -> Path:
    target.write_bytes(source.read_bytes() + b"bytes a transfer added")
    return target


def _long_padded_headers(source: Path, target: Path) -> Path:
    # values headers longer than the bytes read with the directory, keys in another
    # order and double quotes, as other writers of the .npy format may lay them out
    members = []
    for name, data in _members(source):
        if name.endswith("values.npy"):
            array = np.lib.format.read_array(io.BytesIO(data))
            text = f'{{"shape": {array.shape}, "fortran_order": False, "descr": "<f8"}}'
            header = text.encode().ljust(1000) + b"\n"
            data = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
            data += array.tobytes()
        members.append((name, data))
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in members:
            archive.writestr(zipfile.ZipInfo(name, _DATE), data)
    return target


EDITS = {
    "an archive comment": _commented,
    "after another archive": _after_another_archive,
    "bytes appended": _bytes_appended,
    "long headers": _long_padded_headers,
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_files_other_tools_wrote_read_and_save_as_metatensors(tmp_path, source, edit):
    path = EDITS[edit](source, tmp_path / "edited.mts")
    theirs = metatensor.load(path)
    assert_equal_to_metatensor(mtd.load(path), theirs)
    for chunks in (1, 3, "1KiB"):
        assert_equal_to_metatensor(mtd.load(path, chunks=chunks), theirs)
    check_file(path)
    # a copy is metatensor's own copy, byte for byte
    mtd.save(tmp_path / "ours.mts", mtd.load(path, chunks=2))
    metatensor.save(tmp_path / "theirs.mts", theirs)
    assert (tmp_path / "ours.mts").read_bytes() == (tmp_path / "theirs.mts").read_bytes()


# -- refused, naming the problem and the remedy ------------------------------------------


@pytest.mark.parametrize(
    "compression", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA], ids=["bzip2", "lzma"]
)
def test_members_compressed_otherwise_than_with_deflate_are_refused(tmp_path, source, compression):
    # metatensor reads STORED and DEFLATE members only; these were read while their
    # ratio stayed within DEFLATE's, and a file of repetitive values was refused as
    # "damaged or crafted"
    path = _rezip(source, tmp_path / "other-method.mts", compression)
    with pytest.raises(metatensor.MetatensorError, match="Compression method not supported"):
        metatensor.load(path)
    method = "bzip2" if compression == zipfile.ZIP_BZIP2 else "LZMA"
    for load in (mtd.load, check_file):
        with pytest.raises(mtd.MetatensorError) as error:
            load(path)
        assert f"'keys.npy' is compressed with {method}" in str(error.value)
        assert "archive the file again" in str(error.value)
        # whole, in a format metatensor does not read: not called damaged
        assert not isinstance(error.value, mtd.DamagedFileError)
        assert "is damaged" not in str(error.value)
    assert "is damaged" not in mtd.verify(path).problems[0]


def test_a_note_of_another_tool_compressed_with_bzip2_is_ignored(tmp_path, source):
    # metatensor reads the file, ignoring the note; so do load and check_file
    path = _rezip(source, tmp_path / "noted.mts")
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("NOTES.txt", b"notes " * 100, compress_type=zipfile.ZIP_BZIP2)
    theirs = metatensor.load(path)
    assert_equal_to_metatensor(mtd.load(path, chunks=2), theirs)
    check_file(path)
    assert mtd.verify(path).ok


@pytest.mark.parametrize(
    ("cut", "cause"), [(-30, "directory cut"), (200, "member cut"), (70_000, "appended")]
)
def test_a_file_cut_short_or_appended_to_names_the_cause(tmp_path, source, cut, cause):
    data = source.read_bytes()
    edited = data[:cut] if cut < 1000 else data + b"\0" * cut
    path = tmp_path / "cut.mts"
    path.write_bytes(edited)
    with pytest.raises(metatensor.MetatensorError):
        metatensor.load(path)
    for load in (mtd.load, mtd.load_block):
        with pytest.raises(mtd.MetatensorError, match="invalid Zip archive") as error:
            load(path)
        assert "it was cut short" in str(error.value), cause
        assert "copy or write it again from its source" in str(error.value)


def _values_header(text: str, array: np.ndarray) -> bytes:
    header = text.encode() + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + array.tobytes()


HEADERS = {
    "leading whitespace": (
        "\n  {'descr': '<f8', 'fortran_order': False, 'shape': (5, 3, 2), }",
        "starts with whitespace",
    ),
    "another key": (
        "{'descr': '<f8', 'fortran_order': False, 'shape': (5, 3, 2), 'order': 'C'}",
        "its keys are 'descr', 'fortran_order', 'order', 'shape'",
    ),
    "a list for the shape": (
        "{'descr': '<f8', 'fortran_order': False, 'shape': [5, 3, 2]}",
        "'shape' must be a tuple",
    ),
}


@pytest.mark.parametrize("case", list(HEADERS))
def test_a_values_header_outside_the_format_says_what_is_wrong(tmp_path, source, case):
    # the message showed the header stripped, "{'descr': '<f8', ...}", which looked valid
    text, problem = HEADERS[case]
    values = np.zeros((5, 3, 2))
    path = tmp_path / "header.mts"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in _members(source):
            if name == "blocks/0/values.npy":
                data = _values_header(text, values)
            archive.writestr(zipfile.ZipInfo(name, _DATE), data)
    with pytest.raises(metatensor.MetatensorError):
        metatensor.load(path)
    with pytest.raises(mtd.MetatensorError, match=r"invalid \.npy header") as error:
        mtd.load(path)
    assert problem in str(error.value)
    assert "write the array again" in str(error.value)
    assert not isinstance(error.value, mtd.DamagedFileError)


def _older_name(name: str) -> str:
    """The name of member ``name`` in the layout of files written before April 2023."""
    if "/gradients/" in name:
        return name.replace("/values.npy", "/data.npy")
    block, number, rest = name.split("/", 2)
    return f"{block}/{number}/values/{'data.npy' if rest == 'values.npy' else rest}"


def test_a_file_of_the_layout_before_april_2023_names_it(tmp_path, source):
    # metatensor says only "specified file not found in archive: at 'blocks/0/values.npy'"
    path = tmp_path / "older.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in _members(source):
            older = name if not name.startswith("blocks/") else _older_name(name)
            archive.writestr(zipfile.ZipInfo(older, _DATE), data)
    with pytest.raises(metatensor.MetatensorError, match="not found in archive"):
        metatensor.load(path)
    with pytest.raises(mtd.MetatensorError, match="not found in archive") as error:
        mtd.load(path)
    assert "holds 'blocks/0/values/data.npy' instead" in str(error.value)
    assert "load it with the version that wrote it" in str(error.value)


def test_an_archive_with_windows_separators_says_so(tmp_path, source):
    # some Windows tools write 'blocks\0\values.npy'; the error called the file damaged,
    # or written with a gradient name holding '\'
    path = tmp_path / "windows.mts"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in _members(source):
            archive.writestr(zipfile.ZipInfo(name.replace("/", "\\"), _DATE), data)
    with pytest.raises(metatensor.MetatensorError):
        metatensor.load(path)
    with pytest.raises(mtd.UnsafeNameError) as error:
        mtd.load(path)
    assert "separates folders with '\\'" in str(error.value)
    assert "archive the file again with a tool that writes '/'" in str(error.value)


@pytest.mark.parametrize("content", [b"", b"hello\n"])
def test_a_file_that_is_no_zip_archive_says_what_metatensor_files_are(tmp_path, content):
    """``info text.mts`` said only metatensor's "File is not a zip file"."""
    path = tmp_path / "text.mts"
    path.write_bytes(content)
    remedy = "metatensor files are ZIP archives .* neither starts nor ends as one: check the path"
    with pytest.raises(mtd.MetatensorError, match=remedy):
        mtd.load(path)
    with pytest.raises(mtd.MetatensorError, match=remedy):
        check_file(path)


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="Linux's /proc only")
def test_a_file_whose_start_can_not_be_read_gets_the_format_error_not_an_os_error():
    """A file that fails to read at its start (``/proc/self/mem`` gives EIO there)
    raised the bare ``OSError`` of the look for a ``.npy`` start, without the path."""
    with pytest.raises(mtd.MetatensorError, match="unable to load a TensorMap from '/proc"):
        mtd.load("/proc/self/mem")
