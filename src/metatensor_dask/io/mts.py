"""metatensor files (``.mts``, formerly ``.npz``): read lazily, written streamed.

A metatensor file is a STORED ZIP archive of ``.npy`` members (layout in
``docs/mts-files.md``). :func:`load` reads the archive's directory, the header of every
array and all Labels (small), but no values: each chunk of values is a dask task that
opens the file and reads its own bytes at their offset (``os.preadv``), so tasks are
small to ship to process or cluster workers and memory holds only the chunks in use;
the arrays of tiny blocks are read by groups of neighbours, one task and one read per
group (``_mts_tiny``).
:func:`save` lays out the whole archive first, then computes the values chunk by chunk
and writes each at its offset in a temporary file, renamed over ``path`` at the end.
CRC-32s are checked as members are read (see ``docs/mts-files.md``); :func:`check_file`
checks a whole file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from typing import Any, BinaryIO

import numpy as np

from .._gc import collector_paused
from .._typing import ChunksLike, PathLike
from ..block import TensorBlock
from ..errors import (
    DamagedFileError,
    MetatensorDaskError,
    MetatensorError,
    format_error,
    wrong_type,
)
from ..labels import Labels
from ..tensor import TensorMap, info_problem
from . import _npy, _zip
from ._mts_read import Archive, display_path, io_error, read_file
from ._mts_write import Encoder, Entry, labels_bytes, write_atomically
from ._repeated_entries import check_unrepeated
from .chunks import ChunkRequest, parse_chunks

__all__ = ["check_file", "load", "load_block", "load_labels", "save"]


# -- loading -----------------------------------------------------------------------------


def load(path: PathLike, chunks: ChunksLike = None, *, use_numpy: bool = False) -> TensorMap:
    """Open a metatensor ``TensorMap`` file (``.mts``, or ``.npz`` from older versions).

    Keys, samples, components and properties are read now; values are not read: they
    are dask arrays whose tasks each read one chunk from the file when computed.

    Parameters
    ----------
    path
        The file, as written by ``metatensor.save`` or :func:`save`.
    chunks
        How to split values along samples. ``None``: the ``chunk-size`` setting
        (``mtd.config.get("chunk-size")``, 64 MiB by default); a size such as
        ``"16MiB"``: the largest array of a chunk (the values, or the rows of a
        gradient that belong to them) stays under it; an int: value rows per chunk.
        Gradient chunk *i* holds the gradient rows whose ``"sample"`` is in values
        chunk *i*. A bool here is metatensor's positional ``use_numpy``.
    use_numpy
        Accepted for metatensor's scripts and ignored: values are always dask arrays
        of numpy chunks.

    Returns
    -------
    TensorMap
        With lazy values and gradients.

    Notes
    -----
    Gradients whose rows are not grouped by ``"sample"`` are chunked on their own,
    by size. Compressed (DEFLATE) members, which metatensor never writes, are
    decompressed into memory now, and so are Fortran-ordered arrays, which
    ``metatensor.save(..., use_numpy=True)`` writes for Fortran-ordered values (their
    rows are not contiguous in the file). Tasks check that the file has not changed since it
    was loaded (size, modification and status change time) and refuse to read
    otherwise.
    """
    request = parse_chunks(_chunks_not_use_numpy(chunks))
    with collector_paused():
        # what only the load needs (the archive's directory, the parts of the blocks)
        # is freed before the collector resumes, which then walks less
        return _load(path, request)


def _load(path: PathLike, request: ChunkRequest) -> TensorMap:
    with Archive.open(path, "a TensorMap") as archive:
        if "keys.npy" not in archive.members and "values.npy" in archive.members:
            archive.hint = ", use `load_block` to load TensorBlock"
        keys = archive.labels("keys.npy")
        parts = [archive.part(f"blocks/{i}/") for i in range(len(keys))]
        info = archive.info()
        blocks = archive.blocks(parts, request)
        with archive.context("<root>"):
            tensor = _tensor(keys, blocks, archive.distinct)
    for key, value in info.items():
        tensor.set_info(key, value)
    return tensor


def _tensor(keys: Labels, blocks: list[TensorBlock], distinct: list[TensorBlock]) -> TensorMap:
    """The map of ``blocks``, one per entry of ``keys``; ``distinct`` are blocks among
    them that hold every metadata of the others (see ``Archive.blocks``).

    metatensor's rules across the blocks of a map (the same dimension names, dtype and
    gradients as the first block) depend on that metadata only: they are checked on
    the first block and the distinct ones (with their own messages), and the map is
    then made without checking each block again.
    """
    checked = distinct
    if blocks and (not distinct or distinct[0] is not blocks[0]):
        checked = [blocks[0], *distinct]
    TensorMap(Labels.range("block", len(checked)), checked)
    return TensorMap._trusted(keys, blocks)


def load_block(
    path: PathLike, chunks: ChunksLike = None, *, use_numpy: bool = False
) -> TensorBlock:
    """Open a metatensor ``TensorBlock`` file, with lazy values (see :func:`load`)."""
    request = parse_chunks(_chunks_not_use_numpy(chunks))
    with Archive.open(path, "a TensorBlock") as archive:
        if "values.npy" not in archive.members and "keys.npy" in archive.members:
            archive.hint = ", use `load` to load TensorMap"
        part = archive.part("")
        with archive.context("<root>"):
            return archive.blocks([part], request)[0]


def _chunks_not_use_numpy(chunks: Any) -> ChunksLike:
    """``chunks``, or ``None`` for a bool: metatensor's ``load(file, use_numpy)`` given
    positionally (no chunking is a bool)."""
    return None if isinstance(chunks, (bool, np.bool_)) else chunks


def load_labels(path: PathLike) -> Labels:
    """Read a metatensor ``Labels`` file (a single ``.npy`` array, not a ZIP archive)."""
    display = display_path(path)
    data = read_file(path)
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        hint = ""
        try:
            members = set(_zip.read_directory(display))
        except _zip.ZipError:
            members = set()
        if "keys.npy" in members:
            hint = ", use `load` to load TensorMap"
        elif "values.npy" in members:
            hint = ", use `load_block` to load TensorBlock"
        raise format_error(
            f"unable to load Labels from '{display}'{hint}: start does not match magic string"
        )
    try:
        names, values = _npy.labels_from_npy(data)
        return Labels(names, values)
    except _npy.NpyError as error:
        raise format_error(f"unable to load Labels from '{display}': {error}") from None


# -- checking ----------------------------------------------------------------------------


def check_file(path: str | os.PathLike) -> None:
    """Check a metatensor file whole: every member's CRC-32, and that its content agrees.

    Every member is read in pieces of bounded size (memory does not grow with the
    file) and its CRC-32 checked. Then the file is loaded as :func:`load` (or :func:`load_block`,
    :func:`load_labels`) does, which checks metatensor's rules: values shapes against
    labels, unique labels entries, gradient ``"sample"`` entries that point at existing
    rows, dtypes.

    Parameters
    ----------
    path
        A TensorMap, TensorBlock or Labels file (``.mts`` or ``.npz``).

    Raises
    ------
    DamagedFileError
        When a CRC-32 does not match or the content breaks a rule; the message names
        the file and the member.
    MetatensorError
        ``io error: ...`` when the file can not be read, and metatensor's "unsupported
        Zip archive" when a member needed is compressed with a method metatensor does
        not read (bzip2, LZMA...): the file is whole, written by another tool.
    """
    display = display_path(path)
    try:
        with open(display, "rb") as file:
            labels_file = file.read(len(_npy.MAGIC)) == _npy.MAGIC
    except OSError as error:
        raise io_error(error) from None
    try:
        if labels_file:
            load_labels(path)
            return
        with Archive.open(path, "a metatensor file") as archive:
            for name in archive.members:
                archive.check_member(name)
        if "keys.npy" in archive.members or "values.npy" not in archive.members:
            load(path)
        else:
            load_block(path)
    except DamagedFileError:
        raise
    except MetatensorError as error:
        if error.message.startswith("io error") or _zip.UNSUPPORTED in error.message:
            raise  # a file that can not be read, or read by metatensor: not damaged
        raise DamagedFileError(
            f"'{display}' is damaged: {error.message}; write it again from its source"
        ) from error


# -- saving ------------------------------------------------------------------------------


def save(
    path: PathLike | BinaryIO, data: TensorMap | TensorBlock | Labels, use_numpy: bool = False
) -> None:
    """Write a TensorMap, TensorBlock or Labels in metatensor's format.

    The file is the one ``metatensor.save`` writes: a STORED ZIP archive (ZIP64
    enabled, dated 2000-01-01) of ``.npy`` members in metatensor's order, gradients
    sorted by name, ``info.json`` when the map has info; Labels are a bare ``.npy``
    file. Saving the same data twice gives identical bytes.

    Parameters
    ----------
    path
        Where to write. As metatensor does, ``.mts`` is appended (with a
        ``UserWarning``) when the name does not end with it. A file object open for
        writing (``io.BytesIO``...) receives the bytes, written to a temporary file
        first.
    data
        What to write. Lazy values are computed chunk by chunk (with the current dask
        scheduler) and each chunk is written at its place as soon as it is ready, so
        memory holds a few chunks at a time, not the whole tensor.
    use_numpy
        Accepted for metatensor's scripts and ignored: the bytes are the same either
        way.

    Notes
    -----
    The data go to a temporary file next to ``path``, renamed to ``path`` once
    complete: an interrupted save never leaves a partial file under the final name.
    Values are written little-endian; bool and 1-byte types get metatensor's ``<``
    descriptor (numpy's ``|`` is refused by metatensor).
    """
    if not isinstance(data, (Labels, TensorBlock, TensorMap)):
        # checked first: metatensor refuses it without a warning about the extension
        raise wrong_type(
            f"`data` must be one of 'Labels', 'TensorBlock' or 'TensorMap', not {type(data)}",
            data,
        )
    check_unrepeated(data)
    if not isinstance(path, (str, os.PathLike)):
        _save_to_file_object(path, data)
        return
    target = _with_extension(path)
    encoder = Encoder()
    # a map of many blocks makes many objects, and no garbage cycle
    with collector_paused():
        if isinstance(data, Labels):
            entries = [Entry("", [labels_bytes(data)])]
        elif isinstance(data, TensorBlock):
            entries = encoder.block("", data, gradient=False)
        else:
            entries = [Entry("keys.npy", [labels_bytes(data.keys)])]
            for i, block in enumerate(data.blocks()):
                entries.extend(encoder.block(f"blocks/{i}/", block, gradient=False))
            info = data.info()
            if info:
                _check_info(info)
                text = json.dumps(info, indent=2, sort_keys=True, ensure_ascii=False)
                entries.append(Entry("info.json", [text.encode("utf8")]))
        write_atomically(target, entries, archive=not isinstance(data, Labels))


def _check_info(info: dict[str, str]) -> None:
    """Refuse ``info`` that metatensor can not hold (see
    :func:`~metatensor_dask.tensor.info_problem`): it could not load the file."""
    problem = info_problem(info)
    if problem:
        raise MetatensorDaskError(f"{problem}; nothing was written")


def _save_to_file_object(file: Any, data: TensorMap | TensorBlock | Labels) -> None:
    """:func:`save` into a file object open for writing (as metatensor accepts): the
    archive is written to a temporary file (chunk by chunk), then copied into ``file``."""
    if not callable(getattr(file, "write", None)):
        raise TypeError(
            "`path` must be a str, a path-like object or a file object open for writing, "
            f"got {type(file)}"
        )
    with tempfile.TemporaryDirectory(prefix="metatensor-dask-save-") as directory:
        written = os.path.join(directory, "data.mts")
        save(written, data)
        with open(written, "rb") as source:
            shutil.copyfileobj(source, file)


def _with_extension(path: Any) -> str:
    display = display_path(path)
    if display.endswith(".mts"):
        return display
    shown = display + ".mts" if isinstance(path, str) else os.path.basename(display) + ".mts"
    warnings.warn(
        f"adding '.mts' extension, the file will be saved at '{shown}'", UserWarning, stacklevel=3
    )
    return display + ".mts"
