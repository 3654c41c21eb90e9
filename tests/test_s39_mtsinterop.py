"""metatensor files against metatensor's own reader: info text that UTF-8 can not hold.

``info.json`` may spell an unpaired surrogate (``"\\ud800"``): Python's ``json`` reads
it into a string that UTF-8 can not encode, metatensor refuses the file. Such text must
be refused where it enters (``load``, ``set_info``) or before anything is written
(``save``), not end as a bare ``UnicodeEncodeError`` in the middle of a save.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd


def _tensor(info_value: str = "plain") -> mtd.TensorMap:
    block = mtd.TensorBlock(
        np.arange(6.0).reshape(3, 2), mtd.Labels.range("s", 3), [], mtd.Labels.range("p", 2)
    )
    tensor = mtd.TensorMap(mtd.Labels.single(), [block])
    tensor.set_info("note", info_value)
    return tensor


def _with_info_json(source: Path, target: Path, text: bytes) -> None:
    """A copy of the archive ``source`` whose ``info.json`` holds ``text``."""
    with zipfile.ZipFile(source) as read, zipfile.ZipFile(target, "w") as write:
        for name in read.namelist():
            write.writestr(name, text if name == "info.json" else read.read(name))


@pytest.mark.parametrize(
    "text", [b'{"note": "\\ud800"}', b'{"\\udfff": "x"}'], ids=["value", "key"]
)
def test_load_refuses_info_with_an_unpaired_surrogate(tmp_path: Path, text: bytes) -> None:
    mtd.save(tmp_path / "good.mts", _tensor())
    bad = tmp_path / "bad.mts"
    _with_info_json(tmp_path / "good.mts", bad, text)
    with pytest.raises(metatensor.MetatensorError):
        metatensor.load(str(bad))
    with pytest.raises(mtd.MetatensorError, match=r"unpaired surrogate.*write the file again"):
        mtd.load(bad)
    # a surrogate pair is one character (U+1D11E), read as metatensor reads it
    escaped = tmp_path / "escaped.mts"
    _with_info_json(tmp_path / "good.mts", escaped, b'{"note": "\\ud834\\udd1e \\u00e9"}')
    assert mtd.load(escaped).info() == metatensor.load(str(escaped)).info()
    assert mtd.load(escaped).info() == {"note": "\U0001d11e é"}


def test_set_info_refuses_an_unpaired_surrogate() -> None:
    tensor = _tensor()
    with pytest.raises(ValueError, match="unpaired surrogate"):
        tensor.set_info("note", "a\ud800b")
    with pytest.raises(ValueError, match="unpaired surrogate"):
        tensor.set_info("\udc80", "b")
    assert tensor.info() == {"note": "plain"}


def test_save_refuses_stored_info_with_an_unpaired_surrogate(tmp_path: Path) -> None:
    store = tmp_path / "map.zarr"
    mtd.to_zarr(_tensor("xyzzy"), store)
    document = store / "zarr.json"
    # the store edited by hand: JSON can spell the surrogate
    document.write_text(document.read_text().replace("xyzzy", "\\ud800"))
    opened = mtd.open_zarr(store)
    target = tmp_path / "out.mts"
    with pytest.raises(mtd.MetatensorDaskError, match=r"unpaired surrogate.*nothing was written"):
        mtd.save(target, opened)
    assert list(tmp_path.iterdir()) == [store]
