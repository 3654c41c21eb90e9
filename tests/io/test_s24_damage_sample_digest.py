"""An append onto sample Labels that do not match their recorded digest: the reader
refuses them, and the append, which reads the stored rows after the chain's blocks to
extend the digest, must refuse them too, instead of recording a digest of the damaged
rows that makes the store read as other samples without error."""

from __future__ import annotations

import json
from pathlib import Path

import google_crc32c
import numpy as np
import pytest
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd


def _edit_entry(path: Path, array: str) -> None:
    """Change the first entry of the array's first chunk, its checksum made to match."""
    chunk = sorted((path / array).glob("c.*"))[0]
    body = np.frombuffer(chunk.read_bytes()[:-4], dtype="<i4").copy()
    body[0] += 1000
    crc = np.uint32(google_crc32c.value(body.tobytes())).astype("<u4").tobytes()
    chunk.write_bytes(body.tobytes() + crc)


def _edit_attributes(change):
    def edit(path: Path, array: str) -> None:
        root = json.loads((path / "zarr.json").read_text())
        document = root["consolidated_metadata"]["metadata"][array]
        change(document["attributes"])
        (path / "zarr.json").write_text(json.dumps(root))
        (path / array / "zarr.json").write_text(json.dumps(document))

    return edit


def _other_hex(text: str) -> str:
    return text[:-1] + ("0" if text[-1] != "0" else "1")


DAMAGE = {
    "an entry": _edit_entry,
    "the digest": _edit_attributes(lambda a: a.update(digest=_other_hex(a["digest"]))),
    "the chain state": _edit_attributes(
        lambda a: a["chain"].update(state=_other_hex(a["chain"]["state"]))
    ),
}


def _files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


@pytest.mark.parametrize("chunks", [None, 2], ids=["one chunk", "chunks of 2"])
@pytest.mark.parametrize("array", ["blocks/0/samples", "blocks/0/gradients/positions/samples"])
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_an_append_refuses_samples_that_do_not_match_their_digest(tmp_path, damage, array, chunks):
    path = tmp_path / "t.zarr"
    stored = make_metatensor(seed=8, n_samples=(5, 0, 3), n_properties=(2, 1, 2), nested=False)
    mtd.from_metatensor(stored).to_zarr(path, **({} if chunks is None else {"chunks": chunks}))
    DAMAGE[damage](path, array)
    refusal = f"the Labels '{array}' do not match the digest recorded when written"
    assert any(f"'{array}'" in problem for problem in mtd.verify(path).problems)
    before = _files(path)
    appended = make_metatensor(seed=9, n_samples=(2, 1, 1), n_properties=(2, 1, 2), nested=False)
    with pytest.raises(mtd.DamagedStoreError, match=refusal):
        mtd.from_metatensor(appended).to_zarr(
            path, append_dim="samples", renumber={"system": "next"}
        )
    assert _files(path) == before
