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
    from .labels import Labels
    from .tensor import TensorMap

#: ``str(tensor)`` lists every key up to this count, else the first and last halves.
MAX_KEYS_IN_STR = 20


def _centered(text: str, width: int) -> str:
    before = (width - len(text)) // 2
    return " " * before + text + " " * (width - len(text) - before)


def format_labels_table(labels: Labels, max_entries: int, indent: int) -> str:
    """Names on the first line, then one line per entry, every column centred.

    With ``max_entries >= 0`` and more entries than that, the first and last halves
    are shown around a ``...`` line. Every line but the first starts with ``indent``
    spaces (the first line is placed by the caller).
    """
    values = labels.values
    names = labels.names
    n = len(values)
    if 0 <= max_entries < n:
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
        if i == head and len(shown) < n:
            # metatensor's placement of the ellipsis
            half = sum(widths) // 2
            lines.append(" " * (indent + (half - 3 if half > 3 else half) + 1) + "...")
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


def nbytes_text(nbytes: float) -> str:
    """A byte count with a binary unit, as dask prints them."""
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


def labels_html(labels: Labels) -> str:
    """A small HTML table of Labels (first and last 10 entries)."""
    values = labels.values
    rows = list(range(len(values)))
    if len(rows) > 20:
        rows = [*rows[:10], -1, *rows[-10:]]
    head = "".join(f"<th>{html.escape(n)}</th>" for n in labels.names)
    body = []
    for i in rows:
        if i < 0:
            body.append(f"<tr><td colspan='{len(labels.names)}'>…</td></tr>")
        else:
            body.append("<tr>" + "".join(f"<td>{v}</td>" for v in values[i]) + "</tr>")
    return (
        f"<div><b>Labels</b> ({len(values)} entries)<table><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def block_html(block: TensorBlock) -> str:
    """HTML summary of a block: shapes, dtype, chunks and gradients, without computing."""
    rows = [("values", block)] + [(f"gradient '{p}'", g) for p, g in block.gradients()]
    body = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{b.shape}</td><td>{b.dtype}</td>"
        f"<td>{html.escape(_chunks_text(b.values))}</td></tr>"
        for name, b in rows
    )
    return (
        f"<div><pre>{html.escape(format_block(block))}</pre><table><thead><tr><th></th>"
        f"<th>shape</th><th>dtype</th><th>chunks</th></tr></thead><tbody>{body}</tbody>"
        "</table></div>"
    )


def tensor_html(tensor: TensorMap) -> str:
    """HTML table of a tensor's blocks, one row per key (the first and last 10 of
    more than 20), without computing."""
    names = tensor.keys.names
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = list(range(len(tensor)))
    if len(rows) > 20:
        rows = [*rows[:10], -1, *rows[-10:]]
    body = []
    for i in rows:
        if i < 0:
            body.append(f"<tr><td colspan='{len(names) + 4}'>…</td></tr>")
            continue
        key, block = tensor.keys.entry(i), tensor.block_by_id(i)
        cells = "".join(f"<td>{v}</td>" for v in key.values)
        body.append(
            f"<tr>{cells}<td>{block.shape}</td><td>{block.dtype}</td>"
            f"<td>{html.escape(_chunks_text(block.values))}</td>"
            f"<td>{html.escape(', '.join(block.gradients_list()))}</td></tr>"
        )
    return (
        f"<div><b>TensorMap</b> with {len(tensor)} blocks<table><thead><tr>{head}"
        "<th>shape</th><th>dtype</th><th>chunks</th><th>gradients</th></tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _chunks_text(array: object) -> str:
    chunks = getattr(array, "chunks", None)
    if chunks is None:
        return "in memory"
    return f"{len(chunks[0])} along samples" if chunks else "1"
