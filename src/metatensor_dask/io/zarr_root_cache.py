"""A store's root document read again, and written again, by a process that appends.

Every append reads the root document (the metadata of every array, inline), checks the
layout it describes and writes it back with the documents the append changed: done
from scratch, that is Python work on every node of the store, for appends that touch a
few blocks. This module keeps, per process, what it found in the text of the last root
it read, by runs of that text: the run of each block (``"blocks/<i>":{...}`` and the
nodes under it, which follow each other in the sorted metadata), the run of the keys,
and the runs between. A run is read only when its text is what
:func:`~.zarr_layout.encode` writes of its nodes (a document found again at the same
place of another block, byte for byte, is the one parsed and checked so before): its
bytes are then copied into the root written, in C, its documents never encoded again.
A run whose bytes are found again is not parsed, its block not checked; only the runs
that changed are, so that an append costs Python work in proportion to the blocks it
touches.

Nothing is trusted from memory: the root's bytes are always read, and a run is reused
only when its bytes are exactly the bytes it was parsed from (a root written by another
process, another writer, or edited, reads the same as parsed from scratch). The result
is the one :func:`~.zarr_layout.parse_root` and :func:`~.zarr_layout.parse_layout` give,
and the root written is byte for byte :func:`~.zarr_layout.encode` of the document: a
root whose text is not cut so (written otherwise: with spaces or other escapes, without
inline metadata, or with nodes that are not a block's inside a block's run) is read the
usual way.
"""

from __future__ import annotations

import json
import operator
import re
import uuid
from functools import cached_property
from itertools import chain, compress
from typing import Any

from ..errors import MetatensorDaskError
from . import zarr_layout as layout

__all__ = ["Stored", "encode_root", "parse_root"]

#: How the writers of this package end a root document: the inline metadata last, then
#: the ends of the metadata, of the consolidated metadata and of the root.
_MARKER = b'"consolidated_metadata":{"kind":"inline","must_understand":false,"metadata":{'
_END = b"}}}"
#: Where the runs of the metadata start: before each block's group and the keys.
_RUNS = re.compile(rb',(?="blocks/\d+":|"keys":)')
#: The path of a block's node: its index.
_BLOCK = re.compile(r"blocks/(0|[1-9][0-9]*)(?:/|$)")


#: The "block" of a run without block nodes, and of a run mixing blocks or other nodes.
_NO_BLOCK, _MIXED = -1, -2


class _Run:
    """What one run of a root's metadata text holds: the ``text`` (each node's
    ``"path":document`` as :func:`~.zarr_layout.encode` encodes it, joined by commas),
    its nodes (path, document) in order, where each ends in the text, and the block
    whose nodes they all are (:data:`_NO_BLOCK`: no block's node; :data:`_MIXED`: some
    are a block's, some not or another's)."""

    def __init__(self, text: bytes, nodes: list[tuple[str, Any]], ends: list[int]) -> None:
        self.text = text
        self.nodes = tuple(nodes)
        self.paths = tuple(path for path, _ in nodes)
        self.ends = ends
        self.block = _block(self.paths)
        self.known = None
        if self.block >= 0:
            self.known = layout.BlockNodes(self.paths, layout.gradient_index(dict(nodes)))

    @cached_property
    def encoded(self) -> tuple[bytes, ...]:
        """Each node's ``"path":document`` encoded: its bytes in the text."""
        starts = [0, *(end + 1 for end in self.ends[:-1])]
        return tuple(map(self.text.__getitem__, map(slice, starts, self.ends)))


def _block(paths: tuple[str, ...]) -> int:
    """The block whose nodes are at ``paths`` (see :class:`_Run`)."""
    first = _BLOCK.match(paths[0])
    if first is None:
        return _MIXED if any(map(_BLOCK.match, paths)) else _NO_BLOCK
    group = f"blocks/{first.group(1)}"
    inside = group + "/"
    if all(path == group or path.startswith(inside) for path in paths):
        return int(first.group(1))
    return _MIXED


#: The runs of the last root this process read, by their bytes.
_RUNS_READ: dict[bytes, _Run] = {}


class Stored(tuple):
    """``(attributes, nodes)`` of a store's root (see :func:`~.zarr_layout.parse_root`),
    with the runs its metadata was read from (``None`` when read the usual way), and
    whether its nodes were read from their own documents (``from_documents``: a root
    without inline metadata)."""

    runs: list[_Run] | None
    known: dict[int, layout.BlockNodes] | None
    from_documents: bool

    def __new__(
        cls,
        attributes: dict[str, Any],
        nodes: dict[str, Any],
        runs: list[_Run] | None = None,
        from_documents: bool = False,
    ) -> Stored:
        stored = super().__new__(cls, (attributes, nodes))
        stored.runs = runs
        stored.known = None
        stored.from_documents = from_documents
        if runs is not None:
            stored.known = {run.block: run.known for run in runs if run.known is not None}
        return stored

    def __reduce__(self) -> tuple[Any, ...]:
        # (a tuple's own reduction gives __new__ the tuple as one argument)
        return (Stored, (self[0], self[1], self.runs, self.from_documents))


def parse_root(raw: bytes, where: str) -> Stored:
    """:func:`~.zarr_layout.parse_root` of ``raw`` (the same result, the same errors),
    reusing the runs of its metadata read before (see the module's documentation)."""
    split = _split(raw)
    if split is not None:
        head, body = split
        runs = _read_runs(body)
        if runs is not None:
            nodes = dict(chain.from_iterable(map(operator.attrgetter("nodes"), runs)))
            head["consolidated_metadata"]["metadata"] = nodes
            try:
                attributes, _ = layout.check_root(head, where)
            except MetatensorDaskError:
                pass  # raised again below, as a root read the usual way raises it
            else:
                return Stored(attributes, nodes, runs)
    attributes, found = layout.parse_root(raw, where)
    return Stored(attributes, found)  # type: ignore[arg-type]


def _split(raw: bytes) -> tuple[dict[str, Any], bytes] | None:
    """The root document without its inline metadata, and the text of the metadata
    (between its braces), for a root written as this package writes them; else
    ``None``.

    The text before the metadata is read with a key of its own in place of the
    metadata (a random name): found as the metadata of the consolidated metadata, it
    tells that the metadata's text is the inside of that object, which the runs of the
    text then parse as a whole (else the root is read the usual way)."""
    at = raw.rfind(_MARKER)
    if at < 0 or not raw.endswith(_END):
        return None
    start = at + len(_MARKER)
    name = f"metadata-{uuid.uuid4().hex}"
    try:
        head = json.loads(raw[:start] + layout.encode(name) + b":0" + _END)
    except (ValueError, RecursionError):
        return None
    consolidated = head.get("consolidated_metadata") if isinstance(head, dict) else None
    if not isinstance(consolidated, dict) or consolidated.get("metadata") != {name: 0}:
        return None
    return head, raw[start : len(raw) - len(_END)]


def _read_runs(body: bytes) -> list[_Run] | None:
    """The runs of the metadata text ``body``, those read before taken as they were;
    ``None`` when a run is not a whole number of nodes written as
    :func:`~.zarr_layout.encode` writes them, or the blocks' nodes are not each in the
    run of their block."""
    global _RUNS_READ
    pieces = _RUNS.split(body) if body else []
    runs: list[_Run | None] = list(map(_RUNS_READ.get, pieces))
    if None in runs:
        repeats = layout.Repeats(written=True)
        for i in compress(range(len(runs)), map(operator.not_, runs)):
            run = _parse_run(pieces[i], repeats)
            if run is None:
                return None
            runs[i] = run
    blocks = [run.block for run in runs]  # type: ignore[union-attr]
    indexed = [block for block in blocks if block != _NO_BLOCK]
    if _MIXED in indexed or len(set(indexed)) != len(indexed):
        return None
    _RUNS_READ = dict(zip(pieces, runs, strict=True))  # type: ignore[arg-type]
    return runs  # type: ignore[return-value]


def _parse_run(piece: bytes, repeats: layout.Repeats) -> _Run | None:
    """The nodes of one run of the metadata text, ``None`` when it is not a run of
    whole nodes written as :func:`~.zarr_layout.encode` writes them (the text is then
    their encoding, in ASCII: its ends of nodes are those of the bytes)."""
    try:
        text = piece.decode()
        found, ends = layout.scan_pairs(text, lambda key, index: repeats.node(text, key, index))
    except (ValueError, StopIteration, IndexError, RecursionError):
        return None
    return _Run(piece, found, ends)


def encode_root(
    root: dict[str, Any], stored: Any, encoded_nodes: dict[str, tuple[Any, bytes]] | None = None
) -> bytes:
    """:func:`~.zarr_layout.encode` of the ``root`` document of an append to the store
    whose root was read as ``stored`` (see :class:`Stored`): a run of its text whose
    nodes are, in order, the very documents read from it is copied whole; the other
    nodes that are the very documents read are taken as encoded then, those that are
    the very documents of ``encoded_nodes`` (path: the document and its encoding, for
    its own ``zarr.json``) as encoded there, the others encoded now."""
    runs = getattr(stored, "runs", None)
    if runs is None:
        return layout.encode(root)
    given = encoded_nodes or {}
    nodes = root["consolidated_metadata"]["metadata"]
    paths = list(nodes)
    first = {run.paths[0]: run for run in runs if run.paths}
    read: dict[str, tuple[Any, bytes]] = {}
    pieces = []
    at = 0
    while at < len(paths):
        run = first.get(paths[at])
        if run is not None:
            end = at + len(run.paths)
            documents = tuple(map(operator.itemgetter(1), run.nodes))
            if tuple(paths[at:end]) == run.paths and all(
                map(operator.is_, map(nodes.__getitem__, run.paths), documents)
            ):
                pieces.append(run.text)
                at = end
                continue
            read.update(zip(run.paths, zip(documents, run.encoded, strict=True), strict=True))
        path = paths[at]
        document, raw = read.get(path, (None, b""))
        if document is nodes[path]:
            pieces.append(raw)
        else:
            document, raw = given.get(path, (None, b""))
            if document is not nodes[path]:
                raw = layout.encode(nodes[path])
            pieces.append(layout.encode(path) + b":" + raw)
        at += 1
    return layout.encode_with_metadata(root, b",".join(pieces))
