"""Codecs of the arrays written to Zarr, from the ``compressor`` and ``checksum`` settings.

One template document is built per dtype, dimension count and sharding choice; every
array's document is then that template with its own shape, chunks and attributes
(:func:`metatensor_dask.io.zarr_layout.array_document`), which is much faster than
creating each array through zarr's API. Without a compressor (the default), the
template is written here, as zarr-python writes it; with one, zarr-python builds it
(imported then only: a worker appending batches with the default settings needs no
zarr for its templates).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import config
from ..errors import MetatensorDaskError
from .zarr_integrity import damaged, missing_chunk

__all__ = ["CHECKSUM_CODECS", "KEY_ENCODING", "check_dtype", "codec_settings", "template"]

#: Chunk keys such as ``c.3.0.0``: every chunk file sits in its array's folder.
KEY_ENCODING: dict[str, Any] = {"name": "default", "configuration": {"separator": "."}}


#: Codecs that add a checksum and compress nothing: the ``checksum`` setting adds one.
CHECKSUM_CODECS = frozenset(
    {
        "crc32c",
        "numcodecs.crc32",
        "numcodecs.crc32c",
        "numcodecs.adler32",
        "numcodecs.fletcher32",
        "numcodecs.jenkins_lookup3",
    }
)


def _compressor(value: Any) -> dict[str, Any] | None:
    if value is None or value is False:
        return None
    name = value.get("name") if isinstance(value, dict) else value
    if isinstance(name, str) and name.strip().lower() in CHECKSUM_CODECS:
        raise MetatensorDaskError(
            f"the setting metatensor_dask.compressor={value!r} names a checksum, which "
            "compresses nothing: set metatensor_dask.checksum to true for a checksum of "
            "every chunk (the default), and metatensor_dask.compressor to a compressor "
            "such as 'zstd', or to null for none"
        )
    if isinstance(value, str) and value.lstrip().startswith("{"):
        raise MetatensorDaskError(
            f"the setting metatensor_dask.compressor is the text {value!r}, not a mapping: "
            "dask reads an environment variable as a Python literal, so a mapping there "
            "is written with True, False and None (not JSON's true, false and null), "
            "e.g. {'name': 'zstd', 'configuration': {'level': 3, 'checksum': True}}; or "
            "give the codec's name alone, or the mapping in a YAML file"
        )
    if isinstance(value, str):
        return {"name": value, "configuration": {}}
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return {"name": value["name"], "configuration": dict(value.get("configuration") or {})}
    raise MetatensorDaskError(
        f"invalid setting metatensor_dask.compressor={value!r}: use null (no compression), "
        "a Zarr codec name such as 'zstd', or {'name': ..., 'configuration': {...}}"
    )


def _checksum_setting(value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise MetatensorDaskError(
            f"invalid setting metatensor_dask.checksum={value!r}: use true or false"
        )
    return bool(value)


def codec_settings() -> str:
    """The current compressor/checksum settings, as a hashable JSON string."""
    return json.dumps(
        {
            "compressor": _compressor(config.get("compressor")),
            "checksum": _checksum_setting(config.get("checksum")),
        },
        sort_keys=True,
    )


@functools.lru_cache(maxsize=256)
def _template(dtype: str, ndim: int, settings: str, sharded: bool) -> str:
    parsed = json.loads(settings)
    if parsed["compressor"] is None:
        return json.dumps(_uncompressed(np.dtype(dtype), ndim, parsed["checksum"], sharded))
    return _zarr_template(dtype, ndim, settings, sharded)


def _bytes_codec(dtype: np.dtype) -> dict[str, Any]:
    """The ``bytes`` codec as zarr-python writes it: no byte order for one-byte values."""
    return {"name": "bytes"} if dtype.itemsize == 1 else _BYTES


def _uncompressed(dtype: np.dtype, ndim: int, checksum: bool, sharded: bool) -> dict[str, Any]:
    """The template document of an array of ``dtype`` without compressor, key for key
    what zarr-python's ``create_array`` writes (:func:`_zarr_template`)."""
    codecs = [_bytes_codec(dtype), _CRC32C] if checksum else [_bytes_codec(dtype)]
    ones = [1] * ndim
    if sharded:
        sharding = {
            "chunk_shape": ones,
            "codecs": codecs,
            "index_codecs": [_BYTES, _CRC32C],
            "index_location": "end",
        }
        codecs = [{"name": "sharding_indexed", "configuration": sharding}]
    zero: Any = {"b": False, "f": 0.0, "c": [0.0, 0.0]}.get(dtype.kind, 0)
    return {
        "shape": ones,
        "data_type": dtype.name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": ones}},
        "chunk_key_encoding": KEY_ENCODING,
        "fill_value": zero,
        "codecs": codecs,
        "attributes": {},
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
    }


def _zarr_template(dtype: str, ndim: int, settings: str, sharded: bool) -> str:
    """The template document that zarr-python's ``create_array`` writes."""
    import zarr
    from zarr.storage import MemoryStore

    parsed = json.loads(settings)
    compressors = [c for c in [parsed["compressor"]] if c is not None]
    if parsed["checksum"]:
        compressors.append({"name": "crc32c", "configuration": {}})
    ones = (1,) * ndim
    try:
        array = zarr.create_array(
            MemoryStore(),
            shape=ones,
            dtype=np.dtype(dtype),
            chunks=ones,
            shards=ones if sharded else None,
            compressors=compressors or None,
            filters=None,
            chunk_key_encoding=KEY_ENCODING,
        )
    except KeyError as error:  # zarr's registry has no codec of that name
        raise MetatensorDaskError(
            f"zarr has no codec named {error.args[0]!r} (setting metatensor_dask.compressor): "
            "use one of zarr's codecs ('zstd', 'gzip', 'blosc') or one of numcodecs', "
            "whose names start with 'numcodecs.' (such as 'numcodecs.lz4'); codec names "
            "are lower case"
        ) from None
    except (ValueError, TypeError) as error:
        raise MetatensorDaskError(
            f"zarr refused the codecs {compressors} for {dtype} arrays ({error}); change "
            "the metatensor_dask.compressor setting"
        ) from None
    if parsed["compressor"] is not None and ndim:
        # (the bytes and crc32c codecs take no option to get wrong; stores hold no
        # array without dimensions, which zarr can not index when sharded)
        _check_round_trip(array, compressors)
    return json.dumps(array.metadata.to_dict())


def _check_round_trip(array: Any, compressors: list[dict[str, Any]]) -> None:
    """Encode and decode one chunk of ``array`` (in memory): zarr checks a codec's
    configuration only when it builds the codec, and a level it takes (blosc's
    ``clevel: 42``, numcodecs' ``zlib`` level 10...) may fail only when a chunk is
    compressed, which would stop a write with its store half written."""
    ones = np.ones(array.shape, dtype=array.dtype)
    try:
        array[...] = ones
        decoded = array[...]
    except Exception as error:  # the codecs of numcodecs raise errors of their own
        raise MetatensorDaskError(
            f"the codecs {compressors} could not compress a chunk of {array.dtype} values "
            f"({type(error).__name__}: {error}); change the metatensor_dask.compressor "
            "setting (a level or option out of the codec's range?)"
        ) from None
    if not np.array_equal(decoded, ones):
        raise MetatensorDaskError(
            f"the codecs {compressors} do not give back the {array.dtype} values they "
            "compress; change the metatensor_dask.compressor setting to a lossless codec"
        )


#: The dtypes of Zarr v3 (in either byte order: values are stored little endian).
_STORABLE = frozenset(
    np.dtype(code) for code in "? i1 i2 i4 i8 u1 u2 u4 u8 f2 f4 f8 c8 c16".split()
)


def check_dtype(dtype: Any) -> None:
    """Refuse values that Zarr can not store (strings, objects, dates, records, long
    doubles): every writer plans its arrays through :func:`template`, which calls this
    before anything is stored."""
    if np.dtype(dtype).newbyteorder("=") not in _STORABLE:
        raise MetatensorDaskError(
            f"values of dtype {dtype} can not be stored in Zarr, which holds bool, integer, "
            "float (16, 32 or 64 bits) or complex values; convert them first, e.g. with "
            "`tensor.to(dtype=np.float64)`"
        )


def stored_dtype(dtype: Any) -> np.dtype:
    """``dtype`` as the format stores it: little-endian. Values in either byte order
    are stored alike, so that two dtypes match when their stored dtypes do."""
    return np.dtype(dtype).newbyteorder("<")


def template(dtype: np.dtype, ndim: int, sharded: bool) -> dict[str, Any]:
    """A ``zarr.json`` array document with the configured codecs for ``dtype``/``ndim``."""
    check_dtype(dtype)
    return json.loads(_template(stored_dtype(dtype).str, ndim, codec_settings(), sharded))


# -- plain arrays --------------------------------------------------------------------------
#
# With the default settings, arrays use the simplest codecs: little-endian bytes and a
# crc32c checksum. Their chunks are encoded and decoded here, as the Zarr v3 spec
# defines them: the chunk's C-order bytes (edge chunks padded with the fill value 0),
# followed by the crc32c of those bytes as a little-endian uint32. This skips the
# per-chunk overhead of zarr's codec pipeline, which dominates for many small blocks.
# Labels and row pointers always use these codecs, whatever the settings.

_BYTES = {"name": "bytes", "configuration": {"endian": "little"}}
_CRC32C = {"name": "crc32c"}


def small_template(dtype: np.dtype, ndim: int) -> dict[str, Any]:
    """A ``zarr.json`` document for a Labels or row pointer array."""
    return {
        "zarr_format": 3,
        "node_type": "array",
        "shape": [1] * ndim,
        "data_type": np.dtype(dtype).name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1] * ndim}},
        "chunk_key_encoding": KEY_ENCODING,
        "fill_value": 0,
        "codecs": [_BYTES, _CRC32C],
        "attributes": {},
        "storage_transformers": [],
    }


#: The codecs of Labels and row pointers, and of values with the default settings.
_PLAIN_CRC32C = [_BYTES, _CRC32C]


@functools.lru_cache(maxsize=64)
def _numeric(name: str) -> bool:
    """Whether the data type ``name`` is a numeric type numpy knows."""
    try:
        return np.dtype(name).kind in "biufc"
    except TypeError:
        return False


def _checksum(document: dict[str, Any]) -> bool | None:
    """For plain arrays, whether chunks end with a crc32c; ``None`` for other arrays."""
    data_type = document.get("data_type", "V")
    if (
        document.get("codecs") == _PLAIN_CRC32C  # the common case, in one comparison
        and document.get("chunk_key_encoding") == KEY_ENCODING
        and isinstance(data_type, str)
        and _numeric(data_type)
    ):
        return True
    codecs = [{k: v for k, v in c.items() if v != {}} for c in document.get("codecs", [])]
    if (
        document.get("chunk_key_encoding") != KEY_ENCODING
        or np.dtype(document.get("data_type", "V")).kind not in "biufc"
        or not codecs
        or codecs[0] != _BYTES
    ):
        return None
    if codecs[1:] == [_CRC32C]:
        return True
    return False if len(codecs) == 1 else None


def is_plain(document: dict[str, Any]) -> bool:
    """Whether this module encodes and decodes the chunks of the array ``document``."""
    return _checksum(document) is not None


def _chunk_shape(document: dict[str, Any]) -> tuple[int, ...]:
    return _checked_chunk_shape(
        document["shape"], document["chunk_grid"]["configuration"]["chunk_shape"]
    )


def _checked_chunk_shape(shape: Any, chunk_shape: Any) -> tuple[int, ...]:
    """The chunk shape of an array of ``shape`` (from their JSON lists or tuples)."""
    chunk = tuple(int(n) for n in chunk_shape)
    if any(c < int(n) for c, n in zip(chunk[1:], tuple(shape)[1:], strict=True)):
        raise MetatensorDaskError("plain arrays are only chunked along their first axis")
    return chunk


def _dtype(document: dict[str, Any]) -> np.dtype:
    name = document["data_type"]
    return _little(name) if isinstance(name, str) else np.dtype(name).newbyteorder("<")


@functools.lru_cache(maxsize=64)
def _little(name: str) -> np.dtype:
    return np.dtype(name).newbyteorder("<")


@dataclass(frozen=True)
class ChunkFormat:
    """How the chunks of a plain array are encoded: what decoding one needs."""

    dtype: np.dtype
    shape: tuple[int, ...]
    size: int
    checksum: bool

    @classmethod
    def of(cls, document: dict[str, Any]) -> ChunkFormat | None:
        """The format of the chunks of ``document``; None when they are not plain.

        Arrays of many blocks share a few formats, each worked out once (a group of
        tiny blocks decodes a thousand arrays, one chunk each)."""
        checksum = _checksum(document)
        if checksum is None:
            return None
        name = document["data_type"]
        shape = document["shape"]
        chunk_shape = document["chunk_grid"]["configuration"]["chunk_shape"]
        if type(name) is str and type(shape) is list and type(chunk_shape) is list:
            try:
                return _format(name, tuple(shape[1:]), tuple(chunk_shape), checksum)
            except TypeError:  # entries that are not numbers (refused below)
                pass
        dtype = _dtype(document)
        chunk = _chunk_shape(document)
        return cls(dtype, chunk, math.prod(chunk) * dtype.itemsize, checksum)


@functools.lru_cache(maxsize=256)
def _format(name: str, inner: tuple, chunk_shape: tuple, checksum: bool) -> ChunkFormat:
    """:meth:`ChunkFormat.of` a plain array of dtype ``name``, whose rows have the
    shape ``inner``, chunked in ``chunk_shape``."""
    dtype = _little(name)
    chunk = _checked_chunk_shape((0, *inner), chunk_shape)
    return ChunkFormat(dtype, chunk, math.prod(chunk) * dtype.itemsize, checksum)


def _plain_format(document: dict[str, Any]) -> ChunkFormat:
    encoding = ChunkFormat.of(document)
    if encoding is None:
        raise MetatensorDaskError("the chunks of this array are not plain")
    return encoding


def chunk_key(index: int, ndim: int) -> str:
    return "c." + ".".join([str(index)] + ["0"] * (ndim - 1))


def encode_chunks(
    values: np.ndarray,
    document: dict[str, Any],
    first: int = 0,
    chunks: ChunkFormat | None = None,
) -> dict[str, memoryview]:
    """The encoded chunks holding ``values``, which start at chunk ``first``, by key;
    ``chunks`` is :meth:`ChunkFormat.of` the ``document``, when known.

    Each chunk is copied once, straight into its encoded buffer (an edge chunk padded
    with the fill value 0); values that are one whole chunk (the Labels of tiny blocks)
    are copied with their checksum appended.
    """
    from crc32c import crc32c

    encoding = chunks or _plain_format(document)
    chunk, size, checksum = encoding.shape, encoding.size, encoding.checksum
    values = np.asarray(values, dtype=encoding.dtype)
    full = tuple(chunk)
    if values.shape == full and values.size:
        body = values.tobytes()
        if checksum:
            body = b"".join((body, crc32c(body).to_bytes(4, "little")))
        return {chunk_key(first, values.ndim): memoryview(body)}
    encoded = {}
    for index in range(-(-values.shape[0] // chunk[0]) if values.size else 0):
        piece = values[index * chunk[0] : (index + 1) * chunk[0]]
        raw = np.empty(size + 4 if checksum else size, dtype=np.uint8)
        target = raw[:size].view(values.dtype).reshape(full)
        if piece.shape == full:
            target[...] = piece
        else:
            target[...] = 0
            target[tuple(slice(0, n) for n in piece.shape)] = piece
        if checksum:
            raw[size:] = np.frombuffer(crc32c(raw[:size].data).to_bytes(4, "little"), np.uint8)
        encoded[chunk_key(first + index, values.ndim)] = raw.data
    return encoded


def chunk_keys(document: dict[str, Any]) -> list[str]:
    """Keys of every chunk of an array, in order."""
    shape = [int(n) for n in document["shape"]]
    chunk = _chunk_shape(document)
    count = -(-shape[0] // chunk[0]) if all(shape) else 0
    return [chunk_key(index, len(shape)) for index in range(count)]


def _decoded(data: Any, chunks: ChunkFormat, path: str, where: str, index: int) -> np.ndarray:
    """Chunk ``index`` as an array viewing ``data``, its size and checksum verified; a
    missing chunk (``None``) is damage: every chunk is stored, all-zero ones too."""
    from crc32c import crc32c

    if data is None:
        raise missing_chunk(where, path, chunk_key(index, len(chunks.shape)))
    buffer = np.frombuffer(data, dtype=np.uint8)
    size = chunks.size
    body = buffer[:-4] if chunks.checksum else buffer
    if len(body) != size:
        key = chunk_key(index, len(chunks.shape))
        raise damaged(
            where, f"the chunk '{key}' of the array '{path}' has {len(body)} bytes, not {size}"
        )
    if chunks.checksum and crc32c(body.data) != int.from_bytes(buffer[-4:], "little"):
        key = chunk_key(index, len(chunks.shape))
        raise damaged(where, f"the checksum of the chunk '{key}' of the array '{path}' is wrong")
    return body.view(chunks.dtype).reshape(chunks.shape)


def decode_chunks(
    raw: list[bytes | None],
    document: dict[str, Any],
    path: str,
    where: str,
    chunks: ChunkFormat | None = None,
) -> np.ndarray:
    """The whole array from its chunks (in :func:`chunk_keys` order; ``None`` is a
    missing chunk, which is damage); ``chunks`` is :meth:`ChunkFormat.of` the
    ``document``, when known."""
    shape = tuple(int(n) for n in document["shape"])
    native = _dtype(document).newbyteorder("=")
    if not raw:
        return np.zeros(shape, dtype=native)
    chunks = chunks or _plain_format(document)
    pieces = [_decoded(data, chunks, path, where, i) for i, data in enumerate(raw)]
    array = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
    array = array[(slice(0, shape[0]), *(slice(0, n) for n in shape[1:]))]
    return np.ascontiguousarray(array, dtype=native)


def decode_rows(
    raw: list[Any],
    document: dict[str, Any],
    path: str,
    where: str,
    start: int,
    stop: int,
    chunks: ChunkFormat | None = None,
) -> np.ndarray:
    """Rows ``start:stop`` of an array, from the chunks holding them (``raw[0]`` is the
    chunk of row ``start``); ``chunks`` is :meth:`ChunkFormat.of` the ``document``, when
    known. A region within one chunk views its buffer: no copy."""
    chunks = chunks or _plain_format(document)
    rows = chunks.shape[0]
    first = start // rows
    if len(raw) == 1:
        array = _decoded(raw[0], chunks, path, where, first)
    else:
        array = np.concatenate(
            [_decoded(data, chunks, path, where, first + i) for i, data in enumerate(raw)]
        )
    offset = first * rows
    if start != offset or stop - offset != len(array):
        array = array[start - offset : stop - offset]
    return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))
