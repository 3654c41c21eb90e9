"""The HTML reprs of a map and of a block, rendered by a real browser (headless Chromium).

Chromium loads a page holding both reprs of a lazy tensor from
:mod:`metatensor_dask.datasets`; a script in the page records what the browser laid
out (table sizes, the page width, computed styles) in ``data-`` attributes, and
``--dump-dom`` returns the page as rendered. ``--screenshot`` checks that it paints.
``docs/_static/html-repr.png`` is this page's screenshot, taken the same way.

Without Chromium the test skips (install hint) or, when ``CI`` is set, fails:
``.ci/chromium.sh`` installs it.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from metatensor_dask.datasets import featomic_like
from metatensor_dask.testing import raise_if_dask_computes

WIDTH, HEIGHT = 900, 540
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    f"--window-size={WIDTH},{HEIGHT}",
]
#: Runs after layout: records what the browser made of the reprs.
MEASURE = """<script>
for (const table of document.querySelectorAll(".mtd-repr table")) {
  const box = table.getBoundingClientRect();
  table.dataset.width = Math.round(box.width);
  table.dataset.height = Math.round(box.height);
}
const cell = document.querySelector(".mtd-repr tbody td");
document.body.dataset.scrollWidth = document.documentElement.scrollWidth;
document.body.dataset.cellAlign = getComputedStyle(cell).textAlign;
document.body.dataset.headBorder = getComputedStyle(
  document.querySelector(".mtd-repr thead th")).borderBottomStyle;
</script>"""


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        reason = "chromium is not installed: `apt-get install chromium` (or `bash .ci/chromium.sh`)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: the browser test must not be skipped)")
        pytest.skip(reason)
    return found


def _run(chromium: str, *arguments: str) -> str:
    """Run Chromium with a new profile directory, return its stdout."""
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [chromium, *FLAGS, f"--user-data-dir={profile}", *arguments],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


class _Page(HTMLParser):
    """The tables of a page (cells' text by row, attributes), the text above the table
    (or the text summary) of each repr, and the body's attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict] = []
        self.titles: list[str] = []
        self.body: dict[str, str | None] = {}
        self._cell: list[str] | None = None
        self._title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self.body = dict(attrs)
        elif tag == "div" and ("class", "mtd-repr") in attrs:
            self.titles.append("")
            self._title = True
        elif tag in ("table", "pre"):
            self._title = False
        elif tag == "br" and self._title:
            self.titles[-1] += "\n"
        if tag == "table":
            self.tables.append({"attributes": dict(attrs), "rows": []})
        elif tag == "tr":
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1]["rows"][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._title and self.lasttag != "style":
            self.titles[-1] += data
        if self._cell is not None:
            self._cell.append(data)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_html_reprs_render_in_chromium(tmp_path):
    chromium = _chromium()
    tensor = featomic_like(n_systems=2, atoms_per_system=8, types=(1, 6), chunks=4)
    block = tensor.block(0)
    with raise_if_dask_computes():
        body = tensor._repr_html_() + "<hr>" + block._repr_html_()
    page = tmp_path / "page.html"
    page.write_text(
        f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>{body}{MEASURE}"
        "</body></html>",
        encoding="utf-8",
    )
    # one browser start both prints the DOM after the script ran and takes the screenshot
    screenshot = tmp_path / "page.png"
    parsed = _Page()
    parsed.feed(_run(chromium, "--dump-dom", f"--screenshot={screenshot}", page.as_uri()))

    # the script ran after layout: the styles apply and nothing overflows the window
    assert parsed.body["data-cell-align"] == "right"
    assert parsed.body["data-head-border"] == "solid"
    assert int(parsed.body["data-scroll-width"]) <= WIDTH
    assert len(parsed.tables) == 2
    for table in parsed.tables:
        assert 0 < int(table["attributes"]["data-width"]) <= WIDTH
        assert int(table["attributes"]["data-height"]) > 0

    keys, arrays = (table["rows"] for table in parsed.tables)
    names = tensor.keys.names
    assert keys[0] == [*names, "shape", "chunks", "bytes"]
    assert len(keys) == 1 + len(tensor)
    first = dict(zip(keys[0], keys[1], strict=True))
    assert [int(first[n]) for n in names] == list(tensor.keys.values[0])
    assert first["shape"] == str(block.shape)
    assert first["chunks"] == f"3 × (4, {block.shape[1]})"
    total = sum(a.nbytes for a in block._arrays())  # values and gradients
    assert first["bytes"] == f"{total / 1024:.2f} KiB"
    assert parsed.titles[0] == (
        "TensorMap with 6 blocks of float64, gradients: positions, strain\n"
        f"lazy: 18 arrays, {sum(a.nbytes for a in tensor._arrays()) / 1024**2:.2f} MiB, "
        "36 chunks"
    )

    assert parsed.titles[1] == ""  # a block starts with its text summary, then:
    assert f"lazy: 3 arrays, {total / 1024:.2f} KiB, 9 chunks" in block._repr_html_()
    assert arrays[0] == ["", "shape", "dtype", "chunks", "bytes"]
    rows = {row[0]: row[1:] for row in arrays[1:]}
    assert list(rows) == ["values", "gradient 'positions'", "gradient 'strain'"]
    for name, part in [("values", block), *((f"gradient '{p}'", g) for p, g in block.gradients())]:
        shape, dtype, chunks, nbytes = rows[name]
        assert shape == str(part.shape) and dtype == "float64"
        assert chunks == f"{len(part.values.chunks[0])} × {tuple(map(max, part.values.chunks))}"
        assert nbytes == f"{part.values.nbytes / 1024:.2f} KiB"

    assert _png_size(screenshot) == (WIDTH, HEIGHT)
    assert screenshot.stat().st_size > 20_000  # text and tables, not an empty page


def test_without_chromium_skips_with_a_hint_and_fails_under_ci(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no chromium on the PATH
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        _chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        _chromium()
