"""The ``.npy`` members of metatensor files: headers parsed without unpickling, and
written in metatensor's own layout.

A header is a Python dict literal (``descr``, ``fortran_order``, ``shape``), read here
with :func:`ast.literal_eval` and :func:`numpy.lib.format.descr_to_dtype`, which never
unpickle; object dtypes are refused before any data is read.
"""

from __future__ import annotations

import ast
import functools
import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MAGIC",
    "NpyError",
    "NpyHeader",
    "check_values",
    "header_bytes",
    "header_length",
    "labels_descr",
    "labels_from_npy",
    "parse_header",
    "values_descr",
]

MAGIC = b"\x93NUMPY"
# the largest header accepted: numpy refuses headers above 10,000 bytes by default; a
# Labels header with many long dimension names may be longer, but not this long
_MAX_HEADER = 1 << 20
# values dtypes that metatensor reads and writes, as (kind, itemsize)
_VALUE_TYPES = {
    ("b", 1),
    ("i", 1), ("i", 2), ("i", 4), ("i", 8),
    ("u", 1), ("u", 2), ("u", 4), ("u", 8),
    ("f", 2), ("f", 4), ("f", 8),
    ("c", 8), ("c", 16),
}  # fmt: skip


class NpyError(Exception):
    """A malformed ``.npy`` member; the caller adds where it was found."""


@dataclass(frozen=True)
class NpyHeader:
    """What a ``.npy`` header says about the array that follows it."""

    dtype: np.dtype
    shape: tuple[int, ...]
    fortran_order: bool
    data_start: int
    """Bytes from the start of the member to the first data byte."""

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def header_length(start: bytes) -> int:
    """Total header length (magic included) from the first 12 bytes of a member."""
    if start[:6] != MAGIC:
        raise NpyError("start does not match magic string")
    if len(start) < 10:
        raise NpyError("the .npy header is truncated")
    major = start[6]
    if major == 1:
        return 10 + int.from_bytes(start[8:10], "little")
    if major in (2, 3):
        if len(start) < 12:
            raise NpyError("the .npy header is truncated")
        length = int.from_bytes(start[8:12], "little")
        if length > _MAX_HEADER:
            raise NpyError(f"the .npy header is too long ({length} bytes)")
        return 12 + length
    raise NpyError(f"unsupported .npy format version {major}.{start[7]}")


def parse_header(data: bytes) -> NpyHeader:
    """Parse the header at the start of ``data`` (which holds at least the header)."""
    end = header_length(data[:12])
    if len(data) < end:
        raise NpyError("the .npy header is truncated")
    major = data[6]
    encoding = "utf8" if major == 3 else "latin1"
    text = data[10 if major == 1 else 12 : end].decode(encoding, errors="replace")
    # files repeat the same few headers: remember the short ones
    parse = _parse_dict_cached if len(text) < 1024 else _parse_dict
    dtype, shape, fortran_order = parse(text)
    return NpyHeader(dtype, shape, fortran_order, end)


def _parse_dict(text: str) -> tuple[np.dtype, tuple[int, ...], bool]:
    """The content of a header's dict, checked."""
    try:
        header = ast.literal_eval(text)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        raise _invalid_header(text, _why_not_a_literal(text)) from None
    if not isinstance(header, dict):
        raise _invalid_header(text, "it is not a dict")
    if set(header) != {"descr", "fortran_order", "shape"}:
        keys = ", ".join(sorted(repr(key) for key in header))
        raise _invalid_header(
            text, f"its keys are {keys}, the format's are 'descr', 'fortran_order', 'shape'"
        )
    shape, fortran_order = header["shape"], header["fortran_order"]
    if (
        not isinstance(shape, tuple)
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
        or not isinstance(fortran_order, bool)
    ):
        raise _invalid_header(
            text, "'shape' must be a tuple of integers (>= 0) and 'fortran_order' a bool"
        )
    try:
        dtype = np.lib.format.descr_to_dtype(header["descr"])
    except (TypeError, ValueError, KeyError, IndexError):
        raise NpyError(f"invalid type descriptor: {header['descr']!r}") from None
    if dtype.hasobject:
        raise NpyError(
            f"invalid type descriptor: {header['descr']!r}: arrays of Python objects would "
            "need unpickling, which metatensor-dask never does (re-create the file with "
            "numeric values)"
        )
    return dtype, shape, fortran_order


def _why_not_a_literal(text: str) -> str:
    """Why ``text`` is not the Python literal of a header's dict."""
    if text[:1].isspace():
        return "it starts with whitespace, where the format puts the dict's '{'"
    return "it is not a Python literal"


def _invalid_header(text: str, problem: str) -> NpyError:
    """The error for a header that is not the format's dict: what it holds (its start,
    for a long one), what is wrong and the remedy."""
    shown = text.rstrip()
    shown = shown if len(shown) <= 300 else shown[:300] + "..."
    return NpyError(
        f"invalid .npy header: {shown!r}: {problem}; write the array again (numpy.save "
        "and metatensor.save write valid headers)"
    )


_parse_dict_cached = functools.lru_cache(maxsize=1024)(_parse_dict)


@functools.lru_cache(maxsize=1024)
def check_values(header: NpyHeader) -> None:
    """The rules for a values member: a plain numeric or bool dtype, at least two
    dimensions (a header that passes is remembered: files repeat the same few)."""
    if header.dtype.fields is not None:
        raise NpyError("structured arrays are not supported")
    if (header.dtype.kind, header.dtype.itemsize) not in _VALUE_TYPES or header.dtype.subdtype:
        raise NpyError(
            f"unsupported dtype for values: '{header.dtype.str}'; metatensor files hold "
            "bool, integer, float (16, 32 or 64 bits) or complex (64 or 128 bits) values"
        )
    if len(header.shape) < 2:
        raise NpyError(
            f"values must have at least 2 dimensions (samples and properties), got shape "
            f"{header.shape}"
        )


def labels_from_npy(data: bytes) -> tuple[list[str], np.ndarray]:
    """Names and ``(n, d)`` int32 values of a Labels member (header and data)."""
    header = parse_header(data)
    if header.fortran_order:
        raise NpyError("data can not be loaded from fortran-order arrays")
    if len(header.shape) != 1:
        raise NpyError("Expected a 1-D array when loading Labels")
    fields = header.dtype.fields
    if fields is None:
        raise NpyError("invalid dtype for labels")
    names = list(header.dtype.names or [])
    types = {fields[name][0].str for name in names}
    if not types <= {"<i4"} and not types <= {">i4"}:
        raise NpyError("invalid dtype for labels")
    offsets = [fields[name][1] for name in names]
    if offsets != [4 * i for i in range(len(names))] or header.dtype.itemsize != 4 * len(names):
        raise NpyError("invalid dtype for labels")
    raw = data[header.data_start :]
    if len(raw) != header.nbytes:
        raise NpyError(
            f"the Labels hold {len(raw)} bytes of data but their header describes {header.nbytes}"
        )
    (count,) = header.shape
    if not names:
        return names, np.empty((count, 0), np.int32)
    values = np.frombuffer(raw, dtype=types.pop()).reshape(count, len(names))
    return names, values.astype(np.int32)


@functools.lru_cache(maxsize=64)
def values_descr(dtype: np.dtype) -> str:
    """metatensor's descr literal for values: little-endian, ``<`` even for 1-byte
    types (``"'<f8'"``)."""
    dtype = np.dtype(dtype)
    if (dtype.kind, dtype.itemsize) not in _VALUE_TYPES:
        raise NpyError(f"unsupported dtype for values: {dtype}")
    return f"'<{dtype.kind}{dtype.itemsize}'"


@functools.lru_cache(maxsize=1024)
def labels_descr(names: tuple[str, ...]) -> str:
    """metatensor's descr literal for Labels: one ``<i4`` field per dimension
    (remembered: the Labels of a map repeat a few names)."""
    return "[" + "".join(f"('{name}', '<i4'), " for name in names) + "]"


@functools.lru_cache(maxsize=1024)
def header_bytes(descr: str, shape: tuple[int, ...]) -> bytes:
    """A header laid out as metatensor writes it (so that saved files are identical);
    remembered, as maps of many blocks repeat the same few."""
    text = (
        "{ 'descr': "
        + descr
        + ", 'fortran_order': False, 'shape': ("
        + "".join(f"{n}, " for n in shape)
        + ") }"
    ).encode("latin1")
    # the dict, at least one space of padding and a newline, up to a multiple of 64 bytes
    total = -(-(10 + len(text) + 2) // 64) * 64
    if total - 10 < 1 << 16:
        return (
            MAGIC
            + b"\x01\x00"
            + (total - 10).to_bytes(2, "little")
            + text.ljust(total - 11)
            + b"\n"
        )
    total = -(-(12 + len(text) + 2) // 64) * 64
    return MAGIC + b"\x02\x00" + (total - 12).to_bytes(4, "little") + text.ljust(total - 13) + b"\n"
