"""Damage the other suites do not cover: chunks swapped within an array, array
documents and root attributes edited consistently, and the progress records of an
interrupted write or append cut short. Each case reads back the original data or gives
one of the package's errors, naming the file and the remedy; ``verify`` reports what the
reader refuses, and never raises."""

from __future__ import annotations

import json
from pathlib import Path

import dask
import metatensor
import pytest
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

POINTER = "blocks/0/gradients/positions/row_pointer"
CODECS = {
    "default": {},
    "zstd": {"metatensor_dask.compressor": "zstd"},
    "sharded": {"metatensor_dask.shard-chunks": 2},
}


def _write(path: Path, codecs: str = "default") -> metatensor.TensorMap:
    theirs = make_metatensor(seed=11, nested=False)
    with dask.config.set(CODECS[codecs]):
        mtd.from_metatensor(theirs).to_zarr(path, chunks=3)
    return theirs


def _edit_root(path: Path, change) -> None:
    """Apply ``change(root)`` to the root document."""
    root = json.loads((path / "zarr.json").read_text())
    change(root)
    (path / "zarr.json").write_text(json.dumps(root))


def _edit_array(path: Path, node: str, change) -> None:
    """Apply ``change(document)`` to an array's consolidated and own documents."""
    root = json.loads((path / "zarr.json").read_text())
    document = root["consolidated_metadata"]["metadata"][node]
    change(document)
    (path / "zarr.json").write_text(json.dumps(root))
    (path / node / "zarr.json").write_text(json.dumps(document))


def _swap(first: Path, second: Path) -> None:
    data = first.read_bytes()
    first.write_bytes(second.read_bytes())
    second.write_bytes(data)


def _refused(path: Path, match: str) -> None:
    """Opening and computing fails with ``match``, and verify reports it."""
    with pytest.raises(mtd.MetatensorDaskError, match=match):
        with dask.config.set(scheduler="synchronous"):
            tensor = mtd.open_zarr(path)
            mtd.sum_over_samples(tensor, "atom").compute()
            mtd.multiply(tensor, tensor).compute()
    report = mtd.verify(path)
    assert any(match in problem for problem in report.problems), report.problems


def test_swapped_row_pointer_chunks_are_reported_by_verify(tmp_path):
    path = tmp_path / "t.zarr"
    _write(path)
    _swap(path / POINTER / "c.0", path / POINTER / "c.1")
    # (format 5: found by the chunk table of the row pointer, before its order)
    _refused(path, f"the chunk 'c.0' of the array '{POINTER}' is not the chunk the store lists")


@pytest.mark.parametrize("codecs", sorted(CODECS))
def test_an_array_document_of_another_zarr_format_is_refused(tmp_path, codecs):
    path = tmp_path / "t.zarr"
    _write(path, codecs)
    _edit_array(path, "blocks/0/values", lambda document: document.update(zarr_format=2))
    _refused(path, "the metadata of 'blocks/0/values' is not a valid Zarr v3 array")


@pytest.mark.parametrize("complete", [1, "false", "true", None])
def test_verify_reports_a_completion_flag_the_reader_refuses(tmp_path, complete):
    path = tmp_path / "t.zarr"
    _write(path)
    _edit_root(path, lambda root: root["attributes"]["metatensor_dask"].update(complete=complete))
    with pytest.raises(mtd.IncompleteStoreError, match="is incomplete"):
        mtd.open_zarr(path)
    assert any("the store is incomplete" in problem for problem in mtd.verify(path).problems)


#: records cut short by a kill while they were written, or overwritten with other JSON
RECORDS = [b"", b'{"tok', b"[1]", b'{"data": 5, "small": []}']


def _append(tensor: metatensor.TensorMap, path: Path, **kwargs) -> None:
    mtd.from_metatensor(tensor).to_zarr(
        path, append_dim="samples", renumber={"system": "next"}, chunks=3, **kwargs
    )


@pytest.mark.parametrize("record", RECORDS)
def test_a_damaged_append_record_is_refused_then_started_over(tmp_path, record):
    first, second = _write(tmp_path / "t.zarr"), make_metatensor(seed=12, nested=False)
    _write(tmp_path / "clean.zarr")
    _append(second, tmp_path / "clean.zarr")
    (tmp_path / "t.zarr" / ".progress").mkdir()
    (tmp_path / "t.zarr" / ".progress" / "append.json").write_bytes(record)
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "t.zarr"), first)
    with pytest.raises(mtd.MetatensorDaskError, match=r"'\.progress/append\.json' is damaged"):
        _append(second, tmp_path / "t.zarr")
    _append(second, tmp_path / "t.zarr", resume=True)
    assert mtd.equal(mtd.open_zarr(tmp_path / "t.zarr"), mtd.open_zarr(tmp_path / "clean.zarr"))
    assert mtd.verify(tmp_path / "t.zarr").ok
    assert not (tmp_path / "t.zarr" / ".progress").exists()


@pytest.mark.parametrize("record", RECORDS)
def test_a_damaged_write_plan_is_refused_by_resume(tmp_path, record):
    path = tmp_path / "t.zarr"
    tensor = mtd.from_metatensor(make_metatensor(seed=11, nested=False))
    tensor.to_zarr(path, chunks=3, compute=False)  # interrupted: the plan is recorded
    (path / ".progress" / "plan.json").write_bytes(record)
    with pytest.raises(mtd.MetatensorDaskError, match=r"'\.progress/plan\.json'.*mode='w'"):
        tensor.to_zarr(path, chunks=3, resume=True)
    tensor.to_zarr(path, chunks=3, mode="w")
    assert mtd.equal(mtd.open_zarr(path), tensor)


SAMPLES = "blocks/0/samples"
#: edits of the records a Labels array carries that leave no way to check or extend it
MALFORMED = {
    "no digest (keys)": ("keys", lambda a: a.pop("digest")),
    "no digest (properties)": ("blocks/0/properties", lambda a: a.pop("digest")),
    "no digest (samples)": (SAMPLES, lambda a: a.pop("digest")),
    "no chain": (SAMPLES, lambda a: a.pop("chain")),
    "chain rows not an int": (SAMPLES, lambda a: a["chain"].update(rows="x")),
    "chain rows past the entries": (SAMPLES, lambda a: a["chain"].update(rows=2**16)),
    "chain state not hex": (SAMPLES, lambda a: a["chain"].update(state="zz")),
    "max not an entry": (SAMPLES, lambda a: a.update(max="x")),
    "no column_max": (SAMPLES, lambda a: a.pop("column_max")),
    "column_max of another width": (SAMPLES, lambda a: a.update(column_max=[None])),
}


@pytest.mark.parametrize("edit", list(MALFORMED))
def test_labels_records_that_can_not_be_used_are_refused(tmp_path, edit):
    path = tmp_path / "t.zarr"
    _write(path)
    node, change = MALFORMED[edit]
    _edit_array(path, node, lambda document: change(document["attributes"]))
    match = f"the Labels array '{node}' has no valid"
    _refused(path, match)
    with pytest.raises(mtd.DamagedStoreError, match=match):
        _append(make_metatensor(seed=12, nested=False), path)


#: edits of the append records of the samples that leave them well formed, but wrong
WRONG = {
    "max lowered": lambda a: a.update(max=[0, 0]),
    "column_max lowered": lambda a: a.update(column_max=[0, 0]),
    "chain state of other rows": lambda a: a["chain"].update(state="00" * 16),
}


@pytest.mark.parametrize("edit", list(WRONG))
def test_verify_finds_sample_records_that_disagree_with_the_entries(tmp_path, edit):
    path = tmp_path / "t.zarr"
    theirs = _write(path)
    _edit_array(path, SAMPLES, lambda document: WRONG[edit](document["attributes"]))
    assert_equal_to_metatensor(mtd.open_zarr(path), theirs)  # the entries are intact
    problems = mtd.verify(path).problems
    assert any(f"the records of '{SAMPLES}' disagree with its entries" in p for p in problems)
