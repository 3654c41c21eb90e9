"""Members of metatensor files found by their position in the archive: where metatensor
writes them (no index of all names is built), and by name in files laid out otherwise
(rewritten by another ZIP tool); the map loaded is metatensor's either way."""

from __future__ import annotations

import random
import zipfile

import metatensor
import pytest
from test_mts_groups import tiny_map

import metatensor_dask as mtd
from metatensor_dask.io import _zip
from metatensor_dask.io._mts_read import _plain_names
from metatensor_dask.io.mts import check_file
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes


def _rewritten(source, target, order) -> None:
    """``source`` written again by Python's zipfile, its members in ``order``."""
    with zipfile.ZipFile(source) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        for name in order(list(contents)):
            archive.writestr(name, contents[name])


def test_members_asked_for_in_file_order_need_no_index(tmp_path):
    path = tmp_path / "t.mts"
    metatensor.save(path, tiny_map(6))
    members = _zip.read_directory(str(path))
    for k, name in enumerate(members.names):
        assert members.find(name) == k
    assert members._index is None
    # a name asked for out of order: found through the index, then in order again
    assert members.find("blocks/2/values.npy") == members.names.index("blocks/2/values.npy")
    assert members.find("blocks/2/samples.npy") == members.names.index("blocks/2/samples.npy")
    assert members.find("blocks/9/values.npy") == -1
    assert "blocks/9/values.npy" not in members and "keys.npy" in members


def test_members_held_in_a_mapping_without_an_index(tmp_path):
    """Membership of names not where they are expected scans the names, building no
    index; a name missing is a KeyError."""
    path = tmp_path / "t.mts"
    metatensor.save(path, tiny_map(3))
    members = _zip.read_directory(str(path))
    assert "blocks/2/properties.npy" in members and "info.json" not in members
    assert members._index is None
    with pytest.raises(KeyError):
        members["missing.npy"]
    member = members["blocks/1/samples.npy"]
    assert member.name == "blocks/1/samples.npy" and member.stored


@pytest.mark.parametrize(
    "order",
    [
        pytest.param(lambda names: names, id="metatensor's order"),
        pytest.param(lambda names: names[::-1], id="reversed"),
        pytest.param(lambda names: random.Random(3).sample(names, len(names)), id="shuffled"),
        # keys last, one block's members moved first: in order before and after
        pytest.param(lambda names: names[9:18] + names[1:9] + names[18:] + names[:1], id="moved"),
    ],
)
def test_a_file_in_any_member_order_loads_as_metatensor_does(tmp_path, order):
    expected = tiny_map(12)
    expected.set_info("origin", "test")
    metatensor.save(tmp_path / "t.mts", expected)
    _rewritten(tmp_path / "t.mts", tmp_path / "r.mts", order)
    theirs = metatensor.load(tmp_path / "r.mts")
    with raise_if_dask_computes():
        tensor = mtd.load(tmp_path / "r.mts")
    assert_equal_to_metatensor(tensor, theirs)
    assert tensor.info() == {"origin": "test"}
    check_file(tmp_path / "r.mts")
    # saved again in metatensor's order: the bytes metatensor writes
    mtd.save(tmp_path / "ours.mts", tensor)
    metatensor.save(tmp_path / "theirs.mts", theirs)
    assert (tmp_path / "ours.mts").read_bytes() == (tmp_path / "theirs.mts").read_bytes()


def test_a_member_missing_from_a_reordered_file_is_named(tmp_path):
    metatensor.save(tmp_path / "t.mts", tiny_map(4))
    _rewritten(
        tmp_path / "t.mts",
        tmp_path / "r.mts",
        lambda names: [n for n in names[::-1] if n != "blocks/2/samples.npy"],
    )
    with pytest.raises(
        mtd.MetatensorError, match=r"not found in archive: at 'blocks/2/samples\.npy'"
    ):
        mtd.load(tmp_path / "r.mts")


@pytest.mark.parametrize(
    "name",
    ["blocks//x.npy", "blocks/./x.npy", "blocks/../x.npy", "/x.npy", "x/", "blocks/a\nb.npy",
     "blocks/ x.npy", "blocks\\x.npy"],
)  # fmt: skip
def test_unsafe_member_names_among_plain_ones_are_refused(tmp_path, name):
    """Names of plain characters are checked all at once; one empty, '.' or '..'
    component, or a character outside them, among many plain names is still found."""
    metatensor.save(tmp_path / "t.mts", tiny_map(5))
    _rewritten(tmp_path / "t.mts", tmp_path / "r.mts", lambda names: names)
    with zipfile.ZipFile(tmp_path / "r.mts", "a") as archive:
        archive.writestr(name, b"x")
    with pytest.raises(mtd.UnsafeNameError, match="name component"):
        mtd.load(tmp_path / "r.mts")


def test_plain_names_of_other_members_are_accepted(tmp_path):
    metatensor.save(tmp_path / "t.mts", tiny_map(3))
    _rewritten(tmp_path / "t.mts", tmp_path / "r.mts", lambda names: names)
    with zipfile.ZipFile(tmp_path / "r.mts", "a") as archive:
        archive.writestr("notes/read-me_1.txt", b"x")
    assert_equal_to_metatensor(mtd.load(tmp_path / "r.mts"), metatensor.load(tmp_path / "t.mts"))


@pytest.mark.parametrize(
    ("names", "plain"),
    [
        (["keys.npy", "blocks/0/values.npy", "blocks/0/gradients/r_2-b/values.npy"], True),
        ([".a/b..c", "x"], True),
        ([], False), ([""], False), (["x", ""], False), (["a//b"], False), (["/a"], False),
        (["a/"], False), (["."], False), ([".."], False), (["./a"], False), (["a/.."], False),
        (["a/./b"], False), (["a", "..", "b"], False), (["a\nb"], False), (["a b"], False),
        (["é"], False), (["a\\b"], False),
    ],
)  # fmt: skip
def test_plain_names_are_told_apart_at_once(names, plain):
    assert _plain_names(names) is plain


@pytest.mark.parametrize("where", ["right after", "at the end"])
def test_a_member_held_twice_is_refused(tmp_path, where):
    """Two members of one name: ZIP readers differ on which they take (Python's zipfile
    the last, a lookup by position the first), so the file is refused, naming it."""
    source, path = tmp_path / "t.mts", tmp_path / "twice.mts"
    metatensor.save(source, tiny_map(3))
    twice = "blocks/1/values.npy"

    def order(names: list[str]) -> list[str]:
        position = names.index(twice) + 1 if where == "right after" else len(names)
        return [*names[:position], twice, *names[position:]]

    with pytest.warns(UserWarning, match="Duplicate name"):
        _rewritten(source, path, order)
    with pytest.raises(mtd.MetatensorError, match=f"the member '{twice}' appears twice"):
        mtd.load(path)
    with pytest.raises(mtd.MetatensorError, match="appears twice"):
        check_file(path)
