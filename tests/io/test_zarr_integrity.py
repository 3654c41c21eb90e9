"""Nothing silently wrong when reading a store: every chunk is stored (format 2), a lost
one is an error; metadata is checked on open, Labels whenever they are read."""

from __future__ import annotations

import json
import re
import shutil
import warnings

import dask
import numpy as np
import pytest
import zarr
from older_formats import drop_chunk_tables, make_format_3, make_format_4
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.execution.cli import main
from metatensor_dask.labels import Labels
from metatensor_dask.testing import assert_equal_to_metatensor

CODECS = {
    "default": {},
    "no-checksum": {"metatensor_dask.checksum": False},
    "zstd": {"metatensor_dask.compressor": "zstd"},
    "sharded": {"metatensor_dask.shard-chunks": 2},
    "sharded-zstd": {"metatensor_dask.shard-chunks": 2, "metatensor_dask.compressor": "zstd"},
}


def _zeroed(seed: int = 3):
    """A tensor whose first block has all-zero rows 4:8 (one stored chunk of 4 rows)."""
    tensor = make_metatensor(seed=seed)
    tensor.block(0).values[4:8] = 0
    return tensor


def _write(path, tensor, codecs: str = "default", chunks: int = 4) -> None:
    with dask.config.set(CODECS[codecs]):
        mtd.from_metatensor(tensor).to_zarr(path, chunks=chunks)


def _root(path) -> dict:
    return json.loads((path / "zarr.json").read_text())


def _edit(path, change) -> None:
    """Apply ``change(attributes, nodes)`` to the root and the per-array documents."""
    root = _root(path)
    nodes = root["consolidated_metadata"]["metadata"]
    change(root["attributes"], nodes)
    (path / "zarr.json").write_text(json.dumps(root))
    for name, document in nodes.items():
        (path / name / "zarr.json").write_text(json.dumps(document))


def _read_everything(path) -> None:
    """Open, then read every value, gradient and Labels array."""

    def visit(block) -> None:
        block.values.compute()
        block.samples.values  # noqa: B018
        for _, gradient in block.gradients():
            visit(gradient)

    for block in mtd.open_zarr(path).blocks():
        visit(block)


def _damaged(path, match: str) -> None:
    """Reading fails with a DamagedStoreError matching ``match``, and verify finds it."""
    with pytest.raises(mtd.DamagedStoreError, match=match):
        _read_everything(path)
    problems = mtd.verify(path).problems
    assert any(re.search(match, problem) for problem in problems), problems


@pytest.mark.parametrize("codecs", sorted(CODECS))
def test_every_chunk_is_stored_and_a_lost_one_is_an_error(tmp_path, codecs):
    theirs = _zeroed()
    _write(tmp_path / "t.zarr", theirs, codecs)
    assert _root(tmp_path / "t.zarr")["attributes"]["metatensor_dask"]["format"] == 5
    # every chunk (or inner chunk of a shard) holding rows is read through checks that
    # refuse missing ones: reading everything proves that all-zero ones are stored
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "t.zarr"), theirs)
    assert mtd.verify(tmp_path / "t.zarr").ok
    sharded = codecs.startswith("sharded")
    # rows 4:8 are zeros: chunk 1, in shard 0 when sharded
    name = "c.0.0.0" if sharded else "c.1.0.0"
    (tmp_path / "t.zarr" / "blocks/0/values" / name).unlink()
    _damaged(tmp_path / "t.zarr", f"the chunk '{name}' of the array 'blocks/0/values' is missing")


def test_an_empty_inner_chunk_in_a_shard_index_is_an_error(tmp_path):
    theirs = _zeroed()
    _write(tmp_path / "t.zarr", theirs, "sharded")
    shard = tmp_path / "t.zarr" / "blocks/0/values/c.0.0.0"
    raw = bytearray(shard.read_bytes())
    index = np.frombuffer(raw[-36:-4], dtype="<u8").copy()
    index[2:4] = 2**64 - 1  # inner chunk 1 (the zeros) listed as missing
    import google_crc32c

    raw[-36:-4] = index.tobytes()
    raw[-4:] = np.uint32(google_crc32c.value(bytes(raw[-36:-4]))).astype("<u4").tobytes()
    shard.write_bytes(bytes(raw))
    _damaged(tmp_path / "t.zarr", "1 chunk\\(s\\) of the shard 'c.0.0.0' .* are missing")


@pytest.mark.parametrize(
    ("lost", "match"),
    [
        ("blocks/0/gradients/positions/values/c.0.0.0.0", "gradients/positions/values'"),
        ("blocks/0/samples/c.1.0", "chunk 'c.1.0' of the array 'blocks/0/samples'"),
        ("blocks/0/properties/c.0.0", "the array 'blocks/0/properties'"),
        ("keys/c.0.0", "the array 'keys'"),
        ("blocks/0/gradients/positions/row_pointer/c.0", "row_pointer'"),
        ("blocks/0/values", r"chunk 'c\.\d\.0\.0' of the array 'blocks/0/values' is missing"),
    ],
)
def test_lost_labels_gradients_and_arrays(tmp_path, lost, match):
    _write(tmp_path / "t.zarr", make_metatensor(seed=2))
    target = tmp_path / "t.zarr" / lost
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    _damaged(tmp_path / "t.zarr", match)


def test_complete_written_onto_a_killed_write_reads_no_zeros(tmp_path):
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(make_metatensor(seed=2)).to_zarr(path, compute=False)  # no values
    _edit(path, lambda attrs, nodes: attrs["metatensor_dask"].update(complete=True))
    # (format 4: the completion gives the store its id and lists its chunks)
    _damaged(path, "it has no valid 'metatensor_dask.store_id' attribute")


def _format_1(path) -> None:
    """Make a format 2 store look like one written by format 1."""

    def change(attrs, nodes):
        ours = attrs["metatensor_dask"]
        attrs["metatensor_dask"] = {"format": 1, "complete": ours["complete"]}

    _edit(path, change)
    drop_chunk_tables(path)


def test_format_1_stores_open_with_a_warning_and_convert_upgrades_them(tmp_path):
    theirs = _zeroed()
    old, new = tmp_path / "old.zarr", tmp_path / "new.zarr"
    _write(old, theirs, "zstd")
    _format_1(old)
    (old / "blocks/0/values/c.1.0.0").unlink()  # format 1 skipped all-zero chunks
    with pytest.warns(mtd.StoreFormatWarning, match="format 1 .*metatensor-dask convert"):
        assert_equal_to_metatensor(mtd.open_zarr(old), theirs)
    report = mtd.verify(old)  # notes, not a warning
    assert report.ok and "can not be detected" in report.notes[0]
    # the command line's main in this process (its own interpreter only cost a start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert main(["convert", "-q", str(old), str(new)]) == 0
    assert _root(new)["attributes"]["metatensor_dask"]["format"] == 5
    assert (new / "blocks/0/values/c.1.0.0").exists()
    assert_equal_to_metatensor(mtd.open_zarr(new), theirs)
    # format 1 with the default codecs stored every chunk: no warning, losses are errors
    _write(tmp_path / "plain.zarr", theirs)
    _format_1(tmp_path / "plain.zarr")
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "plain.zarr"), theirs)
    (tmp_path / "plain.zarr" / "blocks/0/values/c.1.0.0").unlink()
    _damaged(tmp_path / "plain.zarr", "chunk 'c.1.0.0'")


def _open_refused(path, match: str) -> None:
    with pytest.raises(mtd.DamagedStoreError, match=match):
        mtd.open_zarr(path)
    assert not mtd.verify(path).ok


@pytest.mark.parametrize(
    ("change", "match"),
    [
        # same size, another type: the root records float64
        (lambda a, n: n["blocks/0/values"].update(data_type="int64"), "parent has int64"),
        (
            lambda a, n: [n[p].update(data_type="int64") for p in n if p.endswith("values")],
            "disagree with what its root records",
        ),
        (
            lambda a, n: n["blocks/0/values"]["codecs"][0]["configuration"].update(endian="big"),
            "not little-endian 'bytes'",
        ),
        (
            lambda a, n: n["blocks/0/values"]["codecs"].insert(
                0, {"name": "transpose", "configuration": {"order": [2, 1, 0]}}
            ),
            "not little-endian 'bytes'",
        ),
        (lambda a, n: n["blocks/0/values"].update(fill_value=1.5), "fill value 1.5, not 0"),
        (lambda a, n: n["blocks/0/values"].update(data_type="bool"), "parent has bool"),
        (
            lambda a, n: n["blocks/0/values"]["chunk_grid"]["configuration"].update(
                chunk_shape=[0, 3, 4]
            ),
            "invalid chunk grid",
        ),
        (
            lambda a, n: [n.pop(p) for p in list(n) if "gradients/strain" in p],
            "disagree with what its root records",
        ),
        (lambda a, n: n["keys"].update(shape=[2, 2]), "more blocks than its 2 keys"),
        (lambda a, n: n["blocks/0/samples"].update(shape=[22, 2]), "has 22 entries"),
        (
            lambda a, n: n["blocks/0/values"].update(dimension_names=["samples"]),
            r"invalid dimension names \['samples'\] for \(",
        ),
        (
            lambda a, n: n["blocks/0/gradients/positions/row_pointer"].update(shape=[5]),
            "row_pointer' must be int64 with shape",
        ),
    ],
)
def test_metadata_checked_on_open(tmp_path, change, match):
    path = tmp_path / "t.zarr"
    _write(path, make_metatensor(seed=2))
    _edit(path, change)
    _open_refused(path, match)


def test_a_gradient_on_disk_but_not_in_the_consolidated_metadata(tmp_path):
    path = tmp_path / "t.zarr"
    _write(path, make_metatensor(seed=2))
    root = _root(path)
    nodes = root["consolidated_metadata"]["metadata"]
    for name in [p for p in nodes if "gradients/strain" in p]:
        del nodes[name]
    (path / "zarr.json").write_text(json.dumps(root))  # disk documents kept
    _open_refused(path, "disagree with what its root records")
    problems = mtd.verify(path).problems
    assert any(
        "blocks/1/gradients/strain/values: stored, but missing from the consolidated" in p
        for p in problems
    )


def test_per_array_metadata_checked_by_verify(tmp_path):
    path = tmp_path / "t.zarr"
    theirs = make_metatensor(seed=2)
    _write(path, theirs)
    document = path / "blocks/1/values/zarr.json"
    edited = json.loads(document.read_text())
    edited["data_type"] = "int64"
    document.write_text(json.dumps(edited))
    # readers use the consolidated copy: the data is read right
    assert_equal_to_metatensor(mtd.open_zarr(path), theirs)
    problems = mtd.verify(path).problems
    assert problems == [
        "blocks/1/values: its 'zarr.json' differs from the consolidated metadata in the root"
    ]
    document.write_text("{not json")
    assert "'blocks/1/values/zarr.json' is not valid JSON" in mtd.verify(path).problems[0]
    # a store without consolidated metadata (of a format before 4, which has no chunk
    # tables) reads every document: a clear error
    make_format_3(path)
    root = _root(path)
    del root["consolidated_metadata"]
    (path / "zarr.json").write_text(json.dumps(root))
    document.write_text("{not json")
    with pytest.raises(mtd.DamagedStoreError, match=r"'blocks/1/values/zarr\.json' is not valid"):
        mtd.open_zarr(path)


def _rewrite_labels(path, array: str, change) -> None:
    """Change a Labels array's entries, and record the new digest everywhere: only the
    content checks can find the damage."""
    stored = zarr.open_array(path / array, mode="r+")
    values = stored[...]
    change(values)
    stored[...] = values
    names = json.loads((path / array / "zarr.json").read_text())["attributes"]["names"]
    digest = Labels._trusted(names, values).digest()
    _edit(path, lambda a, n: n[array]["attributes"].update(digest=digest))


@pytest.mark.parametrize(
    ("array", "change", "match"),
    [
        ("blocks/0/samples", lambda v: v.__setitem__(1, v[0]), "repeated entries"),
        ("blocks/0/properties", lambda v: v.__setitem__(1, v[0]), "repeated entries"),
        ("keys", lambda v: v.__setitem__(1, v[0]), "repeated entries"),
        (
            "blocks/0/gradients/positions/samples",
            lambda v: v.__setitem__((0, 0), -1),
            r"refer to the sample rows \[-1, ",
        ),
        (
            "blocks/0/gradients/positions/samples",
            lambda v: v.__setitem__((-1, 0), 23),
            r"\[\d+, 23\] of a parent with 23 rows",
        ),
        (
            "blocks/0/gradients/positions/gradients/cell/samples",
            lambda v: v.__setitem__((-1, 0), v[-1, 0] - 1),
            "disagree with the stored row pointer",
        ),
    ],
)
def test_labels_checked_when_read(tmp_path, array, change, match):
    path = tmp_path / "t.zarr"
    _write(path, make_metatensor(seed=2))
    make_format_4(path)  # (its Labels' content checks: no chunk table to find it first)
    _rewrite_labels(path, array, change)
    with pytest.raises(mtd.DamagedStoreError, match=match):
        _read_everything(path)
    assert any(match.split("\\")[0] in p for p in mtd.verify(path).problems)


def test_labels_against_their_digest(tmp_path):
    path = tmp_path / "t.zarr"
    _write(path, make_metatensor(seed=2))
    make_format_4(path)  # (its Labels' content checks: no chunk table to find it first)
    stored = zarr.open_array(path / "blocks/2/samples", mode="r+")
    stored[0, 1] = 1000  # still unique, checksum rewritten by zarr
    _damaged(path, "'blocks/2/samples' do not match the digest recorded")


def test_checksum_errors_name_the_array(tmp_path):
    path = tmp_path / "t.zarr"
    _write(path, make_metatensor(seed=2), "zstd")
    chunk = path / "blocks/0/values/c.0.0.0"
    raw = bytearray(chunk.read_bytes())
    raw[-1] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    _damaged(path, r"rows 0:\d+ of the array 'blocks/0/values' can not be decoded \(")


def test_operations_on_out_of_range_gradient_samples_raise_damage(tmp_path):
    path = tmp_path / "t.zarr"
    _write(path, make_metatensor(seed=2, nested=False))
    make_format_4(path)  # (its Labels' content checks: no chunk table to find it first)
    _rewrite_labels(
        path, "blocks/0/gradients/positions/samples", lambda v: v.__setitem__((-1, 0), 30)
    )
    tensor = mtd.open_zarr(path)
    with pytest.raises(mtd.DamagedStoreError, match="of a parent with 23 rows"):
        mtd.sum_over_samples(tensor, "atom").block(0).gradient("positions").values.compute()
