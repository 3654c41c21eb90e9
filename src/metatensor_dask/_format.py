"""Text and HTML output of Labels, blocks and tensors.

``str()`` follows the layout printed by metatensor's "Managing gradients" tutorial.
Printing a block or a tensor never computes values and never loads sample labels: it
shows their names and counts. Printing a ``Labels`` shows its entries, so it loads them.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .block import TensorBlock
    from .labels import Labels, LabelsEntry
    from .tensor import TensorMap

#: ``str(tensor)`` lists every key up to this count, else the first and last halves.
MAX_KEYS_IN_STR = 20


def _centered(text: str, width: int) -> str:
    before = (width - len(text)) // 2
    return " " * before + text + " " * (width - len(text) - before)


def format_labels_table(labels: Labels, max_entries: int, indent: int) -> str:
    """Names on the first line, then one line per entry, every column centred.

    With ``max_entries >= 0`` and more entries than that, the first and last halves
    are shown around a ``...`` line; as metatensor, a limit below 2 counts as 2 (the
    ``...`` line stays, between the two entries of Labels of two entries, or the one
    entry shown twice). Every line but the first starts with ``indent`` spaces (the
    first line is placed by the caller).
    """
    values = labels.values
    names = labels.names
    n = len(values)
    truncated = 0 <= max_entries < n
    if truncated:
        max_entries = max(max_entries, 2)
        head = (max_entries + 1) // 2
        tail = max_entries // 2
        shown = np.concatenate([values[:head], values[n - tail :]])
    else:
        head, shown = n, values
    widths = [
        max([len(name)] + [len(str(v)) for v in shown[:, j]]) + 2 for j, name in enumerate(names)
    ]
    lines = ["".join(_centered(name, w) for name, w in zip(names, widths, strict=True)).rstrip()]
    for i, row in enumerate(shown):
        if i == head and truncated:
            # metatensor's placement of the ellipsis
            half = sum(widths) // 2
            lines.append(" " * indent + " " * ((half - 3 if half > 3 else half) + 1) + "...")
        lines.append(
            " " * indent
            + "".join(_centered(str(v), w) for v, w in zip(row, widths, strict=True)).rstrip()
        )
    return "\n".join(lines)


def format_block(block: TensorBlock) -> str:
    """The tutorial's block summary: header, then samples/components/properties/gradients."""
    path = block._gradient_path
    header = f"Gradient TensorBlock ('{'/'.join(path)}')" if path else "TensorBlock"
    components = block.components
    shape = ", ".join(str(len(c)) for c in components)
    component_names = [c.names[0] for c in components]
    gradients = block.gradients_list()
    return "\n".join(
        [
            header,
            f"    samples ({len(block)}): {block.samples.names}",
            f"    components ({shape}): {component_names}",
            f"    properties ({len(block.properties)}): {block.properties.names}",
            f"    gradients: {gradients if gradients else None}",
        ]
    )


def format_tensor(tensor: TensorMap, max_keys: int) -> str:
    """``TensorMap with N blocks``, then the key names and (some of) the keys."""
    keys = tensor.keys
    count = len(keys)
    lines = [f"TensorMap with {count} block{'' if count == 1 else 's'}"]
    lines.append("keys: " + keys.print(max_keys, 6))
    return "\n".join(lines)


def format_tensor_as_metatensor(tensor: TensorMap, max_keys: int) -> str:
    """metatensor's ``TensorMap.print``: the key names, then one line per key with the
    shape of its block, for the first ``max_keys`` keys (all when negative); a ``...``
    line when some are left out. Shapes are known without computing."""
    count = len(tensor)
    shown = count if max_keys < 0 else min(max_keys, count)
    keys = tensor.keys
    rows = [[str(v) for v in keys.values[i]] for i in range(shown)]
    # each column is as wide as its widest printed value, plus a space on each side
    widths = [max((len(row[j]) + 2 for row in rows), default=0) for j in range(len(keys.names))]
    lines = [
        f"TensorMap with {count} block{'' if count == 1 else 's'}",
        f"    keys: [{', '.join(keys.names)}]",
        "    blocks:",
    ]
    for i, row in enumerate(rows):
        cells = "".join(_centered(v, w) for v, w in zip(row, widths, strict=True))
        lines.append(f"      {cells}  => TensorBlock with shape {tensor.block_by_id(i).shape}")
    if shown < count:
        lines.append(" " * (6 + sum(widths)) + " ...")
    return "\n".join(lines)


def counted(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural but for one: ``1 chunk``, ``3 chunks``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def nbytes_text(nbytes: float) -> str:
    """A byte count with a binary unit (``KiB``, ``MiB``...): the one spelling of every
    size printed (dask's ``format_bytes`` writes ``kiB``)."""
    if nbytes < 1024:
        return f"{nbytes:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        nbytes /= 1024
        if nbytes < 1024:
            return f"{nbytes:.2f} {unit}"
    return f"{nbytes / 1024:.2f} TiB"


def array_summary(arrays: list) -> str:
    """``N arrays, nbytes, M chunks`` for the dask arrays (or numpy ones) of an object."""
    nbytes = sum(a.nbytes for a in arrays)
    chunks = sum(int(np.prod(a.numblocks)) if hasattr(a, "numblocks") else 1 for a in arrays)
    lazy = sum(hasattr(a, "dask") for a in arrays)
    state = "lazy" if lazy == len(arrays) else "in memory" if lazy == 0 else "partly lazy"
    return f"{state}: {len(arrays)} arrays, {nbytes_text(nbytes)}, {chunks} chunks"


#: One style sheet for every HTML repr, scoped to its ``mtd-repr`` class; colours are
#: translucent greys, readable on light and dark notebook themes.
_STYLE = (
    "<style>"
    ".mtd-repr table{border-collapse:collapse;margin:0.4em 0;font-size:0.9em}"
    ".mtd-repr th,.mtd-repr td{padding:0.2em 0.6em;text-align:right;white-space:nowrap;"
    "font-variant-numeric:tabular-nums}"
    ".mtd-repr thead th{border-bottom:1px solid rgba(128,128,128,0.6)}"
    ".mtd-repr tbody tr:nth-child(odd){background:rgba(128,128,128,0.1)}"
    ".mtd-repr th[scope=row]{text-align:left}"
    ".mtd-repr pre{margin:0.2em 0}"
    ".mtd-repr .mtd-summary{opacity:0.75}"
    "</style>"
)


def _html(title: str, table: str) -> str:
    return f"<div class='mtd-repr'>{_STYLE}<div>{title}</div>{table}</div>"


def _table(head: list[str], body: list[str]) -> str:
    header = "".join(f"<th>{html.escape(name)}</th>" for name in head)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _shown_rows(count: int) -> list[int]:
    """Every row index up to 20 rows; else the first and last 10 around a ``-1``."""
    rows = list(range(count))
    return [*rows[:10], -1, *rows[-10:]] if count > 20 else rows


def labels_html(labels: Labels) -> str:
    """A small HTML table of Labels (first and last 10 entries)."""
    values = labels.values
    body = []
    for i in _shown_rows(len(values)):
        if i < 0:
            body.append(f"<tr><td colspan='{len(labels.names)}'>…</td></tr>")
        else:
            body.append("<tr>" + "".join(f"<td>{v}</td>" for v in values[i]) + "</tr>")
    title = f"<b>Labels</b> ({len(values)} entries)"
    return _html(title, _table(labels.names, body))


def entry_html(entry: LabelsEntry) -> str:
    """A one-row HTML table of a Labels entry: its names over its values."""
    row = "<tr>" + "".join(f"<td>{v}</td>" for v in entry.values) + "</tr>"
    return _html("<b>LabelsEntry</b>", _table(entry.names, [row]))


def _summary(arrays: list) -> str:
    return f"<span class='mtd-summary'>{html.escape(array_summary(arrays))}</span>"


def _parts(block: TensorBlock, path: str = "") -> list[tuple[str, TensorBlock]]:
    """``(gradient path, block)`` of a block's gradients, nested ones too, in order."""
    found = []
    for parameter, gradient in block.gradients():
        name = f"{path}/{parameter}" if path else parameter
        found.append((name, gradient))
        found.extend(_parts(gradient, name))
    return found


def block_html(block: TensorBlock) -> str:
    """HTML summary of a block: the text summary, then one row per array (values and
    every gradient) with shape, dtype, chunks and bytes, without computing."""
    rows = [("values", block)] + [(f"gradient '{p}'", g) for p, g in _parts(block)]
    body = [
        f"<tr><th scope='row'>{html.escape(name)}</th><td>{b.shape}</td><td>{b.dtype}</td>"
        f"<td>{html.escape(_chunks_text(b.values))}</td><td>{nbytes_text(b.values.nbytes)}</td>"
        "</tr>"
        for name, b in rows
    ]
    title = f"<pre>{html.escape(format_block(block))}</pre>{_summary(block._arrays())}"
    return _html(title, _table(["", "shape", "dtype", "chunks", "bytes"], body))


def tensor_html(tensor: TensorMap) -> str:
    """HTML summary of a tensor, without computing: dtype and gradient names (every
    block has the same), then one row per key (the first and last 10 of more than 20)
    with the values' shape and chunks and the bytes of values and gradients."""
    names = tensor.keys.names
    body = []
    for i in _shown_rows(len(tensor)):
        if i < 0:
            body.append(f"<tr><td colspan='{len(names) + 3}'>…</td></tr>")
            continue
        key, block = tensor.keys.entry(i), tensor.block_by_id(i)
        cells = "".join(f"<td>{v}</td>" for v in key.values)
        nbytes = sum(a.nbytes for a in block._arrays())
        body.append(
            f"<tr>{cells}<td>{block.shape}</td><td>{html.escape(_chunks_text(block.values))}"
            f"</td><td>{nbytes_text(nbytes)}</td></tr>"
        )
    count = len(tensor)
    title = f"<b>TensorMap</b> with {count} block{'' if count == 1 else 's'}"
    if count:
        gradients = ", ".join(p for p, _ in _parts(tensor.block_by_id(0)))
        title += f" of {tensor.dtype}, gradients: {html.escape(gradients or 'none')}"
    title += f"<br>{_summary(tensor._arrays())}"
    return _html(title, _table([*names, "shape", "chunks", "bytes"], body))


def _chunks_text(array: object) -> str:
    """``count × largest chunk shape`` of a dask array, ``in memory`` for numpy."""
    chunks = getattr(array, "chunks", None)
    if chunks is None:
        return "in memory"
    count = int(np.prod([len(c) for c in chunks]))
    largest = tuple(max(c, default=0) for c in chunks)
    return f"{count} × {largest}"
