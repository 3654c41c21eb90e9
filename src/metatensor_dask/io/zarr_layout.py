"""The on-disk layout of a tensor in a Zarr v3 store: paths, documents, format checks.

The layout mirrors metatensor's ``.mts`` archive, one array per ``.npy`` member (see
``docs/zarr-format.md``, the versioned specification)::

    zarr.json                         root group; attrs {"metatensor_dask": {...}, "info": {...}}
    keys                              int32 (n_keys, n_dims); attrs {"names", "digest"}
    blocks/<i>/values                 (n_samples, *components, n_properties)
    blocks/<i>/samples                int32 (n_samples, d), chunked as the values
    blocks/<i>/components/<j>         int32 (n, 1)
    blocks/<i>/properties             int32 (n_properties, d)
    blocks/<i>/gradients/<p>/values|samples|components/<j>
    blocks/<i>/gradients/<p>/row_pointer   int64 (n_parent_rows + 1,), when rows are grouped
    blocks/<i>/gradients/<p>/gradients/<q>/...

This module only deals with metadata documents (JSON), never with chunk data: it
builds the documents a writer stores and parses the ones a reader finds, checking that
they describe a consistent tensor.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import json.scanner
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice, takewhile
from json.encoder import encode_basestring_ascii
from operator import methodcaller
from typing import Any
from urllib.parse import quote

import numpy as np

from ..errors import DamagedStoreError, MetatensorDaskError
from .zarr_codecs import KEY_ENCODING, is_plain
from .zarr_identity import APPENDED as APPENDED  # (the appends' writers name it here)
from .zarr_identity import (
    FIRST_FORMAT,
    LABELS_FORMAT,
    STORE_ID,
    TABLE,
    content_id,
    has_table,
    opened_id,
    records_table,
    table_problem,
)
from .zarr_integrity import VERIFY_HINT
from .zarr_integrity import damaged as _damaged
from .zarr_samples import is_chained, records_problem

__all__ = [
    "FORMAT",
    "ArrayInfo",
    "BlockLayout",
    "InlineMetadata",
    "TensorLayout",
    "array_document",
    "array_infos",
    "batch_record",
    "dimension_names",
    "encode_metadata",
    "encode_nodes",
    "encode_root",
    "encode_tabled",
    "group_document",
    "labels_attributes",
    "loads_root",
    "parse_layout",
    "parse_root",
    "refuse_without_inline_metadata",
    "root_document",
    "stored_info",
]

#: Version of the on-disk format written by this package. Readers refuse newer ones.
#: Format 2 guarantees that every chunk is stored (all-zero ones too) and records the
#: values' dtype and the gradient names in the root attributes; format 3 that sample
#: Labels carry records an append extends (:mod:`.zarr_samples`) and that row pointers
#: are chunked as their parent's values; format 4 that values arrays list the crc32c
#: of each chunk file and the root holds the id of its last whole write
#: (:mod:`.zarr_identity`); format 5 that the sample Labels and row pointers list them
#: too. Formats 1 to 4 are still read.
FORMAT = 5
#: Root attribute holding this package's own metadata.
ATTRIBUTE = "metatensor_dask"
#: Attribute (under :data:`ATTRIBUTE`) recording a run of ``write_batches``.
RUN = "batches"
#: Root attribute (under ``metatensor_dask``) that appends keep: the token of the write
#: (not an append) that last wrote the store, whose ``resume=True`` then finds it done.
WRITTEN = "written"
#: Prefix of the objects recording which chunks an unfinished write has stored.
PROGRESS_PREFIX = ".progress/"
#: The plan of a write of whole blocks, stored first (before the root document).
PLAN_KEY = PROGRESS_PREFIX + "plan.json"
#: The record of an append, stored first (before the root document of a new store).
APPEND_KEY = PROGRESS_PREFIX + "append.json"

ROW_POINTER = "row_pointer"


def progress_marker(path: str, chunk: int) -> str:
    """The key recording that chunk (or shard) ``chunk`` of the array ``path`` is stored:
    flat names, so that recording costs no folders."""
    name = f"{path}/{chunk}"
    if _UNQUOTED.fullmatch(name):  # the usual paths: only their slashes are quoted
        return PROGRESS_PREFIX + name.replace("/", "%2F")
    return PROGRESS_PREFIX + quote(name, safe="")


#: Names that ``quote`` leaves alone but for their slashes.
_UNQUOTED = re.compile(r"[A-Za-z0-9_.~/-]*")


#: Where the records of the chunks stored by each task of a write are (see
#: :func:`batch_record`); no marker starts so (they start with an array's path).
BATCH_PREFIX = PROGRESS_PREFIX + "batch-"


def batch_record(markers: list[str]) -> dict[str, bytes | memoryview]:
    """The record of a write task that stored the chunks ``markers`` (see
    :func:`progress_marker`), as ``{key: content}``: the JSON object
    ``{"chunks": markers}``, at a key that follows from it (a task run again rewrites
    its own record). Written once every chunk it names is stored; read back by
    :func:`~metatensor_dask.io.zarr_progress.recorded_chunks`."""
    content = json.dumps({"chunks": markers}).encode()
    name = hashlib.blake2b(content, digest_size=16).hexdigest()
    return {f"{BATCH_PREFIX}{name}.json": content}


def block_prefix(index: int) -> str:
    return f"blocks/{index}"


def gradient_prefix(parent: str, parameter: str) -> str:
    return f"{parent}/gradients/{parameter}"


# -- documents ---------------------------------------------------------------------------


def group_document(attributes: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``zarr.json`` document of a group."""
    return {"zarr_format": 3, "node_type": "group", "attributes": attributes or {}}


def _scope(path: str) -> tuple[str, str]:
    """(prefix of the dimension names, name within its block) of the array at ``path``.

    The prefix is empty for the arrays of a block and ``positions_`` (``positions_cell_``
    for a gradient of a gradient...) for those of a gradient, so that no dimension name
    repeats with another size along a path from the root: xarray's ``open_datatree``
    aligns every group with its ancestors.
    """
    parts = path.split("/")
    if parts[0] != "blocks" or len(parts) < 3:
        return "", "_".join(parts)
    rest = parts[2:]
    prefix = ""
    while len(rest) > 2 and rest[0] == "gradients":
        prefix += f"{rest[1]}_"
        rest = rest[2:]
    return prefix, "_".join(rest)


def dimension_names(path: str, components: list[str] | None = None) -> list[str]:
    """Zarr's ``dimension_names`` of the array at ``path``.

    ``values``: ``samples``, the ``components`` names (renamed where they would repeat
    another axis' name, see :func:`_component_dimensions`), ``properties`` (a gradient's
    samples are ``<gradient>_samples``); Labels: ``<name>_entry`` and
    ``<name>_dimension`` (``samples_entry``, ``components_0_entry``...); row pointers:
    ``row_pointer_entry``; the names of a gradient's own arrays start with its prefix
    (``positions_samples_entry``).
    """
    prefix, name = _scope(path)
    if name == "values":
        return [f"{prefix}samples", *_component_dimensions(components or []), "properties"]
    if name == ROW_POINTER:
        return [f"{prefix}{name}_entry"]
    return [f"{prefix}{name}_entry", f"{prefix}{name}_dimension"]


def _component_dimensions(components: list[str]) -> list[str]:
    """The dimension names of the components ``components``: their names, but those a
    store uses for other axes along the path from the root (``properties``, the
    ``samples`` of a block or of a gradient, the ``<name>_entry`` and
    ``<name>_dimension`` of Labels and row pointers) followed by ``_component``, and
    any name given already followed by ``_component`` as often as needed to be unique:
    ``open_datatree`` refuses a name with two sizes.

    Names are given from the last component to the first: the last components of a
    gradient are its parent's, which so get the parent's names (xarray aligns them),
    and a gradient's own component named as one of those names gets another one.
    """
    taken: set[str] = set()
    found = []
    for name in reversed(components):
        dimension = name
        if name == "properties" or name.endswith(("samples", "_entry", "_dimension")):
            dimension = f"{name}_component"
        while dimension in taken:
            dimension += "_component"
        taken.add(dimension)
        found.append(dimension)
    return found[::-1]


def labels_attributes(names: list[str], digest: str) -> dict[str, Any]:
    """Attributes of a Labels array: its dimension names and a content digest."""
    return {"names": list(names), "digest": digest}


def array_document(
    template: dict[str, Any],
    shape: tuple[int, ...],
    chunk_rows: int,
    shard_rows: int | None,
    attributes: dict[str, Any],
    dimension_names: list[str] | None = None,
) -> dict[str, Any]:
    """The ``zarr.json`` document of an array chunked along its first axis only.

    Parameters
    ----------
    template
        A document for the same dtype, number of dimensions and codecs (from
        :func:`metatensor_dask.io.zarr_codecs.template`); sharded when ``shard_rows``.
    shape
        Shape of the array.
    chunk_rows
        Rows per chunk (the unit of reading).
    shard_rows
        Rows per shard (the unit of writing), a multiple of ``chunk_rows``; ``None``
        for no sharding.
    """
    inner = [max(int(chunk_rows), 1)] + [max(int(n), 1) for n in shape[1:]]
    document = dict(template)
    document["shape"] = [int(n) for n in shape]
    document["attributes"] = attributes
    if shard_rows is None:
        grid = inner
    else:
        grid = [int(shard_rows), *inner[1:]]
        sharding = dict(template["codecs"][0])
        sharding["configuration"] = dict(sharding["configuration"], chunk_shape=inner)
        document["codecs"] = [sharding]
    document["chunk_grid"] = {"name": "regular", "configuration": {"chunk_shape": grid}}
    if dimension_names is not None:
        document["dimension_names"] = list(dimension_names)
    else:
        document.pop("dimension_names", None)
    return document


def root_document(
    complete: bool,
    info: dict[str, str],
    nodes: dict[str, dict[str, Any]],
    version: int = FORMAT,
    store_id: str | None = None,
    inline: bool = True,
) -> dict[str, Any]:
    """The root group's document: format, completion marker, info, and every node's
    metadata inline (zarr's consolidated metadata), so that a reader gets the whole
    layout in one read.

    ``version`` is the format of the store (a store keeps its format when some of it
    is written), and ``store_id`` its id (format 4; when ``None``, a complete store's is
    :func:`~.zarr_identity.content_id` of ``nodes``, an incomplete store has none).
    With ``inline`` false, the inline metadata is left empty, for
    :meth:`InlineMetadata.root` to fill with the nodes' documents already encoded (a
    map of 100,000 blocks has 1.4 million nodes: sorting them into a new mapping that
    the encoding replaces cost a second)."""
    ours: dict[str, Any] = {"format": version, "complete": bool(complete)}
    if version >= FIRST_FORMAT and (store_id is not None or complete):
        ours[STORE_ID] = store_id or content_id(nodes)
    metadata = _sorted(nodes) if inline else {}
    ours.update(_records(metadata, ordered=True) if inline else _records(nodes))
    document = group_document({ATTRIBUTE: ours, "info": dict(info)})
    document["consolidated_metadata"] = {
        "kind": "inline",
        "must_understand": False,
        "metadata": metadata,
    }
    return document


def _sorted(nodes: dict[str, Any]) -> dict[str, Any]:
    """``nodes`` sorted by path (by their paths alone: sorting the items compares tuples,
    several times slower for a store of many nodes)."""
    paths = sorted(nodes)
    return dict(zip(paths, map(nodes.__getitem__, paths), strict=True))


def _under(nodes: dict[str, Any], marker: str, ordered: bool) -> list[str]:
    """The paths of ``nodes`` that start with ``marker``; found by bisection when
    ``ordered`` (the paths sorted)."""
    if not ordered:
        return [path for path in nodes if path.startswith(marker)]
    paths = list(nodes)
    after = islice(paths, bisect.bisect_left(paths, marker), None)
    return list(takewhile(methodcaller("startswith", marker), after))


def _gradient_names(nodes: dict[str, Any], prefix: str, ordered: bool = False) -> list[str]:
    """Gradient paths (``positions``, ``positions/cell``...) under the block ``prefix``
    (``ordered``: the paths of ``nodes`` are sorted)."""
    marker = f"{prefix}/gradients/"
    found = []
    for path in _under(nodes, marker, ordered):
        document = nodes[path]
        if isinstance(document, dict):
            rest = path[len(marker) :].split("/")
            if (
                document.get("node_type") == "group"
                and all(part == "gradients" for part in rest[1::2])
                and len(rest) % 2 == 1
            ):
                found.append("/".join(rest[0::2]))
    return sorted(found)


def _records(nodes: dict[str, Any], ordered: bool = False) -> dict[str, Any]:
    """What the root records of the tensor (format 2), so that metadata edited in one
    place does not go unnoticed: the values' dtype and the gradient names."""
    values = nodes.get(f"{block_prefix(0)}/values")
    if not isinstance(values, dict):
        return {"dtype": None, "gradients": []}
    gradients = _gradient_names(nodes, block_prefix(0), ordered)
    return {"dtype": values.get("data_type"), "gradients": gradients}


#: Compact JSON, one encoder for every document (``json.dumps`` with options builds one
#: per call).
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def encode(document: Any) -> bytes:
    return _ENCODER.encode(document).encode()


#: The attributes of an array's document without any, as :func:`encode` writes them.
_NO_ATTRIBUTES = b'"attributes":{}'


def encode_tabled(document: dict[str, Any], untabled: bytes) -> bytes:
    """:func:`encode` of an array's ``document`` whose attributes are its chunk table
    (see :mod:`.zarr_identity`), given ``untabled``, :func:`encode` of the same document
    with other attributes: when those were none, the table is put in their place (the
    documents of a write of thousands of tiny blocks are encoded once, then once more
    with their tables)."""
    attributes = document["attributes"]
    if list(attributes) == [TABLE] and untabled.count(_NO_ATTRIBUTES) == 1:
        table = ",".join(map(str, attributes[TABLE]))
        tabled = f'"attributes":{{"{TABLE}":[{table}]}}'.encode()
        return untabled.replace(_NO_ATTRIBUTES, tabled)
    return encode(document)


class RepeatEncoder:
    """Encodes the node documents of a write, reusing the bytes of the last document
    encoded at the same place in another block (``values``, ``gradients/positions``...)
    when it is equal: the blocks of a map mostly repeat their documents, and comparing
    two equal documents (in C) is much cheaper than encoding one."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[dict[str, Any], bytes]] = {}

    def encode(self, path: str, document: dict[str, Any]) -> bytes:
        place = path.partition("/")[2].partition("/")[2] if path.startswith("blocks/") else path
        last = self._last.get(place)
        if last is not None and last[0] == document:
            return last[1]
        encoded = encode(document)
        self._last[place] = (document, encoded)
        return encoded


def encode_nodes(nodes: dict[str, dict[str, Any]]) -> dict[str, bytes]:
    """Every node's document encoded (see :class:`RepeatEncoder`), by path, sorted."""
    encoder = RepeatEncoder()
    return {path: encoder.encode(path, nodes[path]) for path in sorted(nodes)}


def encode_root(document: dict[str, Any], encoded: dict[str, bytes]) -> bytes:
    """:func:`encode` of the root ``document`` (see :func:`root_document`), its inline
    metadata joined from the nodes' documents already ``encoded`` (see
    :func:`encode_nodes`) rather than encoded again."""
    return InlineMetadata(encoded).root(document)


def encode_metadata(encoded: dict[str, bytes]) -> bytes:
    """The inline metadata of a root (see :func:`encode_with_metadata`) holding the
    nodes' documents ``encoded`` (see :func:`encode_nodes`), in their order."""
    return b"".join(InlineMetadata(encoded).pieces)


class InlineMetadata:
    """The inline metadata of a root holding the nodes' documents ``encoded`` (see
    :func:`encode_nodes`), in their order, kept as its pieces: each encoded path
    (``"path":``, with the comma before it but for the first) followed by its document.

    A write encodes every node once, for its own ``zarr.json``, and the root twice
    (incomplete, then complete with the chunk tables of its values arrays): the second
    root replaces the documents given a table (:meth:`replaced`) and is joined in one
    piece with the root's other members (:meth:`root`), the paths not encoded again
    nor the megabytes of metadata copied in between."""

    def __init__(self, encoded: dict[str, bytes]) -> None:
        #: the paths, in the order of their pieces
        self.paths = list(encoded)
        pieces: list[bytes] = [b""] * (2 * len(self.paths))
        # each path as `encode` gives it (ASCII, escaped), without a call to the encoder
        pieces[0::2] = [f",{encode_basestring_ascii(path)}:".encode() for path in self.paths]
        pieces[1::2] = encoded.values()
        if pieces:
            pieces[0] = pieces[0][1:]
        self.pieces = pieces

    def replaced(self, documents: dict[str, bytes]) -> InlineMetadata:
        """This metadata with the encoded ``documents`` of some of its paths in place of
        theirs (found by one scan when ``documents`` come in the order of the paths)."""
        found = InlineMetadata({})
        found.paths, found.pieces = self.paths, self.pieces.copy()
        index = 0
        for path, raw in documents.items():
            try:
                index = self.paths.index(path, index)
            except ValueError:  # not after the previous one
                index = self.paths.index(path)
            found.pieces[2 * index + 1] = raw
        return found

    def root(self, document: dict[str, Any]) -> bytes:
        """:func:`encode` of the root ``document`` holding this metadata inline (see
        :func:`encode_with_metadata`)."""
        before, after = _around_metadata(document)
        return b"".join([before, b"{", *self.pieces, b"}", after])


def encode_with_metadata(document: dict[str, Any], metadata: bytes) -> bytes:
    """:func:`encode` of the root ``document`` whose inline metadata, encoded, is
    ``{metadata}`` (``metadata``: each node's encoded path and document, ``"path":{...}``,
    joined by commas, in the order of the document's metadata)."""
    before, after = _around_metadata(document)
    return b"".join((before, b"{", metadata, b"}", after))  # the metadata copied once


def _around_metadata(document: dict[str, Any]) -> tuple[bytes, bytes]:
    """:func:`encode` of the root ``document`` before and after its inline metadata."""
    placeholder = f"metadata-{uuid.uuid4().hex}"
    consolidated = {**document["consolidated_metadata"], "metadata": placeholder}
    head = encode({**document, "consolidated_metadata": consolidated})
    before, _, after = head.partition(encode(placeholder))
    return before, after


# -- parsing ------------------------------------------------------------------------------


#: The C scanner of :mod:`json`: ``_SCAN(text, i)`` is ``(the JSON value at i, its end)``.
_SCAN: Any = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def _compact_object(
    text: str, index: int, value_at: Callable[[str, int], tuple[Any, int]]
) -> tuple[dict[str, Any], int]:
    """The JSON object written without spaces at ``text[index]``, each value read by
    ``value_at(key, its index)``, and its end; ``ValueError`` (or ``StopIteration``,
    ``IndexError``) when the text is not so."""
    if text[index] != "{":
        raise ValueError("not an object")
    index += 1
    found: dict[str, Any] = {}
    if text[index] == "}":
        return found, index + 1
    while True:
        if text[index] != '"':
            raise ValueError("not a key")
        key, index = _SCAN(text, index)
        if text[index] != ":":
            raise ValueError("no colon")
        found[key], index = value_at(key, index + 1)
        if text[index] == "}":
            return found, index + 1
        if text[index] != ",":
            raise ValueError("no comma")
        index += 1


class Repeats:
    """Reads the node documents of a root's inline metadata (see :func:`loads_root`):
    a document that repeats, byte for byte, the last one read at the same place of
    another block (``values``, ``gradients/positions``...) is that one object.

    With ``written`` (see :func:`scan_pairs`), a document is only read when its text is
    what :func:`encode` writes of it (a ``ValueError`` otherwise): each document parsed
    is encoded once, and one found again is, by its text, the one encoded then."""

    def __init__(self, written: bool = False) -> None:
        self._last: dict[str, tuple[str, Any]] = {}
        self._written = written

    def node(self, text: str, key: str, index: int) -> tuple[Any, int]:
        """The document of the node ``key`` at ``text[index]``, and its end."""
        place = key.partition("/")[2].partition("/")[2] if key.startswith("blocks/") else key
        previous = self._last.get(place)
        if previous is not None and text.startswith(previous[0], index):
            return previous[1], index + len(previous[0])
        value, end = _SCAN(text, index)
        written = text[index:end]
        if self._written and _ENCODER.encode(value) != written:
            raise ValueError("not written as encode writes it")
        if type(value) is dict:
            self._last[place] = (written, value)
        return value, end


def scan_pairs(
    text: str, value_at: Callable[[str, int], tuple[Any, int]]
) -> tuple[list[tuple[str, Any]], list[int]]:
    """The members ``"key":value`` joined by commas that make up the whole of ``text``
    (the inside of an object, or a run of its members), each value read by
    ``value_at(key, its index)``, in order, and where each member ends in ``text``;
    ``ValueError`` (or ``StopIteration``, ``IndexError``) when the text is not so, or a
    key not written as :func:`encode` writes it (then ASCII: the ends are those in the
    text's UTF-8 bytes when the values are also written so, see :class:`Repeats`)."""
    found: list[tuple[str, Any]] = []
    ends: list[int] = []
    index = 0
    while True:
        if text[index] != '"':
            raise ValueError("not a key")
        key, end = _SCAN(text, index)
        if text[end] != ":" or not text.startswith(encode_basestring_ascii(key), index):
            raise ValueError("no colon, or a key not written as encode writes it")
        value, index = value_at(key, end + 1)
        found.append((key, value))
        ends.append(index)
        if index == len(text):
            return found, ends
        if text[index] != ",":
            raise ValueError("no comma")
        index += 1


def loads_root(raw: bytes) -> Any:
    """``json.loads(raw)`` of a root document, where the node documents of the inline
    metadata that repeat, byte for byte, the last one at the same place of another
    block (``values``, ``gradients/positions``...) are one object, parsed once (see
    :class:`Repeats`).

    Writers (see :func:`encode_root`) store the documents of a map's blocks so, mostly
    equal: for 1,000 tiny blocks this reads the 5 MB root 4 times faster than
    ``json.loads``, and the layout checks then find equal documents by identity. Each
    value is still read by :mod:`json`'s own scanner, and a document reused is one
    whose whole text is found again (an object ends where its text does), so the
    result is ``json.loads(raw)``; a text written otherwise (with spaces, not UTF-8) is
    read by ``json.loads``, which also raises for invalid JSON.
    """
    try:
        text = raw.decode()
        repeats = Repeats()

        def node(key: str, index: int) -> tuple[Any, int]:
            return repeats.node(text, key, index)

        def consolidated(key: str, index: int) -> tuple[Any, int]:
            if key == "metadata" and text[index] == "{":
                return _compact_object(text, index, node)
            return _SCAN(text, index)

        def top(key: str, index: int) -> tuple[Any, int]:
            if key == "consolidated_metadata" and text[index] == "{":
                return _compact_object(text, index, consolidated)
            return _SCAN(text, index)

        document, end = _compact_object(text, 0, top)
        if end == len(text):
            return document
    except (ValueError, StopIteration, IndexError, RecursionError):
        pass
    return json.loads(raw)


def parse_root(raw: bytes | None, where: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Check the root document of a store and return (our attributes, consolidated nodes).

    Raises :class:`MetatensorDaskError` for a missing store, a store not written by
    metatensor-dask, or a format newer than :data:`FORMAT`. The nodes are ``None`` when
    the document holds no consolidated metadata.
    """
    if raw is None:
        raise MetatensorDaskError(
            f"no Zarr group found at {where}: there is no 'zarr.json' at its root; "
            "check the path, or write a tensor there with `tensor.to_zarr(...)`"
        )
    try:
        document = loads_root(raw)
    except ValueError as error:
        raise _damaged(where, f"its root 'zarr.json' is not valid JSON ({error})") from None
    except RecursionError as error:  # values nested deeper than Python's stack allows
        raise _damaged(where, f"its root 'zarr.json' can not be read ({error})") from None
    return check_root(document, where)


def _holds_a_tensor(document: dict[str, Any]) -> bool:
    """Whether the inline metadata of the root ``document`` lists a tensor's layout: a
    ``keys`` array with the Labels attributes this package writes, and a ``blocks``
    group."""
    consolidated = document.get("consolidated_metadata")
    nodes = consolidated.get("metadata") if isinstance(consolidated, dict) else None
    if not isinstance(nodes, dict):
        return False
    keys, blocks = nodes.get("keys"), nodes.get("blocks")
    keys_attributes = keys.get("attributes") if isinstance(keys, dict) else None
    return (
        isinstance(keys_attributes, dict)
        and {"names", "digest"} <= keys_attributes.keys()
        and isinstance(blocks, dict)
        and blocks.get("node_type") == "group"
    )


def _lost_attribute(where: str) -> DamagedStoreError:
    """The error for a store whose root lists a tensor but lost this package's
    attribute (see :func:`_holds_a_tensor`)."""
    return DamagedStoreError(
        f"the store at {where} is damaged: its root lists a tensor's arrays but lost its "
        f"'{ATTRIBUTE}' attribute (format, store id) and the tensor's info: another tool "
        "replaced the root's attributes (xarray's Dataset.to_zarr(mode='a') into the "
        "root of a store writes the dataset's attributes in their place; write other "
        f"data into a store of its own){VERIFY_HINT}; write or convert the tensor again "
        "from its source (mode='w' replaces the store)"
    )


def check_root(document: Any, where: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """:func:`parse_root` of the root document once read as JSON."""
    attributes = document.get("attributes") if isinstance(document, dict) else None
    if (
        not isinstance(document, dict)
        or document.get("zarr_format") != 3
        or document.get("node_type") != "group"
        or not isinstance(attributes, dict)
        or not isinstance(attributes.get(ATTRIBUTE), dict)
    ):
        if isinstance(attributes, dict) and ATTRIBUTE not in attributes:
            if _holds_a_tensor(document):
                raise _lost_attribute(where)
        raise MetatensorDaskError(
            f"{where} is not a metatensor-dask store: its root is not a Zarr v3 group with "
            f"a '{ATTRIBUTE}' attribute; open other Zarr data with zarr.open_group"
        )
    ours = attributes[ATTRIBUTE]
    version = ours.get("format")
    if not isinstance(version, int) or isinstance(version, bool):
        raise _damaged(where, f"it has no valid '{ATTRIBUTE}.format' attribute (got {version!r})")
    if version < 1:
        raise _damaged(where, f"its '{ATTRIBUTE}.format' attribute is {version}")
    if version > FORMAT:
        raise MetatensorDaskError(
            f"{where} uses the metatensor-dask storage format {version}, newer than the "
            f"format {FORMAT} this version reads: upgrade metatensor-dask"
        )
    consolidated = document.get("consolidated_metadata")
    nodes = consolidated.get("metadata") if isinstance(consolidated, dict) else None
    return attributes, nodes if isinstance(nodes, dict) else None


def refuse_without_inline_metadata(attributes: dict[str, Any], where: str) -> None:
    """Refuse a format 4 store whose root (``attributes``) holds no inline metadata.

    Every writer of format 4 stores each node's document in the root too, with the
    chunk tables of the values arrays and the digests of the Labels: they are what
    tells this store's chunks and Labels from those of another store of the same
    shapes. A node's own document travels with its folder: read from them, a blocks
    folder copied from another such store would be read as this store's. Older
    formats have no tables, and keep being read from their nodes' documents.
    """
    if attributes[ATTRIBUTE]["format"] >= FIRST_FORMAT:
        raise _damaged(
            where,
            "its root 'zarr.json' holds no inline (consolidated) metadata, which every "
            f"format {FIRST_FORMAT} writer stores with the chunk tables and Labels digests "
            "of every array: the nodes' own documents, which move with their folders, can "
            "not tell this store's blocks from blocks copied from another store",
        )


@dataclass
class ArrayInfo:
    """What a reader needs to know of one stored array, from its document."""

    path: str
    shape: tuple[int, ...]
    dtype: np.dtype
    chunk_rows: int
    write_rows: int
    attributes: dict[str, Any]
    document: dict[str, Any]
    #: Whether a missing chunk is read as zeros (format 1 arrays with a compressor or
    #: sharding, whose writer skipped all-zero chunks) instead of being damage.
    missing_ok: bool = False
    #: Whether its chunks are plain (see
    #: :func:`~metatensor_dask.io.zarr_codecs.is_plain`): decoded without zarr.
    plain: bool = False
    #: The id of its store as opened (:func:`~.zarr_identity.opened_id`: by the first
    #: read of the block's documents as they are), for a values array listing its chunk
    #: files (format 4): every chunk file read is checked against the list.
    store_id: str | None = None

    @property
    def names(self) -> list[str]:
        return list(self.attributes.get("names", []))

    @property
    def digest(self) -> str | None:
        return self.attributes.get("digest")

    @property
    def keeps_records(self) -> bool:
        """Whether this is a ``samples`` array with a chained digest, whose records
        (``chain``, ``max``, ``column_max``) appends extend. Other Labels written before
        writers recorded their plain digest may carry a chained one without records:
        it is checked against their entries as read, like any digest."""
        return is_chained(self.digest) and self.path.rpartition("/")[2] == "samples"


@dataclass
class BlockLayout:
    """The arrays of one block (or gradient) and of its gradients."""

    prefix: str
    values: ArrayInfo
    samples: ArrayInfo
    components: list[ArrayInfo]
    properties: ArrayInfo | None
    row_pointer: ArrayInfo | None = None
    gradients: dict[str, BlockLayout] = field(default_factory=dict)

    def small_labels(self) -> list[ArrayInfo]:
        """The components and properties arrays of this block and its gradients (the
        Labels read whole when a store is opened)."""
        found = list(self.components)
        if self.properties is not None:
            found.append(self.properties)
        for gradient in self.gradients.values():
            found.extend(gradient.small_labels())
        return found

    def arrays(self) -> list[ArrayInfo]:
        """Every array of this block and its gradients, values first."""
        found = [self.values, self.samples, *self.components]
        if self.properties is not None:
            found.append(self.properties)
        if self.row_pointer is not None:
            found.append(self.row_pointer)
        for gradient in self.gradients.values():
            found.extend(gradient.arrays())
        return found


@dataclass
class TensorLayout:
    keys: ArrayInfo
    blocks: list[BlockLayout]
    info: dict[str, str]
    nodes: dict[str, dict[str, Any]]
    format: int = FORMAT
    #: The id of a complete format 4 store as opened (its store id and its last append,
    #: see :func:`~.zarr_identity.opened_id`).
    store_id: str | None = None


def _dtype(name: Any, path: str, where: str) -> np.dtype:
    """The dtype that the document of the array at ``path`` names (``data_type``): a
    name, as Zarr writes it; anything else (none: ``np.dtype(None)`` is float64) is
    damage."""
    if not isinstance(name, str):
        raise _damaged(where, f"the metadata of '{path}' names no data type ({name!r})")
    known = _DTYPES.get(name)
    if known is not None:
        return known
    try:
        dtype = np.dtype(name)
    except TypeError:
        raise _damaged(where, f"'{path}' has the data type {name!r}, unknown to numpy") from None
    if len(_DTYPES) < 64:
        _DTYPES[name] = dtype
    return dtype


#: numpy dtypes by their name in documents: ``np.dtype(name)`` costs more than the rest
#: of the parsing of a small array's document.
_DTYPES: dict[str, np.dtype] = {}

#: Codecs after ``bytes`` that the format allows: compressors and the checksum. The
#: ``bytes`` codec must be little-endian, so that no edit of the metadata can make a
#: reader reinterpret the stored bytes.
_BYTES_CODECS = ("crc32c", "zstd", "blosc", "gzip")
_LITTLE = {"name": "bytes", "configuration": {"endian": "little"}}


def _codec_problem(codecs: Any, top: bool) -> str | None:
    """What the format does not allow in a codec list (``None`` when allowed)."""
    if not isinstance(codecs, list) or not codecs or not isinstance(codecs[0], dict):
        return "no codecs"
    first = codecs[0]
    if top and first.get("name") == "sharding_indexed" and len(codecs) == 1:
        configuration = first.get("configuration") or {}
        if configuration.get("index_location", "end") != "end" or configuration.get(
            "index_codecs"
        ) != [_LITTLE, {"name": "crc32c"}]:
            return "a shard index other than little-endian bytes and crc32c at the end"
        return _codec_problem(configuration.get("codecs"), False)
    if {k: v for k, v in first.items() if v != {}} != _LITTLE and first != {"name": "bytes"}:
        return f"the first codec {first}, not little-endian 'bytes'"
    for codec in codecs[1:]:
        name = codec.get("name") if isinstance(codec, dict) else None
        if not isinstance(name, str) or not (
            name in _BYTES_CODECS or name.startswith("numcodecs.")
        ):
            return f"the codec {codec}"
    return None


class _Allowed:
    """What was already found allowed while parsing the documents of one store,
    compared by value: the arrays of a store share a few codec lists, and the arrays
    at the same place in every block (``values``, ``gradients/positions/samples``...)
    usually have the same checked fields; comparing equal JSON values is much cheaper
    than checking them again."""

    def __init__(self) -> None:
        self.codecs: list[Any] = []
        #: For each place in a block, the last document checked there and its info.
        self.arrays: dict[str, tuple[dict[str, Any], ArrayInfo]] = {}
        #: The documents found to be valid Labels (of the number of columns required
        #: then), by their ids: each held here, so that no other object takes its id.
        #: Each is the document as read, not the equal one :meth:`known` gives in its
        #: place: the checks read its own attributes, which equal values of other JSON
        #: types (``false``, ``0.0`` for ``0``) may make invalid.
        self.labels: dict[tuple[int, int | None], dict[str, Any]] = {}

    def labels_known(self, document: dict[str, Any], dims: int | None) -> bool:
        """Whether ``document`` (as read) is one found to be valid Labels of ``dims``
        columns before (the same object: by its text, when read by :func:`loads_root`)."""
        return self.labels.get((id(document), dims)) is document

    def remember_labels(self, document: dict[str, Any], dims: int | None) -> None:
        self.labels[id(document), dims] = document

    def known(self, path: str, document: dict[str, Any]) -> ArrayInfo | None:
        """The info of ``document`` at ``path``, when its checked fields are those of the
        last document checked at the same place in another block."""
        found = self.arrays.get(path.partition("/")[2].partition("/")[2])
        if found is None:
            return None
        previous, info = found
        attributes = document.get("attributes") or {}
        # equal documents (one object when read by `loads_root`, else one comparison,
        # in C) are the common case, and then share one object (readers memoize what
        # they derive from a document by identity); sample Labels differ in their
        # attributes only
        if document is previous or document == previous:
            document = previous
        elif (
            not isinstance(attributes, dict)
            or document.get("shape") != previous.get("shape")
            or document.get("chunk_grid") != previous.get("chunk_grid")
            or document.get("codecs") != previous.get("codecs")
            or document.get("data_type") != previous.get("data_type")
            or document.get("fill_value") != previous.get("fill_value")
            or document.get("dimension_names") != previous.get("dimension_names")
            or document.get("chunk_key_encoding") != previous.get("chunk_key_encoding")
        ):
            return None
        return ArrayInfo(
            path,
            info.shape,
            info.dtype,
            info.chunk_rows,
            info.write_rows,
            attributes,
            document,
            plain=info.plain,
        )

    def remember(self, path: str, info: ArrayInfo) -> None:
        self.arrays[path.partition("/")[2].partition("/")[2]] = (info.document, info)

    def codec_problem(self, codecs: Any) -> str | None:
        if codecs in self.codecs:
            return None
        problem = _codec_problem(codecs, True)
        if problem is None and len(self.codecs) < 16:
            self.codecs.append(json.loads(json.dumps(codecs)))  # a copy nobody changes
        return problem


def _fill_is_zero(value: Any) -> bool:
    if isinstance(value, list):
        return all(_fill_is_zero(v) for v in value)
    return not isinstance(value, str) and value == 0


def _ints(values: Any) -> tuple[int, ...]:
    """A shape or chunk shape as ints (a ``ValueError`` or ``TypeError`` otherwise)."""
    if type(values) is list and all(type(n) is int for n in values):
        return tuple(values)
    return tuple(int(n) for n in values)


def array_info(
    nodes: dict[str, Any], path: str, where: str, allowed: _Allowed | None = None
) -> ArrayInfo:
    """Parse the document of the array at ``path``, checking what the format allows
    (chunk grid, chunk key encoding, codecs, dtype, fill value); a clear error when it
    is missing.

    ``allowed`` remembers the codec lists already checked, when parsing many arrays.
    """
    document = nodes.get(path)
    if not isinstance(document, dict) or document.get("node_type") != "array":
        raise _damaged(where, f"the array '{path}' is missing")
    if document.get("zarr_format") != 3:
        raise _damaged(where, f"the metadata of '{path}' is not a valid Zarr v3 array")
    if allowed is not None:
        known = allowed.known(path, document)
        if known is not None:
            return known
    try:
        shape = _ints(document["shape"])
        grid_document = document["chunk_grid"]
        grid = _ints(grid_document["configuration"]["chunk_shape"])
        codecs = document.get("codecs") or [{}]
        if codecs[0].get("name") == "sharding_indexed":
            inner = _ints(codecs[0]["configuration"]["chunk_shape"])
        else:
            inner = grid
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        raise _damaged(where, f"the metadata of '{path}' is not a valid Zarr v3 array") from None
    dtype = _dtype(document.get("data_type"), path, where)
    if dtype.kind not in "biufc":
        raise _damaged(where, f"'{path}' has the data type {dtype}, which the format forbids")
    if len(grid) != len(shape) or len(inner) != len(shape):
        raise _damaged(where, f"the chunk shape of '{path}' does not match its shape {shape}")
    if (
        min(grid + inner, default=1) < 1
        or (inner is not grid and any(g % i for g, i in zip(grid, inner, strict=True)))
        or grid_document.get("name") != "regular"
    ):
        raise _damaged(
            where, f"'{path}' has an invalid chunk grid {list(grid)} (chunks {list(inner)})"
        )
    encoding = document.get("chunk_key_encoding")
    if encoding != KEY_ENCODING:
        raise _damaged(
            where,
            f"'{path}' has the chunk key encoding {encoding!r}, which the format forbids "
            "(every writer names chunk files such as 'c.3.0.0': the default encoding "
            "with the '.' separator)",
        )
    problem = (
        _codec_problem(document.get("codecs"), True)
        if allowed is None
        else allowed.codec_problem(document.get("codecs"))
    )
    if problem is not None:
        raise _damaged(where, f"'{path}' uses {problem}, which the format forbids")
    fill = document.get("fill_value")
    if not (type(fill) is int and fill == 0) and not _fill_is_zero(fill):
        raise _damaged(where, f"'{path}' has the fill value {fill!r}, not 0")
    names = document.get("dimension_names")
    if names is not None and (
        type(names) is not list
        or len(names) != len(shape)
        or not all(name is None or type(name) is str for name in names)
    ):
        # absent in stores written before every array carried them: accepted
        raise _damaged(where, f"'{path}' has invalid dimension names {names!r} for {shape}")
    attributes = document.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise _damaged(where, f"the attributes of '{path}' are not a mapping")
    info = ArrayInfo(
        path,
        shape,
        dtype,
        inner[0] if inner else 1,
        grid[0] if grid else 1,
        attributes,
        document,
        plain=is_plain(document),
    )
    if allowed is not None:
        allowed.remember(path, info)
    return info


def array_infos(nodes: dict[str, Any], paths: list[str], where: str) -> list[ArrayInfo]:
    """:func:`array_info` of the arrays at ``paths``, each document equal to one checked
    before at the same place in another block taken as checked (see :class:`_Allowed`)."""
    allowed = _Allowed()
    return [array_info(nodes, path, where, allowed) for path in paths]


def _check_plain(info: ArrayInfo, where: str) -> None:
    """Refuse a Labels or row pointer array stored other than plain (``bytes``, then
    ``crc32c``), as every writer stores them: a compressor or sharding there is an
    edited document."""
    if not info.plain:
        raise _damaged(
            where,
            f"the array '{info.path}' is stored with a compressor or sharding, but Labels "
            "and row pointers are always stored plain (bytes, then crc32c)",
        )


def _labels_info(
    nodes: dict[str, Any],
    path: str,
    where: str,
    dims: int | None = None,
    allowed: _Allowed | None = None,
) -> ArrayInfo:
    info = array_info(nodes, path, where, allowed)
    document = nodes[path]
    if allowed is not None and allowed.labels_known(document, dims):
        return info
    _check_plain(info, where)
    if info.dtype != np.int32 or len(info.shape) != 2:
        raise _damaged(
            where,
            f"the Labels array '{path}' must be 2-D int32, got {info.dtype} with shape "
            f"{info.shape}",
        )
    names = info.attributes.get("names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _damaged(where, f"the Labels array '{path}' has no 'names' attribute")
    if len(names) != info.shape[1]:
        raise _damaged(
            where,
            f"the Labels array '{path}' has {info.shape[1]} columns but {len(names)} names",
        )
    if dims is not None and info.shape[1] != dims:
        raise _damaged(where, f"the Labels array '{path}' must have {dims} column(s)")
    # every writer records a digest; a chained one of samples (format 3) comes with
    # the records that appends extend
    problem = (
        "digest"
        if not isinstance(info.digest, str)
        else records_problem(info.attributes, *info.shape)
        if info.keeps_records
        else None
    )
    if problem is not None:
        raise _damaged(where, f"the Labels array '{path}' has no valid '{problem}' attribute")
    if allowed is not None:
        allowed.remember_labels(document, dims)
    return info


def gradient_index(nodes: dict[str, Any]) -> dict[str, list[str]]:
    """For each ``<prefix>/gradients`` path, the names of the groups directly under it."""
    index: dict[str, list[str]] = {}
    for path, document in nodes.items():
        parent, _, name = path.rpartition("/")
        if (
            parent.endswith("/gradients")
            and isinstance(document, dict)
            and document.get("node_type") == "group"
        ):
            index.setdefault(parent, []).append(name)
    return {parent: sorted(names) for parent, names in index.items()}


def _parse_block(
    nodes: dict[str, Any],
    index: dict[str, list[str]],
    prefix: str,
    where: str,
    parent_rows: int | None,
    parent: BlockLayout | None,
    allowed: _Allowed,
) -> BlockLayout:
    values = array_info(nodes, f"{prefix}/values", where, allowed)
    if len(values.shape) < 2:
        raise _damaged(where, f"'{prefix}/values' must have at least 2 dimensions")
    samples = _labels_info(nodes, f"{prefix}/samples", where, allowed=allowed)
    if samples.shape[0] != values.shape[0]:
        raise _damaged(
            where,
            f"'{prefix}/samples' has {samples.shape[0]} entries but '{prefix}/values' has "
            f"{values.shape[0]} rows",
        )
    components = []
    for j in range(len(values.shape) - 2):
        component = _labels_info(nodes, f"{prefix}/components/{j}", where, 1, allowed)
        if component.shape[0] != values.shape[j + 1]:
            raise _damaged(
                where,
                f"'{prefix}/components/{j}' has {component.shape[0]} entries but axis "
                f"{j + 1} of '{prefix}/values' has size {values.shape[j + 1]}",
            )
        components.append(component)
    if parent is None:
        properties = _labels_info(nodes, f"{prefix}/properties", where, allowed=allowed)
        n_properties = properties.shape[0]
    else:
        properties = None
        n_properties = parent.values.shape[-1]
        if values.dtype != parent.values.dtype:
            raise _damaged(
                where,
                f"'{prefix}/values' has dtype {values.dtype} but its parent has "
                f"{parent.values.dtype}",
            )
        if len(values.shape) < len(parent.values.shape) or (
            values.shape[len(values.shape) - len(parent.values.shape) + 1 :]
            != parent.values.shape[1:]
        ):
            raise _damaged(
                where,
                f"'{prefix}/values' has shape {values.shape}, which does not end with the "
                f"components and properties of its parent {parent.values.shape[1:]}",
            )
        if not samples.names or samples.names[0] != "sample":
            raise _damaged(where, f"the first dimension of '{prefix}/samples' must be 'sample'")
    if values.shape[-1] != n_properties:
        raise _damaged(
            where,
            f"'{prefix}/values' has {values.shape[-1]} columns but there are {n_properties} "
            "properties",
        )
    row_pointer = None
    if parent_rows is not None and f"{prefix}/{ROW_POINTER}" in nodes:
        row_pointer = array_info(nodes, f"{prefix}/{ROW_POINTER}", where, allowed)
        _check_plain(row_pointer, where)
        if row_pointer.dtype != np.int64 or row_pointer.shape != (parent_rows + 1,):
            raise _damaged(
                where,
                f"'{prefix}/{ROW_POINTER}' must be int64 with shape ({parent_rows + 1},), got "
                f"{row_pointer.dtype} with shape {row_pointer.shape}",
            )
    layout = BlockLayout(prefix, values, samples, components, properties, row_pointer)
    for parameter in index.get(f"{prefix}/gradients", []):
        layout.gradients[parameter] = _parse_block(
            nodes,
            index,
            gradient_prefix(prefix, parameter),
            where,
            values.shape[0],
            layout,
            allowed,
        )
    return layout


def _signature(layout: BlockLayout) -> Any:
    """What every block of a tensor shares: names, dtype and gradients (the names as
    stored: checked to be lists of strings)."""
    return (
        layout.samples.attributes.get("names"),
        [c.attributes.get("names") for c in layout.components],
        layout.properties.attributes.get("names") if layout.properties is not None else None,
        layout.values.dtype,
        [(p, _signature(g)) for p, g in layout.gradients.items()],
    )


def _check_format_records(ours: dict[str, Any], version: int, where: str) -> None:
    """Refuse a root whose format is older than what it records: only format 4 stores
    have a store id, so a root holding one with an older format had its format number
    edited, which would read the store without the checks of its own format (its chunk
    tables; for format 1, missing chunks read as zeros)."""
    if version < FIRST_FORMAT and STORE_ID in ours:
        raise _damaged(
            where,
            f"its '{ATTRIBUTE}.format' attribute is {version}, but the root records a "
            f"'{STORE_ID}', which only format {FIRST_FORMAT} stores have: the format "
            "number was edited",
        )


def _refuse_tables(blocks: list[BlockLayout], version: int, where: str) -> None:
    """Refuse arrays recording a chunk table in a store of a format that does not
    record one for them (values arrays before format 4, sample Labels and row pointers
    before format 5): its format number was edited (for values, its store id removed
    too, else :func:`_check_format_records` saw it), which would read the store without
    the checks of the tables."""
    for block in blocks:
        for info in block.arrays():
            if not records_table(info.document):
                continue
            first = FIRST_FORMAT if info.path.endswith("/values") else LABELS_FORMAT
            if version < first:
                raise _damaged(
                    where,
                    f"its '{ATTRIBUTE}.format' attribute is {version}, but the array "
                    f"'{info.path}' records a '{TABLE}', which only format {first} "
                    "stores have: the format number was edited",
                )


def _identify(ours: dict[str, Any], blocks: list[BlockLayout], version: int, where: str) -> str:
    """Check the store id and the chunk tables of a store of format ``version`` (4 or
    newer), and give its values arrays the id a reader binds to
    (:func:`~.zarr_identity.opened_id`; those without table, written without
    checksums, to tell a read of a store overwritten since from damage), and the other
    arrays with a table (sample Labels and row pointers, format 5) too; returns that
    id."""
    store_id = ours.get(STORE_ID)
    if not isinstance(store_id, str) or not store_id:
        raise _damaged(where, f"it has no valid '{ATTRIBUTE}.{STORE_ID}' attribute")
    store_id = opened_id(ours)
    for block in blocks:
        for info in block.arrays():
            tabled = has_table(info.path, info.document, version)
            if tabled:
                problem = table_problem(info.document)
                if problem is not None:
                    raise _damaged(where, f"the array '{info.path}' has {problem}")
            if tabled or info.path.endswith("/values"):
                info.store_id = store_id
    return store_id


@dataclass(eq=False)
class BlockNodes:
    """Every node document of one block (``blocks/<i>`` and the nodes under it), as
    read from one run of a root document's text (see :mod:`.zarr_root_cache`), and
    the layouts :func:`parse_layout` found them to describe: the same text read again
    describes the same block, which is not checked again."""

    #: The paths of the block's nodes.
    paths: tuple[str, ...]
    #: For each ``<prefix>/gradients`` path of the block, the names of the groups
    #: directly under it (see :func:`gradient_index`).
    gradients: dict[str, list[str]]
    #: By what the checks depend on besides the documents (the store's format and id),
    #: the block's layout and :func:`_signature`.
    checked: dict[Any, tuple[BlockLayout, Any]] = field(default_factory=dict)

    def nodes(self, every: dict[str, Any]) -> dict[str, Any]:
        """The block's node documents, from ``every`` node of the store."""
        return {path: every[path] for path in self.paths}


def _fresh(
    nodes: dict[str, Any], found: BlockNodes | None, i: int, where: str, allowed: _Allowed
) -> BlockLayout:
    """Block ``i`` parsed from ``nodes``, with the gradient index of its nodes."""
    index = found.gradients if found is not None else {}
    return _parse_block(nodes, index, block_prefix(i), where, None, None, allowed)


def _parse_blocks(
    nodes: dict[str, Any], count: int, where: str, known: dict[int, BlockNodes] | None, context: Any
) -> tuple[list[BlockLayout], list[Any], list[int]]:
    """The ``count`` blocks, their signatures (``None`` when not known yet) and the
    indices of those parsed now: with ``known``, a block whose nodes were checked before
    (in the same ``context``) is taken as it was."""
    if known is None:
        index = gradient_index(nodes)
        allowed = _Allowed()
        blocks = [
            _parse_block(nodes, index, block_prefix(i), where, None, None, allowed)
            for i in range(count)
        ]
        return blocks, [None] * count, list(range(count))
    blocks, signatures, fresh = [], [], []
    allowed = _Allowed()
    for i in range(count):
        found = known.get(i)
        checked = found.checked.get(context) if found is not None else None
        if checked is None:
            fresh.append(i)
            checked = (_fresh(nodes, found, i, where, allowed), None)
        blocks.append(checked[0])
        signatures.append(checked[1])
    return blocks, signatures, fresh


def parse_layout(
    attributes: dict[str, Any],
    nodes: dict[str, Any],
    where: str,
    known: dict[int, BlockNodes] | None = None,
) -> TensorLayout:
    """The tensor described by a store's node documents, checked for consistency (and,
    since format 2, against what the root records); ``attributes`` of ``{}`` check a
    layout about to be written.

    ``known`` gives, by block index, every node document of that block as read from
    the root's text (and the layouts found before for the same text, reused; see
    :class:`BlockNodes`): each block is then parsed from its own nodes, not by a pass
    over every node, and the result is the same."""
    keys = _labels_info(nodes, "keys", where)
    ours = attributes.get(ATTRIBUTE) or {}
    version = ours.get("format", FORMAT)
    _check_format_records(ours, version, where)
    # (an incomplete store is not read; its writer lists its chunks once complete)
    identified = version >= FIRST_FORMAT and ours.get("complete") is True
    # (the store id, not the last append: an append leaves the documents of the blocks
    # it does not touch as they were, which keep the append they were opened with, no
    # older than the last one that changed them)
    context = (version, ours.get(STORE_ID) if identified else None, identified)
    if version == 1:
        known = None  # (its arrays are marked below)
    blocks, signatures, fresh = _parse_blocks(nodes, keys.shape[0], where, known, context)
    extra = block_prefix(keys.shape[0])
    paths = "\0" + "\0".join(nodes) + "\0"  # one search in C, not one test per node
    if f"\0{extra}\0" in paths or f"\0{extra}/" in paths:
        raise _damaged(where, f"it has more blocks than its {keys.shape[0]} keys ('{extra}')")
    for i in fresh:
        signatures[i] = _signature(blocks[i])
    first = signatures[0] if blocks else None
    if signatures.count(first) != len(signatures):
        i = next(i for i, signature in enumerate(signatures) if signature != first)
        raise _damaged(
            where,
            f"block {i} differs from block 0 in its sample, component or property "
            "names, its dtype or its gradients, which a TensorMap forbids",
        )
    if version >= 2 and ours:
        recorded = {"dtype": ours.get("dtype"), "gradients": ours.get("gradients")}
        found = _records(nodes if known is None or 0 not in known else known[0].nodes(nodes))
        if recorded != found:
            raise _damaged(
                where,
                f"its arrays ({found}) disagree with what its root records "
                f"({recorded}): dtypes or gradients were edited or lost",
            )
    if version == 1:
        for block in blocks:
            for info in block.arrays():
                info.missing_ok = not is_plain(info.document)
    if version < LABELS_FORMAT:
        _refuse_tables([blocks[i] for i in fresh], version, where)
    store_id = None
    if identified:
        store_id = _identify(ours, [blocks[i] for i in fresh], version, where)
    if known is not None:
        for i in fresh:
            if i in known:
                known[i].checked[context] = (blocks[i], signatures[i])
    return TensorLayout(keys, blocks, stored_info(attributes, where), nodes, version, store_id)


def stored_info(attributes: dict[str, Any], where: str) -> dict[str, str]:
    """The tensor's info recorded in the root ``attributes`` of the store at
    ``where`` (none: empty); a :class:`DamagedStoreError` unless it maps strings to
    strings."""
    tensor_info = attributes.get("info") or {}
    if not isinstance(tensor_info, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tensor_info.items()
    ):
        raise _damaged(where, "the 'info' attribute must map strings to strings")
    return dict(tensor_info)
