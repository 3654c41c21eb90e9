"""Reading metatensor files lazily: the archive's directory and Labels now, values in
dask tasks that each read one chunk at its offset.

Errors are worded as metatensor's (``unable to load <what> from '<path>': <problem>``)
with the remedy added where there is one.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import operator
import os
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import dask.array as da
import numpy as np

from .. import _graph
from .._collection import GroupItem
from .._partition import gradient_row_chunks, row_pointer
from ..block import TensorBlock, _check_shape
from ..errors import MetatensorDaskError, MetatensorError, UnsafeNameError, format_error
from ..labels import Labels
from ..tensor import is_utf8_text
from . import _mts_integrity, _mts_tiny, _npy, _stamped_reads, _zip
from . import chunks as chunking
from ._names import check_path_component

__all__ = ["Archive", "display_path", "io_error", "read_file"]

# bytes read at once at the start of a values member: its header, in nearly all files
_HEADER_READ = 4096
# bytes of a values member read with the directory: its header, in nearly all files
_VALUES_HEAD = 256
# bytes decompressed at once from a compressed member
_INFLATE_READ = 1 << 24
# a member inside a gradient: gradients/<name>/ then the block's own members
_GRADIENT_MEMBER = re.compile(
    r"(?:.*/)?gradients/[^/]+/(?:values\.npy|samples\.npy|components/[0-9]+\.npy)"
)
# a member named as one of a block's arrays (wherever it is): under `gradients/`, it
# must be one of a gradient's (`_GRADIENT_MEMBER`); other members are not read, as
# metatensor ignores them (e.g. a `properties.npy` written in a gradient's folder)
_BLOCK_ARRAY = re.compile(r"(?:.*/)?(?:values\.npy|samples\.npy|components/[0-9]+\.npy)")

# a member name's path components
_SPLIT_COMPONENTS = operator.methodcaller("split", "/")
# whether a member name is a directory entry's
_IS_DIRECTORY = operator.methodcaller("endswith", "/")
# whether a member name is a values array's
_IS_VALUES = operator.methodcaller("endswith", "values.npy")


def _wanted(names: list[str], sizes: np.ndarray) -> np.ndarray:
    """The first bytes of the members ``names`` to read with the archive's directory:
    all of the Labels and ``info.json`` (read at load), the start of values (their
    header)."""
    values = np.fromiter(map(_IS_VALUES, names), bool, len(names))
    return np.where(values, _VALUES_HEAD, sizes)


# the characters of plain member names, all safe in a path component
_PLAIN_CHARACTERS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/"


def _plain_names(names: list[str]) -> bool:
    """Whether every component of ``names`` is a safe path component made of ASCII
    letters, digits, ``.``, ``_`` and ``-``, not empty, ``.`` or ``..``: checked on all
    names joined, in a few passes of C over one string (the names of a file of 100,000
    blocks split into their components are 3.2 million strings)."""
    try:
        joined = "\n".join(names).encode("ascii")
    except UnicodeEncodeError:
        return False
    # plain characters only, and no line end but those joining the names
    if joined.translate(None, _PLAIN_CHARACTERS) != b"\n" * (len(names) - 1):
        return False
    # the components, separated by line ends only
    separated = joined.replace(b"/", b"\n")
    del joined
    return not (
        separated in (b"", b".", b"..")
        or separated.startswith((b"\n", b".\n", b"..\n"))
        or separated.endswith((b"\n", b"\n.", b"\n.."))
        or any(bad in separated for bad in (b"\n\n", b"\n.\n", b"\n..\n"))
    )


def display_path(path: Any) -> str:
    """``path`` as a str, as shown in messages, with its ``~`` expanded (as for Zarr
    stores); only paths are accepted, and ``file://`` URLs, which name a local path too
    (any other URL is refused)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"`path` must be a str or a path-like object, got {type(path)}; to read a file "
            "object or bytes, use `mtd.TensorMap.load_buffer(file.read())` (or "
            "`TensorBlock`, `Labels`), which reads them through metatensor-core"
        )
    display = os.fspath(path)
    if not isinstance(display, str):
        raise TypeError(f"`path` must name a file with a str, got {type(display)}")
    if display.startswith("file://"):
        display = display[len("file://") :]
    elif "://" in display or "::" in display:
        raise MetatensorDaskError(
            f"{display!r} is a URL: metatensor files (.mts, .npz) are read and written at "
            "local paths; copy the file to a local folder (or write a Zarr store there: "
            "Zarr stores can be at URLs)"
        )
    return os.path.expanduser(display)


def io_error(error: OSError, path: str | None = None) -> MetatensorError:
    """metatensor's error for a file that can not be read, naming the file (``path`` when
    the error does not, as a read from a directory's descriptor)."""
    filename = error.filename if error.filename is not None else path
    return MetatensorError(f"io error: {error.strerror} (os error {error.errno}): '{filename}'")


def read_file(path: Any) -> bytes:
    """The whole content of a (small) file."""
    try:
        with open(display_path(path), "rb") as file:
            return file.read()
    except OSError as error:
        raise io_error(error) from None


@dataclass
class _Part:
    """A block or a gradient as found in the file, before its arrays exist."""

    prefix: str
    header: _npy.NpyHeader
    member: _zip.Member
    content: np.ndarray | None
    """The values, for a compressed or Fortran-ordered member (read eagerly)."""
    header_crc: int
    """CRC-32 of the member's ``.npy`` header."""
    samples: Labels
    components: list[Labels]
    properties: Labels
    gradients: dict[str, _Part] = field(default_factory=dict)
    pointer: np.ndarray | None = None
    """CSR row pointer over the parent's rows, when the rows are grouped by sample."""
    chunks: tuple[int, ...] = ()

    @property
    def row_bytes(self) -> int:
        return math.prod(self.header.shape[1:]) * self.header.dtype.itemsize


class Archive:
    """An open metatensor file: its directory, and readers that word errors as
    metatensor does (``unable to load <what> from '<path>': <problem>``)."""

    def __init__(
        self,
        path: str,
        display: str,
        what: str,
        members: _zip.Members,
        stamp: _stamped_reads.Stamp,
    ):
        self.path = path
        self.display = display
        self.what = what
        # each with its first bytes, read with the directory (see `_wanted`)
        self.members = members
        self.hint = ""
        #: the file's stamp before anything was read of it (see `__exit__`)
        self.stamp = stamp
        self._fd: int | None = None
        # members with the same bytes (the samples or properties that many blocks
        # share) give the same Labels, parsed and checked once
        self._labels: dict[bytes, tuple[Labels, int]] = {}
        self._gradient_names: dict[str, list[str]] = {}
        # row pointers by (gradient samples, parent rows): shared Labels, shared pointer
        self._pointers: dict[tuple[int, int], np.ndarray | None] = {}
        # the metadata of tiny blocks already checked (see `_tiny_block`)
        self._checked: set[Any] = set()
        # the blocks made by the last `blocks` that were checked: one for each distinct
        # metadata (the other blocks have the metadata of one of them)
        self.distinct: list[TensorBlock] = []
        # the checked headers of values members, by their bytes: files repeat a few
        self._headers: dict[bytes, tuple[_npy.NpyHeader, int]] = {}
        names = members.names
        gradient_members = [name for name in names if "gradients/" in name]
        if any(map(_IS_DIRECTORY, names)):
            names = self._without_folder_slashes(names)
        self._check_member_names(names, gradient_members)
        for name in gradient_members:
            if not name.endswith("/samples.npy"):
                continue
            parent, _, parameter = name[: -len("/samples.npy")].rpartition("/")
            if parent == "gradients" or parent.endswith("/gradients"):
                prefix = parent[: -len("gradients")]
                self._gradient_names.setdefault(prefix, []).append(parameter)
        for parameters in self._gradient_names.values():
            parameters.sort()

    def _check_member_names(self, names: list[str], gradient_members: list[str]) -> None:
        """Refuse member names that would escape a folder once extracted, and gradients
        whose name holds a ``/`` (metatensor writes them, but reads them back wrong);
        ``gradient_members`` are the names holding ``gradients/``.

        Names made of plain characters are checked all at once (:func:`_plain_names`);
        otherwise the components that many names share (``blocks``, ``values.npy``,
        block numbers) are checked once each. The gradients' names are matched one by
        one (a C-level loop: one regular expression over all names joined costs more at
        100,000 blocks).
        """
        if not _plain_names(names):
            self._check_name_components(names)
        for name in itertools.filterfalse(_GRADIENT_MEMBER.fullmatch, gradient_members):
            if not _BLOCK_ARRAY.fullmatch(name):
                continue
            raise UnsafeNameError(
                f"unable to load {self.what} from '{self.display}': member '{name}' is "
                "not laid out as a gradient's (gradients/<name>/values.npy, samples.npy "
                "or components/<j>.npy): its gradient name is not a single path "
                "component (such as 'a/b'), which metatensor-dask refuses, or the file "
                "is damaged; rename the gradient where the file was made"
            )

    def _without_folder_slashes(self, names: list[str]) -> list[str]:
        """``names`` with the final ``/`` of folder entries removed, to check them as
        the others: a folder entry (``zip -r`` writes one for every folder) is an empty
        member whose name ends with ``/``; it is not read. A member of data whose name
        ends with ``/`` keeps it, and is refused (an empty component)."""
        return [
            name[:-1] if name.endswith("/") and self.members[name].uncompressed_size == 0 else name
            for name in names
        ]

    def _check_name_components(self, names: list[str]) -> None:
        """Refuse names with a component that is not a safe path component."""
        # name by name: the components of all names at once would be a list of
        # millions of strings for a file of 100,000 blocks, new memory touched once
        components = set(itertools.chain.from_iterable(map(_SPLIT_COMPONENTS, names)))
        try:
            for component in components:
                # plain ASCII letters and digits (block numbers) are safe
                if not (component.isascii() and component.isalnum()):
                    check_path_component(component, "a member name component")
        except UnsafeNameError:
            for name in names:
                self._check_member_name(name)

    def _check_member_name(self, name: str) -> None:
        """Refuse ``name`` when one of its components is not a safe path component."""
        try:
            for component in name.split("/"):
                check_path_component(component, "a member name component")
        except UnsafeNameError:
            raise UnsafeNameError(
                f"unable to load {self.what} from '{self.display}': member '{name}' has a "
                f"name component {component!r} that is not a single safe path component "
                "(not empty, '.' or '..', without '/', '\\', control characters or leading "
                f"or trailing spaces): {_unsafe_name_cause(name)}"
            ) from None

    @classmethod
    def open(cls, path: Any, what: str) -> Archive:
        display = display_path(path)
        absolute = os.path.abspath(display)
        try:
            stamp = _stamped_reads.file_stamp(os.stat(absolute))
            members = _zip.read_members(absolute, _wanted)
        except OSError as error:
            raise io_error(error, absolute) from None
        except _zip.ZipDamage as error:
            raise _mts_integrity.damaged(display, error.member, str(error)) from None
        except _zip.ZipError as error:
            hint = ", use `load_labels` to load Labels" if _starts_as_npy(absolute) else ""
            raise format_error(
                f"unable to load {what} from '{display}'{hint}: {error}: at '<root>'"
            ) from None
        return cls(absolute, display, what, members, stamp)

    def error(self, problem: str) -> MetatensorError:
        return format_error(
            f"unable to load {self.what} from '{self.display}'{self.hint}: {problem}"
        )

    def context(self, where: str) -> _ErrorContext:
        return _ErrorContext(self, where)

    def member(self, name: str) -> _zip.Member:
        return self.members.at(self._position(name))

    def _position(self, name: str) -> int:
        """The position of member ``name`` in the archive (see :class:`~._zip.Members`:
        where the members of a file written by metatensor are asked for, in order)."""
        k = self.members.find(name)
        if k < 0:
            problem = f"specified file not found in archive: at '{name}'"
            raise self.error(problem + self._older_layout(name))
        return k

    def _older_layout(self, name: str) -> str:
        """Why the values member ``name`` may be missing: the archive has the layout of
        metatensor files before April 2023 (``blocks/<i>/values/data.npy``), which
        metatensor reads no more; empty for other members or archives."""
        if not name.endswith("values.npy"):
            return ""
        older = name[: -len(".npy")] + "/data.npy"
        if self.members.find(older) < 0:
            return ""
        return (
            f": the file holds '{older}' instead, the layout of metatensor (then "
            "equistore) files written before April 2023, which metatensor no longer "
            "reads; load it with the version that wrote it, and save it again with a "
            "current one"
        )

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, failed: Any, *args: Any) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if failed is None:
            # a file replaced while it was read would give the tasks (which check the
            # stamp) the offsets and Labels of the one it replaced
            try:
                stat = os.stat(self.path)
            except OSError as error:
                raise io_error(error, self.path) from None
            _stamped_reads.check_unchanged(self.path, stat, self.stamp)

    def _pread(self, size: int, offset: int) -> bytes:
        # one descriptor for all the reads (opened once: a file holds 5 or more
        # members per block) until the archive is closed (``with``)
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        return os.pread(self._fd, size, offset)

    def read(self, name: str) -> bytes:
        """The whole (small) member ``name``, its CRC-32 checked."""
        return self._read(self._position(name))

    def _read(self, k: int) -> bytes:
        """The whole (small) member at position ``k``, its CRC-32 checked."""
        member = self.members.at(k)
        if not member.stored:
            with self._inflating(member) as stream:
                return stream.read()
        data = member.head
        if len(data) != member.size:
            data = self._pread(member.size, member.offset)
        _mts_integrity.check_crc(self.display, member.name, zlib.crc32(data), member.crc)
        return data

    def _whole(self, member: _zip.Member) -> np.ndarray:
        """The bytes of stored ``member``, of any size (read in pieces), its CRC-32
        checked."""
        data = np.empty(member.size, np.uint8)
        view = data.data
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        done = 0
        while done < member.size:
            count = os.preadv(self._fd, [view[done : done + _INFLATE_READ]], member.offset + done)
            if count == 0:
                raise _mts_integrity.damaged(self.display, member.name, "the file ends early")
            done += count
        _mts_integrity.check_crc(self.display, member.name, zlib.crc32(view), member.crc)
        return data

    def check_member(self, name: str) -> None:
        """Read member ``name`` once, in pieces of bounded size, and check its CRC-32."""
        member = self.member(name)
        if not member.stored:
            try:
                stream = _zip.open_compressed(self.path, member)
            except _zip.UnsupportedCompression:
                # `load` refuses such a member where it reads it, and ignores it
                # elsewhere (a note of another tool), as metatensor does
                return
            except _zip.ZipError as error:
                raise self.error(f"{error}: at '{member.name}'") from None
            with _Inflating(self, member, stream) as inflating:
                while inflating.read(_INFLATE_READ):
                    pass
            return
        buffer = memoryview(bytearray(min(member.size, _INFLATE_READ)))
        crc, done = 0, 0
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as error:
            raise io_error(error) from None
        try:
            while done < member.size:
                piece = buffer[: min(len(buffer), member.size - done)]
                count = os.preadv(fd, [piece], member.offset + done)
                if count == 0:
                    raise _mts_integrity.damaged(self.display, name, "the file ends early")
                crc = zlib.crc32(piece[:count], crc)
                done += count
        finally:
            os.close(fd)
        _mts_integrity.check_crc(self.display, name, crc, member.crc)

    def _inflating(self, member: _zip.Member) -> _Inflating:
        try:
            return _Inflating(self, member, _zip.open_compressed(self.path, member))
        except _zip.ZipError as error:
            raise self.error(f"{error}: at '{member.name}'") from None

    def labels(self, name: str) -> Labels:
        """The Labels of member ``name``, its CRC-32 checked; members with the same
        bytes give the same object."""
        k = self._position(name)
        head, whole, crc = self.members.labels_head(k)
        if whole:
            # bytes seen before have a known CRC-32: the member's must be it
            known = self._labels.get(head)
            if known is not None and known[1] == crc:
                return known[0]
        data = self._read(k)
        known = self._labels.get(data)
        if known is not None:
            return known[0]
        try:
            names, values = _npy.labels_from_npy(data)
        except _npy.NpyError as error:
            raise self.error(f"{error}: at '{name}'") from None
        with self.context(name):
            labels = Labels(names, values)
        self._labels[data] = (labels, zlib.crc32(data))
        return labels

    def values_header(
        self, name: str
    ) -> tuple[_zip.Member, _npy.NpyHeader, np.ndarray | None, int]:
        """A values member, its header, its content when it is compressed or in Fortran
        order (read now, in C order), and the CRC-32 of its header."""
        member = self.member(name)
        head = member.head
        if member.stored and len(head) >= 10 and head[6] == 1:
            # a version 1 header seen before: checked then (the size is the member's)
            known = self._headers.get(head[: 10 + int.from_bytes(head[8:10], "little")])
            if known is not None and member.size - known[0].data_start == known[0].nbytes:
                return member, known[0], None, known[1]
        if not member.stored:
            with self._inflating(member) as stream:
                header, start = self._header(name, stream.read, member.uncompressed_size)
                content = np.empty(header.shape, header.dtype, order=_order(header))
                view = content.ravel(order="A").view(np.uint8).data
                view[: len(start) - header.data_start] = start[header.data_start :]
                done = len(start) - header.data_start
                while done < len(view):
                    count = stream.readinto(view[done : done + _INFLATE_READ])
                    if not count:
                        raise stream.damage("the compressed data ends early")
                    done += count
                stream.read(1)  # the end of the stream, where the CRC-32 is checked
            return member, header, _native_c_order(content), 0
        position = member.offset
        head = member.head

        def read(size: int) -> bytes:
            nonlocal position, head
            if head:  # first, the bytes read with the directory
                data, head = head, b""
            else:
                data = self._pread(size, position)
            position += len(data)
            return data

        header, start = self._header(name, read, member.size)
        if header.fortran_order:
            # its rows are not contiguous in the file: read whole, now
            data = self._whole(member)[header.data_start :].view(header.dtype)
            return member, header, _native_c_order(data.reshape(header.shape, order="F")), 0
        raw = start[: header.data_start]
        self._headers[raw] = (header, zlib.crc32(raw))
        return member, header, None, self._headers[raw][1]

    def _header(self, name: str, read: Any, size: int) -> tuple[_npy.NpyHeader, bytes]:
        """The checked header of values member ``name`` of ``size`` bytes, and the bytes
        read to parse it; ``read(n)`` returns the next ``n`` bytes of the member."""
        try:
            start = read(min(size, _HEADER_READ))
            length = _npy.header_length(start[:12])
            if length > len(start):
                start += read(min(size, length) - len(start))
            header = _npy.parse_header(start)
            _npy.check_values(header)
        except _npy.NpyError as error:
            raise self._bad_header(name, f"{error}: at '{name}'") from None
        if size - header.data_start != header.nbytes:
            raise self._bad_header(
                name,
                f"'{name}' holds {size - header.data_start} bytes of data but its header "
                f"describes {header.nbytes} (shape {header.shape}, dtype "
                f"'{header.dtype.str}'): the file is truncated or damaged; write it again",
            )
        return header, start

    def _bad_header(self, name: str, problem: str) -> MetatensorError:
        """The error for values member ``name`` whose header can not be used:
        :class:`~metatensor_dask.errors.DamagedFileError` when the member's bytes are not
        those written (its CRC-32 differs: a changed byte of the header), else the format
        error ``problem`` (a file written so)."""
        self.check_member(name)
        return self.error(problem)

    def part(self, prefix: str, properties: Labels | None = None) -> _Part:
        """Read the metadata of the block (or gradient) stored under ``prefix``."""
        member, header, content, header_crc = self.values_header(prefix + "values.npy")
        if content is None and header.nbytes == 0:
            # a member of no entries is its header, read whole: checked now, before its
            # shape names the Labels members to read (a damaged one names others)
            _mts_integrity.check_crc(self.display, member.name, header_crc, member.crc)
        samples = self.labels(prefix + "samples.npy")
        components = [
            self.labels(f"{prefix}components/{j}.npy") for j in range(len(header.shape) - 2)
        ]
        if properties is None:
            properties = self.labels(prefix + "properties.npy")
        part = _Part(prefix, header, member, content, header_crc, samples, components, properties)
        for parameter in self._gradient_names.get(prefix, ()):
            gradient = self.part(f"{prefix}gradients/{parameter}/", properties)
            known = (id(gradient.samples), header.shape[0])
            if known not in self._pointers:
                self._pointers[known] = _grouped_pointer(gradient.samples, header.shape[0])
            gradient.pointer = self._pointers[known]
            part.gradients[parameter] = gradient
        return part

    def info(self) -> dict[str, str]:
        if "info.json" not in self.members:
            return {}
        try:
            info = json.loads(self.read("info.json").decode("utf8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise self.error(f"'info.json' is not valid JSON: {error}") from None
        if not isinstance(info, dict):
            raise self.error("'info.json' should contain an object")
        if not all(isinstance(value, str) for value in info.values()):
            raise self.error("values in 'info.json' should be strings")
        for text in [*info, *info.values()]:
            if not is_utf8_text(text):
                raise self.error(
                    f"'info.json' holds {text!r}, with an unpaired surrogate "
                    "escape, which is not Unicode text (metatensor refuses the file too); "
                    "write the file again with valid text in its info"
                )
        return info

    def blocks(self, parts: list[_Part], request: chunking.ChunkRequest) -> list[TensorBlock]:
        """The blocks of ``parts`` with lazy values, checked by metatensor's rules.

        Tiny blocks (each array in one chunk, :data:`~._mts_tiny.TINY_BYTES` in all) are
        read by groups of neighbours (:mod:`._mts_tiny`); the others array by array,
        chunk by chunk.
        """
        if request.kind == "keep":
            request = request.or_default()  # the setting, read once
        for part in parts:
            _plan_chunks(part, request)
        tiny = [_is_tiny(part) for part in parts]
        reads = [
            read for part, small in zip(parts, tiny, strict=True) if small for read in _reads(part)
        ]
        items = iter(_mts_tiny.group_items(self.path, self.display, self.stamp, reads))
        blocks = []
        self.distinct = []
        for part, small in zip(parts, tiny, strict=True):
            if small:
                signature = _signature(part)
                if signature in self._checked:
                    blocks.append(_trusted_block(part, items))
                    continue
                block = self._checked_block(part, items, signature)
            else:
                block = self._build(part)
            blocks.append(block)
            self.distinct.append(block)
        return blocks

    def _tiny_block(self, part: _Part, items: Iterator[GroupItem]) -> TensorBlock:
        """The block of ``part``, its arrays (and its gradients') the next ``items``.

        metatensor's rules are checked once per metadata: the Labels of a file are
        shared objects (one per distinct content), so blocks with the same Labels,
        shapes and dtypes pass the same checks, which their first block ran.
        """
        signature = _signature(part)
        if signature in self._checked:
            return _trusted_block(part, items)
        return self._checked_block(part, items, signature)

    def _checked_block(
        self, part: _Part, items: Iterator[GroupItem], signature: tuple[Any, ...]
    ) -> TensorBlock:
        """The block of ``part`` (see :meth:`_tiny_block`), checked; its ``signature``
        is then known to pass."""
        with self.context(part.prefix or "<root>"):
            _check_shape(part.header.shape, part.samples, part.components, part.properties)
            block = TensorBlock._trusted(
                next(items), part.samples, part.components, part.properties
            )
            for parameter, gradient_part in part.gradients.items():
                block.add_gradient(parameter, self._tiny_block(gradient_part, items))
                if gradient_part.pointer is not None:
                    block.set_row_pointer(parameter, gradient_part.pointer)
        self._checked.add(signature)
        return block

    def _build(self, part: _Part) -> TensorBlock:
        with self.context(part.prefix or "<root>"):
            block = TensorBlock(self._values(part), part.samples, part.components, part.properties)
            for parameter, gradient_part in part.gradients.items():
                block.add_gradient(parameter, self._build(gradient_part))
                if gradient_part.pointer is not None:
                    block.set_row_pointer(parameter, gradient_part.pointer)
        return block

    def _values(self, part: _Part) -> da.Array:
        header = part.header
        chunks = (part.chunks, *((n,) for n in header.shape[1:]))
        native = header.dtype.newbyteorder("=")
        # a plain hash (dask's tokenize costs a millisecond per array) of where the
        # member is, without its first bytes
        token = hashlib.blake2b(
            repr((self.path, self.stamp, part.member[:-1], header.dtype.str, chunks)).encode(),
            digest_size=16,
        ).hexdigest()
        if part.content is not None:
            return da.from_array(part.content, chunks=chunks, name=f"mts-load-{token}")
        start = part.member.offset + header.data_start
        inner = (0,) * (len(header.shape) - 1)
        reads, lengths = [], []
        for rows in part.chunks:
            shape = (rows, *header.shape[1:])
            reads.append((_read_rows, self.path, self.stamp, start, header.dtype.str, shape))
            lengths.append(rows * part.row_bytes)
            start += rows * part.row_bytes
        check = _mts_integrity.MemberCheck(
            self.display,
            part.member.name,
            part.member.crc,
            part.header_crc,
            tuple(lengths),
            self.path,
            self.stamp,
            part.member.offset + header.data_start,
        )
        name, tasks = _mts_integrity.values_graph(token, reads, inner, check)
        return _graph.array_from_tasks(name, tasks, (), chunks, native)


def _starts_as_npy(path: str) -> bool:
    """Whether the file ``path`` starts as a ``.npy`` file (``False`` when it can not be
    read: the error being raised says what is wrong with it)."""
    try:
        with open(path, "rb") as file:
            return file.read(6) == _npy.MAGIC
    except OSError:
        return False


def _unsafe_name_cause(name: str) -> str:
    """The likely cause of the unsafe member ``name``, and the remedy."""
    # such tools write every separator so: a gradient name holding '\\' has '/' around it
    if "/" not in name and all(map(_is_safe_component, name.split("\\"))):
        return (
            "the archive separates folders with '\\' (as some Windows tools do), where "
            "ZIP archives and metatensor use '/'; archive the file again with a tool "
            "that writes '/' (Python's zipfile, `zip -r`, 7-Zip)"
        )
    return (
        "the file is damaged, or was written with such a gradient name, which "
        "metatensor-dask refuses; write it again from its source, with plain gradient "
        "names"
    )


def _is_safe_component(component: str) -> bool:
    try:
        check_path_component(component, "a member name component")
    except UnsafeNameError:
        return False
    return True


class _Inflating:
    """A compressed member being read: decompression and CRC errors become
    :class:`~metatensor_dask.errors.DamagedFileError` naming the file and member."""

    def __init__(self, archive: Archive, member: _zip.Member, stream: Any):
        self.archive, self.member, self.stream = archive, member, stream

    def damage(self, problem: str) -> MetatensorError:
        return _mts_integrity.damaged(self.archive.display, self.member.name, problem)

    def read(self, size: int = -1) -> bytes:
        try:
            return self.stream.read(size)
        except (zipfile.BadZipFile, zlib.error, EOFError) as error:
            problem = str(error)
            if "CRC" in problem:
                problem = f"Invalid checksum ({problem})"
            raise self.damage(problem) from None

    def readinto(self, view: memoryview) -> int:
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def __enter__(self) -> _Inflating:
        return self

    def __exit__(self, *args: Any) -> None:
        self.stream.close()


class _ErrorContext:
    """Adds the file and member to metatensor's own errors about the content."""

    def __init__(self, archive: Archive, where: str):
        self.archive = archive
        self.where = where

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        if (
            isinstance(error, MetatensorError)
            and not error.message.startswith("serialization format error")
            and " (in '" not in error.message
        ):
            message = (
                f"{error.message} (in '{self.where}' of '{self.archive.display}': the "
                "file is damaged or was not written by metatensor)"
            )
            raise MetatensorError(message) from None


def _order(header: _npy.NpyHeader) -> Literal["C", "F"]:
    return "F" if header.fortran_order else "C"


def _native_c_order(values: np.ndarray) -> np.ndarray:
    """``values`` in native byte order and C order (a copy only when they are not)."""
    return np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("="))


def _grouped_pointer(samples: Labels, n_rows: int) -> np.ndarray | None:
    """The CSR row pointer of a gradient, or ``None`` when its rows are not grouped
    by sample or do not point at valid rows (``add_gradient`` then says why)."""
    if not samples.names or samples.names[0] != "sample":
        return None
    column = samples.column("sample")
    if len(column) and (column.min() < 0 or column.max() >= n_rows):
        return None
    return row_pointer(column, n_rows)


def _signature(part: _Part) -> tuple[Any, ...]:
    """What metatensor's checks of the block of ``part`` depend on: its Labels (by
    identity: the archive shares them by content), shape and dtype (its header, shared
    by the archive too), row pointer and gradients."""
    signature: tuple[Any, ...] = (
        id(part.header),
        id(part.pointer),
        id(part.samples),
        id(part.properties),
        *map(id, part.components),
    )
    for parameter, gradient in part.gradients.items():
        signature += (parameter, _signature(gradient))
    return signature


def _trusted_block(
    part: _Part, items: Iterator[GroupItem], path: tuple[str, ...] = ()
) -> TensorBlock:
    """The block of ``part`` from the next ``items``, without checks (see
    :meth:`Archive._tiny_block`); gradients are made for their place (``path``), as
    ``add_gradient`` would attach them."""
    values = next(items)
    gradients = {
        parameter: _trusted_block(gradient, items, (parameter,))
        for parameter, gradient in part.gradients.items()
    }
    return TensorBlock._trusted(
        values, part.samples, part.components, part.properties, gradients, part.pointer, path
    )


def _is_tiny(part: _Part) -> bool:
    """Whether ``part`` and its gradients are stored arrays of one chunk each, of at
    most :data:`~._mts_tiny.TINY_BYTES` together."""
    total = 0
    pending = [part]
    while pending:
        current = pending.pop()
        if current.content is not None or len(current.chunks) != 1:
            return False
        total += current.member.size
        pending.extend(current.gradients.values())
    return total <= _mts_tiny.TINY_BYTES


def _reads(part: _Part) -> list[_mts_tiny.MemberRead]:
    """The members of ``part``: its values, then its gradients' (depth first)."""
    header, member = part.header, part.member
    read = _mts_tiny.MemberRead(
        member.name,
        member.offset,
        member.size,
        header.data_start,
        header.dtype.str,
        header.shape,
        member.crc,
    )
    if not part.gradients:
        return [read]
    reads = [read]
    for gradient in part.gradients.values():
        reads.extend(_reads(gradient))
    return reads


def _by_size(cumulative: list[np.ndarray], target: int) -> tuple[int, ...]:
    """Chunks along value rows such that every array's chunk stays under ``target``
    bytes (or holds a single row). ``cumulative[k][r]`` is the number of bytes of array
    ``k`` up to value row ``r``."""
    n_rows = len(cumulative[0]) - 1
    if n_rows == 0:
        return (0,)
    chunks, start = [], 0
    while start < n_rows:
        stop = n_rows
        for cum in cumulative:
            stop = min(stop, int(np.searchsorted(cum, cum[start] + target, side="right")) - 1)
        stop = max(stop, start + 1)
        chunks.append(stop - start)
        start = stop
    return tuple(chunks)


def _plan_chunks(part: _Part, request: chunking.ChunkRequest) -> None:
    """Set the row chunks of ``part`` and of its gradients (co-partitioned when their
    rows are grouped by sample, chunked by size on their own otherwise)."""
    n_rows = part.header.shape[0]
    if request.kind == "bytes" and _total_bytes(part) <= request.amount:
        # the whole block fits in one chunk: so does each of its arrays
        _assign_whole(part)
        return
    if request.kind == "rows":
        chunks = chunking.regular(n_rows, request.amount)
        size = chunking.default_target()
    else:
        size = request.or_default().amount
        bounds = np.arange(n_rows + 1, dtype=np.int64)
        cumulative = [bounds * part.row_bytes]
        pending = [(part, bounds)]
        while pending:
            parent, parent_bounds = pending.pop()
            for gradient in parent.gradients.values():
                if gradient.pointer is not None:
                    gradient_bounds = gradient.pointer[parent_bounds]
                    cumulative.append(gradient_bounds * gradient.row_bytes)
                    pending.append((gradient, gradient_bounds))
        chunks = _by_size(cumulative, size)
    _assign_chunks(part, chunks, size)


def _total_bytes(part: _Part) -> int:
    """Bytes of the values of ``part`` and of its gradients'."""
    return part.header.nbytes + sum(_total_bytes(g) for g in part.gradients.values())


def _assign_whole(part: _Part) -> None:
    part.chunks = (part.header.shape[0],)
    for gradient in part.gradients.values():
        _assign_whole(gradient)


def _assign_chunks(part: _Part, chunks: tuple[int, ...], size: int) -> None:
    part.chunks = chunks
    for gradient in part.gradients.values():
        if gradient.pointer is None:
            _plan_chunks(gradient, chunking.ChunkRequest("bytes", size))
        else:
            _assign_chunks(gradient, gradient_row_chunks(gradient.pointer, chunks), size)


def _read_rows(
    path: str, stamp: _stamped_reads.Stamp, offset: int, descr: str, shape: tuple[int, ...]
) -> tuple[np.ndarray, int]:
    """Read one chunk of values: ``shape`` array of ``descr`` at ``offset`` in ``path``,
    and the CRC-32 of the bytes read."""
    dtype = np.dtype(descr)
    out = np.empty(shape, dtype)
    view = out.reshape(-1).view(np.uint8).data
    if out.nbytes:
        _stamped_reads.read_into(path, stamp, offset, view)
    crc = zlib.crc32(view)
    if not dtype.isnative:
        out = out.astype(dtype.newbyteorder("="))
    return out, crc
