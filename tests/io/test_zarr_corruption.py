"""A seeded corruption suite: damaged stores never read back silently wrong data.

Files of a small store with gradients (default codecs, zstd, sharding) are deleted,
truncated, bit-flipped, or edited with their checksum (chunks) or both metadata copies
(documents) rewritten to match. Every case must either raise one of this package's
errors (on open, on compute, or as a problem found by ``verify``) or read back exactly
the original data; and ``verify`` must find whatever the reader refuses.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import dask
import google_crc32c
import numpy as np
import pytest
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

SETTINGS = {
    "default": {},
    "zstd": {"metatensor_dask.compressor": "zstd"},
    "sharded": {"metatensor_dask.shard-chunks": 2},
}
#: corrupted files per kind of corruption and codec choice
CASES = 4


def _delete(path: Path, rng: random.Random, store: Path) -> None:
    path.unlink()


def _truncate(path: Path, rng: random.Random, store: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: rng.randrange(len(data))])


def _flip(path: Path, rng: random.Random, store: Path) -> None:
    data = bytearray(path.read_bytes())
    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))


def _edit_chunk(path: Path, rng: random.Random) -> None:
    """Change one int of a plain chunk (Labels, row pointers) and fix its checksum."""
    data = path.read_bytes()
    body = np.frombuffer(data[:-4], dtype=np.uint8).copy()
    size = 8 if "row_pointer" in str(path) else 4
    ints = body.view(f"<i{size}")
    ints[rng.randrange(len(ints))] += rng.choice([-1, 1])
    crc = np.uint32(google_crc32c.value(body.tobytes())).astype("<u4").tobytes()
    path.write_bytes(body.tobytes() + crc)


_DOCUMENT_EDITS = [
    lambda d: d["shape"].__setitem__(0, d["shape"][0] + 1),
    lambda d: d.update(data_type={"float64": "int64", "int32": "float32"}.get(d["data_type"])),
    lambda d: d["codecs"][0].setdefault("configuration", {}).update(endian="big"),
    lambda d: d["chunk_grid"]["configuration"]["chunk_shape"].__setitem__(0, 0),
    lambda d: d.update(fill_value=1),
    lambda d: d["attributes"].update(names=list(reversed(d["attributes"].get("names", [])))),
]


def _edit_document(path: Path, rng: random.Random, store: Path) -> None:
    """Edit an array's metadata in its own document and in the consolidated copy."""
    node = str(path.parent.relative_to(store))
    root = json.loads((store / "zarr.json").read_text())
    document = root["consolidated_metadata"]["metadata"][node]
    rng.choice(_DOCUMENT_EDITS)(document)
    (store / "zarr.json").write_text(json.dumps(root))
    path.write_text(json.dumps(document))


def _edit(path: Path, rng: random.Random, store: Path) -> None:
    if path.name == "zarr.json":
        _edit_document(path, rng, store)
    else:
        _edit_chunk(path, rng)


def _files(store: Path, kind: str) -> list[Path]:
    files = sorted(p for p in store.rglob("*") if p.is_file())
    if kind != "edit":
        return files
    # edits that keep checksums right: plain Labels/row pointer chunks, array documents
    # (a values chunk edited with its checksum fixed is simply other data)
    arrays = [p for p in files if p.name == "zarr.json" and p.parent != store]
    chunks = [
        p
        for p in files
        if p.name != "zarr.json" and p.parent.name != "values" and "values" not in p.parts[-2:]
    ]
    return [p for p in arrays if json.loads(p.read_text()).get("node_type") == "array"] + chunks


def _outcome(store: Path, expected) -> str:
    """``"same"``, ``"refused"``, or what went wrong."""
    try:
        assert_equal_to_metatensor(mtd.open_zarr(store), expected)
        read = "same"
    except mtd.MetatensorDaskError:
        read = "refused"
    except AssertionError as error:
        return f"WRONG DATA: {str(error)[:300]}"
    except Exception as error:
        return f"RAW {type(error).__name__}: {str(error)[:300]}"
    try:
        report = mtd.verify(store)
    except Exception as error:
        return f"verify RAISED {type(error).__name__}: {str(error)[:300]}"
    if read == "refused" and report.ok:
        return "verify found nothing the reader refused"
    return read if report.ok else "refused"


@pytest.mark.parametrize("codecs", sorted(SETTINGS))
def test_corrupted_stores_never_read_wrong(tmp_path, codecs):
    expected = make_metatensor(seed=11, n_samples=(9, 0, 5), n_properties=(2, 2, 0))
    store = tmp_path / "t.zarr"
    with dask.config.set(SETTINGS[codecs]):
        mtd.from_metatensor(expected).to_zarr(store, chunks=3)
    rng = random.Random(f"corruption-{codecs}")
    results: Counter[str] = Counter()
    failures = []
    with dask.config.set(scheduler="synchronous"):
        for corrupt in (_delete, _truncate, _flip, _edit):
            files = _files(store, corrupt.__name__.strip("_"))
            for path in rng.sample(files, min(CASES, len(files))):
                saved = {p: p.read_bytes() for p in (path, store / "zarr.json")}
                corrupt(path, rng, store)
                outcome = _outcome(store, expected)
                for p, data in saved.items():
                    p.write_bytes(data)
                results[outcome if outcome in ("same", "refused") else "failed"] += 1
                if outcome not in ("same", "refused"):
                    name = corrupt.__name__.strip("_")
                    failures.append(f"{name} {path.relative_to(store)}: {outcome}")
    assert failures == []
    assert results["refused"] > 0
