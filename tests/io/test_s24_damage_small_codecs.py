"""Labels and row pointer documents edited to name a compressor or sharding (in the
root's consolidated copy, with or without the node's own): every writer stores these
arrays plain, so the layout is refused when the store is opened, by a reader, by
``verify`` and by an append alike, naming the array; an append no longer stops on a
bare "not plain" error after reading the root."""

from __future__ import annotations

import json

import pytest
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd

ZSTD = {"name": "zstd", "configuration": {"level": 0, "checksum": False}}
ARRAYS = [
    "keys",
    "blocks/0/samples",
    "blocks/2/properties",
    "blocks/0/gradients/positions/samples",
    "blocks/0/gradients/positions/row_pointer",
]


def _compressed(document):
    document["codecs"].insert(1, ZSTD)


def _sharded(document):
    inner = dict(document["chunk_grid"]["configuration"])
    index = [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}]
    configuration = {"chunk_shape": inner["chunk_shape"], "codecs": document["codecs"]}
    configuration |= {"index_codecs": index, "index_location": "end"}
    document["codecs"] = [{"name": "sharding_indexed", "configuration": configuration}]


EDITS = {"compressed": _compressed, "sharded": _sharded}


@pytest.mark.parametrize("own", [False, True], ids=["root only", "both copies"])
@pytest.mark.parametrize("edit", list(EDITS))
@pytest.mark.parametrize("array", ARRAYS)
def test_labels_and_row_pointers_named_other_than_plain_are_refused(tmp_path, array, edit, own):
    path = tmp_path / "t.zarr"
    tensor = make_metatensor(seed=4, n_samples=(5, 0, 3), n_properties=(2, 1, 2))
    mtd.from_metatensor(tensor).to_zarr(path, chunks=2)
    root = json.loads((path / "zarr.json").read_text())
    document = root["consolidated_metadata"]["metadata"][array]
    EDITS[edit](document)
    (path / "zarr.json").write_text(json.dumps(root))
    if own:
        (path / array / "zarr.json").write_text(json.dumps(document))
    expected = f"the array '{array}' is stored with a compressor or sharding"
    with pytest.raises(mtd.DamagedStoreError, match=expected):
        mtd.open_zarr(path)
    assert any(expected in problem for problem in mtd.verify(path).problems)
    appended = make_metatensor(seed=5, n_samples=(1, 2, 1), n_properties=(2, 1, 2))
    with pytest.raises(mtd.DamagedStoreError, match=expected):
        mtd.from_metatensor(appended).to_zarr(
            path, append_dim="samples", renumber={"system": "next"}
        )
