"""Access to a Zarr store: resolving store-likes, bulk metadata I/O, chunk tasks, and the
plain reads (node documents, Labels, rows of plain chunks) that need no dask array.

Everything here talks to zarr's asynchronous ``Store`` interface directly, so that
thousands of small documents are read or written concurrently instead of one by one,
and so that no ``zarr.Array`` object is built before a task needs one.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import json
import os
import re
import sys
import time
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import dask
import dask.config
import numpy as np
from zarr import Array, AsyncArray
from zarr.abc.store import Store
from zarr.buffer import default_buffer_prototype
from zarr.storage import FsspecStore, LocalStore, MemoryStore, StorePath

from ..errors import DamagedStoreError, MetatensorDaskError
from ._file_reads import open_regular, read_whole_files
from ._file_writes import open_own, write_all
from ._names import is_metatensor_file
from ._zarr_internals import make_store_path, sync
from .zarr_codecs import (
    ChunkFormat,
    chunk_key,
    chunk_keys,
    decode_chunks,
    decode_rows,
    encode_chunks,
)
from .zarr_identity import ChunkIdentity, last_crc, overwrite_told, records_table
from .zarr_integrity import CheckedStore, checked_labels, damaged, shard_index_entries
from .zarr_layout import PROGRESS_PREFIX

if TYPE_CHECKING:
    from dask.delayed import Delayed

    from ..labels import Labels
    from . import zarr_layout as layout

__all__ = [
    "ArrayRef",
    "compute",
    "delete_prefix",
    "fsspec_folder",
    "get_many",
    "is_temporary",
    "list_prefix",
    "list_root",
    "make_folders",
    "new_folders",
    "open_store",
    "outer_store",
    "plain_chunks",
    "read_arrays",
    "read_healthy_arrays",
    "read_labels",
    "read_nodes",
    "read_plain_region",
    "read_plain_regions",
    "refuse_metatensor_file",
    "remove_if_empty",
    "remove_temporaries",
    "same_store",
    "set_many",
    "unwritable_reason",
    "write_files",
]

#: At most this many store requests are in flight at once in the bulk helpers.
_CONCURRENCY = 64
#: Threads writing local files in bulk when the writes wait or cost the kernel long
#: (see :func:`write_files`).
_FILE_THREADS = 4
#: A bulk write's first files, written from the calling thread and timed.
_FIRST_FILES = 256
#: Seconds of CPU per file (of the calling thread, the kernel's work included) from
#: which the rest of a bulk write is written from :data:`_FILE_THREADS` threads; or
#: twice that of wall time (the writes wait: a network file system, a busy disk).
_SLOW_FILE = 15e-6


def _memory_kind(store: Store) -> str | None:
    """``"object"`` for a zarr MemoryStore, ``"fsspec"`` for ``memory://``, else None."""
    if isinstance(store, MemoryStore):
        return "object"
    if not isinstance(store, FsspecStore):
        return None
    protocol = getattr(_unwrapped(store.fs, "")[0], "protocol", None)
    protocols = protocol if isinstance(protocol, (tuple, list)) else (protocol,)
    return "fsspec" if "memory" in protocols else None


def _copying_scheduler(kind: str) -> str | None:
    """Why tasks would not see this process's memory store, or ``None``.

    Tasks sent to other processes see their own, empty memory. A distributed
    Client also pickles tasks for in-process workers, which copies a zarr
    ``MemoryStore`` (``memory://`` stores live in fsspec's global memory and survive).
    """
    scheduler = dask.config.get("scheduler", None)
    if scheduler in ("processes", "multiprocessing"):
        return f"dask's scheduler is {scheduler!r}"
    if "distributed" in sys.modules:
        from distributed import get_client

        try:
            client = get_client()
        except ValueError:
            return None
        address = getattr(client.scheduler, "address", "") or ""
        if kind == "object" or not address.startswith("inproc://"):
            return f"a distributed Client is active (scheduler at {address})"
    return None


def compute(delayed: Delayed) -> None:
    """Run the tasks of ``delayed`` with the scheduler :func:`dask.compute` would pick,
    without importing ``distributed`` where no Client can be active.

    :func:`dask.compute` given no scheduler imports ``distributed`` (when installed) to
    look for a Client: a fifth of a second of CPU, the most of what the first write of a
    process costs beyond the next ones at 1,000 tiny blocks. No module of the process
    has imported it yet, no Client exists; then, unless dask's configuration names a
    scheduler, ``delayed``'s own (dask's threads) is the one dask would pick.
    """
    if "distributed" in sys.modules or dask.config.get("scheduler", None) is not None:
        dask.compute(delayed)
    else:
        dask.compute(delayed, scheduler=delayed.__dask_scheduler__)


def open_store(store: Any, storage_options: dict[str, Any] | None, writable: bool) -> Store:
    """The zarr ``Store`` for any StoreLike (path, URL, store object, ...).

    A local path is made absolute (its ``~`` expanded, as xarray does), so that tasks
    read and write the same folder after the calling process changes its working
    directory, and on workers started in another one; symbolic links in it are
    resolved, so that every path to a folder gives the same store (a write then sees
    that the tensor it writes reads the store, through whichever path it was opened).
    A location that can not be written is refused before a write creates anything
    (see :func:`_refuse_read_only`).
    A memory store is refused when tasks would write to copies of it (see
    :func:`_copying_scheduler`).
    """
    _refuse_not_a_folder(_absolute(store), writable)
    store = _absolute(store, real=True)
    if writable:
        _refuse_read_only(store)
    try:
        path = sync(
            make_store_path(store, mode="a" if writable else "r", storage_options=storage_options)
        )
    except FileNotFoundError:
        raise MetatensorDaskError(
            f"no Zarr store found at {store!r}: check the path, or write a tensor there "
            "with `tensor.to_zarr(...)`"
        ) from None
    except (FileExistsError, NotADirectoryError):  # zarr creates the folder to write
        raise _not_a_folder(store) from None
    except ValueError as error:
        _refuse_unknown_protocol(store, error)
        if writable and getattr(store, "read_only", False):
            if not getattr(store, "supports_deletes", True):  # writable, still refused
                raise _no_deletes(store) from None
            raise MetatensorDaskError(
                f"{describe(store)} is read-only: open the store with read_only=False to "
                "write to it"
            ) from None
        raise
    if path.path:
        raise MetatensorDaskError(
            f"stores inside another store (path {path.path!r}) are not supported; give the "
            "store's own location"
        )
    resolved = _without_listings_cache(path.store)
    if writable:
        _check_writable(resolved)
    kind = _memory_kind(resolved)
    reason = _copying_scheduler(kind) if kind is not None else None
    if reason is not None:
        raise _not_here(reason)
    return resolved


def _refuse_unknown_protocol(store: Any, error: ValueError) -> None:
    """Name the remedy when fsspec knows no file system for the protocol of the URL
    ``store`` (its own message: "Protocol not known: NAME")."""
    if not str(error).startswith("Protocol not known") or not isinstance(store, str):
        return
    protocol = store.partition("://")[0]
    raise MetatensorDaskError(
        f"no file system is known for the protocol '{protocol}' of {store!r}: check its "
        "spelling (`fsspec.available_protocols()` lists the protocols fsspec knows), or "
        "install the fsspec package that provides it"
    ) from None


def _absolute(location: Any, real: bool = False) -> Any:
    """``location`` with a local path (a str or path-like without a protocol, the root
    of a ``LocalStore``) absolute and its ``~`` expanded, and with ``real`` its symbolic
    links resolved; any other location as given."""
    form = _real_path if real else _absolute_path
    if isinstance(location, LocalStore):
        root = form(str(location.root))
        if root == str(location.root):
            return location
        return LocalStore(root, read_only=location.read_only)
    if isinstance(location, os.PathLike):
        location = os.fspath(location)
    if isinstance(location, str) and _is_local_path(location):
        return form(location)
    return location


def _is_local_path(location: str) -> bool:
    return "://" not in location and "::" not in location


def _absolute_path(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def _real_path(path: str) -> str:
    return os.path.realpath(os.path.expanduser(path))


def _refuse_not_a_folder(location: Any, writable: bool) -> None:
    """Refuse a local ``location`` that is a file, or a symbolic link to nothing, with
    what it is rather than as a folder without a store (or a file in the way)."""
    path = _local_path(location)
    if path is None:
        return
    if path.is_symlink() and not path.exists():
        raise MetatensorDaskError(
            f"{path} is a symbolic link to {os.readlink(path)}, which does not exist: "
            f"{'create the folder it leads to, or ' if writable else ''}give the path of "
            "the store itself"
        )
    if not path.exists() or path.is_dir():
        return
    if writable:
        raise _not_a_folder(str(path))
    raise MetatensorDaskError(f"{path} is a file, not a Zarr store (a directory){_zip_hint(path)}")


def _zip_hint(path: Path) -> str:
    """How to read the file ``path`` when it is a zip archive: a zipped Zarr store, or a
    metatensor file; for any other file, to give the store's folder."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return ": give the path of the store's folder"
    if "zarr.json" in names:
        return (
            ": a zipped Zarr store, opened with "
            f"open_zarr(zarr.storage.ZipStore({str(path)!r}, mode='r'))"
        )
    return ": a zip archive, such as a metatensor file, is read with metatensor_dask.load"


def _refuse_read_only(location: Any) -> None:
    """Refuse to write to a local ``location`` in a folder that can not be written: a
    read-only file system (a shared dataset, a read-only mount), or a folder this user
    has no write permission in. The refusal comes before the write creates anything (its
    folder, its lock) and names the folder and the remedy."""
    path = _local_path(location) or fsspec_folder(location)
    if path is None:
        return
    folder = next((p for p in (path, *path.parents) if os.path.lexists(p)), None)
    if folder is None or not folder.is_dir() or os.access(folder, os.W_OK):
        return
    code, why = unwritable_reason(folder)
    raise OSError(
        code,
        f"can not write to {path}: {os.strerror(code)} ({why}); nothing was written. "
        "Write to a folder that can be written (a store in this one can still be read: "
        "open_zarr, verify, info, and copied elsewhere with `metatensor-dask convert`)",
    )


def unwritable_reason(folder: Path) -> tuple[int, str]:
    """Why the existing ``folder`` can not be written: its errno, and the reason."""
    if os.statvfs(folder).f_flag & os.ST_RDONLY:
        return errno.EROFS, f"{folder} is on a file system mounted read-only"
    return errno.EACCES, f"this user may not write in {folder}"


class _NearestFolders:
    """The existing folder each node of a local store would be written in: the node's
    own, else its nearest existing parent's; looked up from the root down, so that the
    nodes under a missing folder cost no system call."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.found: dict[str, str] = {"": self.root}
        self.checked: set[str] = set()

    def nearest(self, path: str) -> str:
        """The existing folder that the node ``path`` is, or is written in."""
        found = self.found.get(path)
        if found is None:
            parent = path.rpartition("/")[0]
            above = self.nearest(parent)
            own = f"{self.root}/{path}"
            if above == (f"{self.root}/{parent}" if parent else self.root) and os.path.lexists(own):
                found = own
            else:
                found = above
            self.found[path] = found
        return found


def refuse_read_only_nodes(store: Store, where: str, paths: Iterable[str]) -> None:
    """Refuse a write to the local ``store`` that writes in the nodes ``paths`` when
    the folder of one of them (for a new node, its nearest existing parent) can not be
    written: a node that is a symbolic link into a read-only mount, or into a folder of
    another user. The store's own folder is checked when it is opened (see
    :func:`_refuse_read_only`); this check comes before the write stores anything."""
    root = _local_root(store) or fsspec_folder(store)
    if root is None:
        return
    folders = _NearestFolders(root)
    for path in dict.fromkeys(paths):
        folder = folders.nearest(path)
        if folder in folders.checked:
            continue
        folders.checked.add(folder)
        if os.access(folder, os.W_OK):
            continue
        real = Path(os.path.realpath(folder))
        if not real.is_dir():
            raise OSError(
                errno.ENOENT,
                f"can not write to {where}: its node '{path}' is in {folder}, which leads "
                f"to {real}: no folder; nothing was written. Put the linked folder back "
                "(or remove the link and write the tensor again)",
            )
        code, why = unwritable_reason(real)
        raise OSError(
            code,
            f"can not write to {where}: {os.strerror(code)} (its node '{path}' is in "
            f"{real}, and {why}); nothing was written. Write the tensor to a "
            "store in a folder that can be written (this one can still be read, and "
            "copied elsewhere with `metatensor-dask convert`)",
        )


def _without_listings_cache(store: Store) -> Store:
    """``store``, or for an fsspec store whose file system keeps the listings it made
    (object stores: ``s3fs``, ``gcsfs``, ``adlfs``), the same store on an instance of
    that file system with the same options that keeps none.

    Such a file system answers the size or existence of a file from any listing of its
    folder made earlier in the process (by ``verify``, ``info``, a resume, or the
    user's own code), before reading it: a chunk or record written since by another
    process (an append, a job's write) would read as missing, and the healthy store as
    damaged.
    """
    if not isinstance(store, FsspecStore):
        return store
    fs = _uncached(store.fs)
    if fs is store.fs:
        return store
    return FsspecStore(
        fs, read_only=store.read_only, path=store.path, allowed_exceptions=store.allowed_exceptions
    )


def _uncached(fs: Any) -> Any:
    """The fsspec file system ``fs``, or one of its class and options keeping no listings
    (see :func:`_without_listings_cache`); a file system wrapped to be asynchronous, and
    the one a ``DirFileSystem`` (paths under a folder of another) wraps, are looked at
    in turn."""
    from fsspec.implementations.dirfs import DirFileSystem

    inner = getattr(fs, "sync_fs", fs.fs if isinstance(fs, DirFileSystem) else None)
    if inner is not None:
        replaced = _uncached(inner)
        return fs if replaced is inner else _with_inner(fs, replaced)
    if not getattr(getattr(fs, "dircache", None), "use_listings_cache", False):
        return fs
    try:
        return type(fs)(*fs.storage_args, **{**fs.storage_options, "use_listings_cache": False})
    except TypeError:  # a file system that takes no such option: used as given
        return fs


def _with_inner(fs: Any, inner: Any) -> Any:
    """An instance of the class of the fsspec file system ``fs`` (a wrapper: zarr's
    asynchronous one, a ``DirFileSystem``) made with the arguments ``fs`` was made with,
    but wrapping ``inner``: the file system it wraps is its argument ``fs``, given by
    position or by name."""
    arguments = inspect.signature(type(fs).__init__).bind(
        None, *fs.storage_args, **fs.storage_options
    )
    arguments.arguments["fs"] = inner
    return type(fs)(*arguments.args[1:], **arguments.kwargs)


def _not_here(reason: str) -> MetatensorDaskError:
    return MetatensorDaskError(
        f"this memory store can not be used here ({reason}): tasks would write to "
        "copies of it and the data would be lost; use a directory or another fsspec "
        "URL, or dask's threaded scheduler ('memory://' URLs also work with "
        "distributed.LocalCluster(processes=False))"
    )


def memory_owner(store: Store) -> tuple[int, int] | None:
    """Where a memory store lives, for :func:`check_memory_owner`: this process and the
    store object; ``None`` for other stores."""
    return None if _memory_kind(store) is None else (os.getpid(), id(store))


def check_memory_owner(store: Store, owner: tuple[int, int] | None) -> None:
    """In a task of a write, before it stores anything: raise unless ``store`` is the
    memory store of :func:`memory_owner` ``owner`` (a ``memory://`` URL: in its process)
    rather than a copy. The scheduler of a ``Delayed`` is only known when it runs."""
    if owner is None:
        return
    pid, identity = owner
    if os.getpid() != pid or (_memory_kind(store) == "object" and id(store) != identity):
        raise _not_here("the write's tasks run in another process, or on a copy of the store")


def _check_writable(store: Store) -> None:
    """Refuse, before the write takes its lock, a location that a write would fail on
    halfway: a local file, or a ``file://`` URL whose file system creates no folders."""
    if isinstance(store, LocalStore):
        root = Path(store.root)
        if root.exists() and not root.is_dir():
            raise _not_a_folder(root)
    if not store.supports_deletes:
        raise _no_deletes(store)
    # fsspec's local file system, behind zarr's asynchronous wrapper or a DirFileSystem
    fs = _unwrapped(store.fs, "")[0] if isinstance(store, FsspecStore) else None
    if getattr(fs, "auto_mkdir", True) is False and "file" in getattr(fs, "protocol", ()):
        raise MetatensorDaskError(
            f"{describe(store)}: fsspec's local file system creates no folders unless "
            "asked, so a write would fail halfway; give the path without 'file://', or "
            "pass storage_options={'auto_mkdir': True} (the command line and pipelines "
            "take fsspec's options from the environment: FSSPEC_FILE_AUTO_MKDIR=true; "
            "a file system given in a store object: LocalFileSystem(auto_mkdir=True))"
        )


def _no_deletes(store: Store) -> MetatensorDaskError:
    return MetatensorDaskError(
        f"{describe(store)} can not delete what it holds ({type(store).__name__}), "
        "which a write needs (its lock, its progress records): write to a directory, "
        "then zip it if you wish (zarr.storage.ZipStore reads it)"
    )


def refuse_metatensor_file(location: Any) -> None:
    """Refuse, before anything is read or written, a path or URL named as a metatensor
    file (``.mts``, ``.npz``): a Zarr store is a folder, which ``load``, ``verify`` and
    ``convert`` would take for a file of that name."""
    if not isinstance(location, (str, os.PathLike)):
        return
    name = os.fspath(location).rstrip("/")
    if is_metatensor_file(name):
        raise MetatensorDaskError(
            f"{name!r} names a metatensor file ({name.rsplit('.', 1)[-1]}), not a Zarr "
            "store: a Zarr store is a folder; write the file with mtd.save(path, tensor), "
            "or give the store a path ending in '.zarr'"
        )


def _local_path(location: Any) -> Path | None:
    """The folder of a location on the local file system: a path, a ``file://`` URL
    or a ``LocalStore``; ``None`` for any other."""
    if isinstance(location, LocalStore):
        return Path(_absolute_path(str(location.root)))
    if isinstance(location, os.PathLike):
        location = os.fspath(location)
    if isinstance(location, str):
        if location.startswith("file://"):
            return Path(_absolute_path(location[len("file://") :]))
        if _is_local_path(location):
            return Path(_absolute_path(location))
    return None


def new_folders(location: Any) -> list[Path]:
    """The folders of the local ``location`` that do not exist yet (the deepest first),
    which a write creates: :func:`remove_if_empty` removes them after a refusal."""
    path = _local_path(location)
    if path is None:
        return []
    missing = []
    for folder in (path.absolute(), *path.absolute().parents):
        if os.path.lexists(folder):
            break
        missing.append(folder)
    return missing


def remove_if_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (the deepest first) while they are empty: the location is as
    before a call that created them and then refused to write. A folder that another
    writer filled meanwhile is kept, and so are those above it."""
    for folder in folders:
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue
        except OSError:  # not empty (another writer's, or written), or not ours to remove
            return


def outer_store(store: Store) -> str | None:
    """The location of a Zarr store holding ``store`` (its ``zarr.json`` in a folder
    above it, or above the folder a local path leads to through symbolic links; the
    outermost, the store's root rather than a group in it), or ``None``:
    in a local folder, in a ``file://`` URL, and above the path of any other fsspec
    store (one request per folder above it)."""
    root = _local_root(store) or fsspec_folder(store)
    if root is not None:
        return _outermost_store(root) or _outermost_store(root.resolve())
    if not isinstance(store, FsspecStore):
        return None
    parts = store.path.rstrip("/").split("/")
    for end in range(1, len(parts)):
        folder = "/".join(parts[:end])
        if sync(store.fs._isfile(f"{folder}/zarr.json")):
            return str(getattr(store.fs, "sync_fs", store.fs).unstrip_protocol(folder))
    return None


def _outermost_store(folder: Path) -> str | None:
    """The outermost local folder above ``folder`` that holds a ``zarr.json``."""
    outer = [str(p) for p in folder.parents if (p / "zarr.json").is_file()]
    return outer[-1] if outer else None


def _not_a_folder(location: Any) -> MetatensorDaskError:
    return MetatensorDaskError(
        f"{location!r} is a file, not a directory (or lies in a file): a Zarr store is a "
        "directory; write the tensor to another path"
    )


def same_store(first: Store, second: Store) -> bool:
    """Whether two stores are one: the same description, or local folders that are one
    folder (given as a path or as a ``file://`` URL, through symbolic links, or a file
    system mounted at two places)."""
    if describe(first) == describe(second):
        return True
    roots = (_local_folder(first), _local_folder(second))
    if roots[0] is None or roots[1] is None:
        return False
    try:
        return os.path.samefile(roots[0], roots[1])
    except OSError:  # one does not exist (yet)
        return False


def describe(store: Store) -> str:
    """A short, stable description of a store, for messages and dask tokens: the
    directory of a local store, the URL of an fsspec store, the repr of any other."""
    if isinstance(store, LocalStore):
        return str(store.root)
    if isinstance(store, FsspecStore):
        return _fsspec_location(store.fs, store.path)
    return f"{type(store).__name__}({store})"


def _unwrapped(fs: Any, path: str) -> tuple[Any, str]:
    """The fsspec file system storing ``path`` of ``fs``, and its path there: ``fs``
    behind zarr's asynchronous wrapper, and through each ``DirFileSystem`` (paths under a
    folder of the file system it wraps)."""
    from fsspec.implementations.dirfs import DirFileSystem

    fs = getattr(fs, "sync_fs", fs)
    while isinstance(fs, DirFileSystem):
        fs, path = getattr(fs.fs, "sync_fs", fs.fs), fs._join(path)
    return fs, path


def _fsspec_location(fs: Any, path: str) -> str:
    """The URL of ``path`` on the fsspec file system ``fs`` (behind zarr's asynchronous
    wrapper or not), naming what the path is relative to: through a ``DirFileSystem``,
    the path on the file system it wraps (``file:///data/t.zarr``, not ``dir://t.zarr``
    for every one); in an archive (zip, tar), the archive too, as the chained URL that
    opens it (``zip://::file:///data/t.zip``, not ``zip://`` for every one). Two stores
    described alike are taken for one (see :func:`same_store`)."""
    from fsspec.archive import AbstractArchiveFileSystem

    fs, path = _unwrapped(fs, path)
    url = str(fs.unstrip_protocol(path))
    archive = fs.storage_options.get("fo") if isinstance(fs, AbstractArchiveFileSystem) else None
    if not isinstance(archive, str):
        return url
    # the archive's path on the file system holding it (fsspec strips its protocol)
    protocol = fs.storage_options.get("target_protocol")
    if isinstance(protocol, str) and "://" not in archive:
        archive = f"{protocol}://{archive}"
    return f"{url}::{archive}"


# -- bulk access to small objects ---------------------------------------------------------


async def _bounded(coroutines: Iterable[Any]) -> list[Any]:
    semaphore = asyncio.Semaphore(_CONCURRENCY)

    async def run(coroutine: Any) -> Any:
        async with semaphore:
            return await coroutine

    return await asyncio.gather(*(run(c) for c in coroutines))


def _local_root(store: Store) -> Path | None:
    """The directory of a writable local store, which is read and written directly:
    going through the asynchronous API costs a thread hop per file."""
    if isinstance(store, LocalStore):
        return Path(store.root)
    return None


def _local_folder(store: Store) -> Path | None:
    """The folder of a store on the local file system: a local store's, or the folder
    of a ``file://`` URL; ``None`` for other stores."""
    return _local_root(store) or fsspec_folder(store)


def _read_file(name: str) -> bytes | None:
    """The bytes of a local file (``None`` when there is none, as zarr's local store
    reads it: a folder or anything but a regular file in its place is none either), with
    plain system calls: opening thousands of tiny files (Labels, row pointers) through
    ``pathlib`` and buffered files cost twice as much."""
    opened = open_regular(name)
    if opened is None:
        return None
    descriptor, size = opened
    try:
        data = os.read(descriptor, size + 1)  # one call for a file of that size
        if len(data) == size:
            return data
        pieces = [data]  # read short, or the file changed meanwhile: read to its end
        while piece := os.read(descriptor, 2**20):
            pieces.append(piece)
        return b"".join(pieces)
    finally:
        os.close(descriptor)


def get_many(store: Store, keys: list[str]) -> list[bytes | None]:
    """The bytes stored at each key (``None`` where there is nothing)."""
    root = _local_root(store)
    if root is not None:
        return [_read_file(f"{root}/{key}") for key in keys]
    prototype = default_buffer_prototype()

    async def get(key: str) -> bytes | None:
        buffer = await store.get(key, prototype=prototype)
        return None if buffer is None else buffer.to_bytes()

    return sync(_bounded(get(key) for key in keys))


def _write_bytes(path: str, data: bytes | memoryview) -> None:
    """Write the file ``path`` so that it holds ``data``; a file with other names (hard
    links) is created anew, not written into (see :func:`~._file_writes.open_own`)."""
    descriptor = open_own(path)
    try:
        write_all(descriptor, [data])
    finally:
        os.close(descriptor)


def write_files(
    root: Path,
    items: dict[str, Any],
    write: Callable[[str, Any], None] = _write_bytes,
    waits: bool = False,
) -> None:
    """Write each file ``root/key`` with ``write(its path, items[key])``, from a few
    threads (the system calls release the GIL), each writing a run of neighbouring
    keys (files of other folders, mostly); unless the writes do not wait (``waits``
    false, as when creating files) and the first :data:`_FIRST_FILES`, written from
    the calling thread, cost it less than :data:`_SLOW_FILE` of CPU each and less
    than twice that of wall time: then the rest are written from there too. A file
    whose folder is missing creates it (see :func:`make_folders`, which creates many
    at once).

    Threads pay off where the writes wait (replacing a file on some disks) or where
    the kernel works long on them (creating a file on a disk: 20 to 70 us of CPU a
    small file on this project's test machine), on several cores. Where a file costs
    a few microseconds (a RAM disk), each system call hands the GIL to another thread
    instead: on two idle cores, 48,000 files of 500 bytes written on a RAM disk took
    0.24 s of CPU from one thread, 0.45 s from two and 0.54 to 0.79 s from four, and
    no less wall time. CPU time decides where the kernel works; wall time where the
    writes wait (a network file system: little CPU, milliseconds a file), or where
    other threads of the process hold the GIL (then threads cost no more)."""
    base = str(root)

    def write_all(keys: list[str]) -> None:
        for key in keys:
            path = f"{base}/{key}"
            try:
                write(path, items[key])
            except FileNotFoundError:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                write(path, items[key])

    keys = list(items)
    if len(keys) < 2 * _FIRST_FILES:
        write_all(keys)
        return
    if not waits:
        cpu, wall = time.thread_time(), time.perf_counter()
        write_all(keys[:_FIRST_FILES])
        keys = keys[_FIRST_FILES:]
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        if cpu < _SLOW_FILE * _FIRST_FILES and wall < 2 * _SLOW_FILE * _FIRST_FILES:
            write_all(keys)
            return
    step = -(-len(keys) // _FILE_THREADS)
    with ThreadPoolExecutor(_FILE_THREADS) as pool:
        list(pool.map(write_all, [keys[i : i + step] for i in range(0, len(keys), step)]))


def make_folders(store: Store, folders: list[str]) -> None:
    """Create the folders of a local store (parents before children, one ``mkdir``
    each), before writing the files in them; nothing for other stores, which have no
    folders."""
    root = _local_root(store)
    if root is None or store.read_only:
        return
    base = str(root)
    for folder in sorted(folders):
        path = f"{base}/{folder}"
        try:
            os.mkdir(path)
        except FileExistsError:
            pass
        except FileNotFoundError:
            os.makedirs(path, exist_ok=True)


def fsspec_folder(store: Store) -> Path | None:
    """The folder of an fsspec store on the local file system (a ``file://`` URL, or a
    ``DirFileSystem`` over that file system), whose files fsspec writes in place
    (truncated, then written); ``None`` for other stores."""
    if not isinstance(store, FsspecStore):
        return None
    fs, path = _unwrapped(store.fs, store.path)
    protocol = getattr(fs, "protocol", None)
    protocols = protocol if isinstance(protocol, (tuple, list)) else (protocol,)
    return Path(path) if "file" in protocols else None


def _replace_bytes(path: str, data: bytes | memoryview) -> None:
    """Replace the file ``path`` by one holding ``data`` at once: written to a temporary
    file (see :func:`is_temporary`) renamed over it, so that a reader sees the old file
    or the new one, and a write that fails or is killed leaves the old one whole. A
    write that fails removes its temporary file."""
    temporary = f"{path}.{uuid.uuid4().hex}.partial"
    try:
        _write_bytes(temporary, data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def set_many(store: Store, items: dict[str, bytes | memoryview], atomic: bool = False) -> None:
    """Store every ``key: bytes`` item, concurrently.

    Local files are written directly unless ``atomic``: readers only trust a store
    once its root document says it is complete, and a resumed write rewrites them.
    With ``atomic``, each item replaces the stored one at once: in a folder given by a
    ``file://`` URL too (written aside, then renamed over it), where fsspec would
    otherwise write the file in place.
    """
    root = _local_root(store)
    if root is not None and not atomic and not store.read_only:
        write_files(root, items)
        return
    folder = fsspec_folder(store)
    if folder is not None and atomic and not store.read_only:
        write_files(folder, items, _replace_bytes, waits=True)
        return
    buffer = default_buffer_prototype().buffer
    sync(_bounded(store.set(key, buffer.from_bytes(value)) for key, value in items.items()))


def list_prefix(store: Store, prefix: str) -> list[str]:
    """Every key starting with ``prefix`` (for a local store: every file under the
    folder ``prefix``, through symbolic links to folders, as reads find them)."""
    if isinstance(store, LocalStore):
        return _local_keys(str(store.root), prefix)

    async def collect() -> list[str]:
        return [key async for key in store.list_prefix(prefix)]

    return sync(collect())


def _local_keys(root: str, prefix: str) -> list[str]:
    """The keys of the files under the folder ``prefix`` of the local store at ``root``.

    A member that is a symbolic link to a folder is listed through (zarr's listing
    skips it, and the node and chunks that reads find in it would seem lost). A folder
    is listed through links once, the store's own never, so that links in a loop end.
    """
    keys: list[str] = []
    followed = {os.path.realpath(root)}

    def walk(folder: str, above: str) -> None:
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            key = above + entry.name
            try:
                is_folder = entry.is_dir()
            except OSError:  # a link the system can not resolve (a loop): a file whose
                keys.append(key)  # read reports it, rather than a failed listing
                continue
            if is_folder:
                if entry.is_symlink():
                    target = os.path.realpath(entry.path)
                    if target in followed:
                        continue
                    followed.add(target)
                walk(entry.path, f"{key}/")
            elif entry.is_file():
                keys.append(key)

    top = prefix.rstrip("/")
    walk(os.path.join(root, top) if top else root, f"{top}/" if top else "")
    return keys


def list_root(store: Store) -> list[str]:
    """The names of the entries at the root of ``store`` (files and folders)."""

    async def collect() -> list[str]:
        return [name async for name in store.list_dir("")]

    return sync(collect())


def delete_prefix(store: Store, prefix: str) -> None:
    """Delete every key under ``prefix`` (all keys for ``""``)."""
    if prefix:
        sync(store.delete_dir(prefix.rstrip("/")))
    else:
        sync(store.clear())


# -- arrays --------------------------------------------------------------------------------


#: What zarr and its codecs raise for a chunk that does not decode: checksums and sizes
#: (``ValueError``), zstd and blosc (``RuntimeError``), and gzip streams cut short or
#: damaged (``EOFError``, ``zlib.error``, ``OSError``).
_UNDECODABLE = (ValueError, RuntimeError, OSError, TypeError, IndexError, EOFError, zlib.error)


class ArrayRef:
    """A stored array as a task needs it: store, path and metadata document.

    The ``zarr.Array`` is built from the document on first use (no metadata read), and
    rebuilt after unpickling in another process. Arrays are written with every chunk
    stored, all-zero ones too, and read through a :class:`CheckedStore`, which refuses
    missing chunks unless ``missing_ok`` (format 1 stores with a compressor or
    sharding, which skipped all-zero chunks).
    """

    __slots__ = (
        "_array",
        "_identity",
        "_reader",
        "document",
        "missing_ok",
        "path",
        "store",
        "store_id",
        "strict",
    )

    def __init__(
        self,
        store: Store,
        path: str,
        document: dict[str, Any],
        missing_ok: bool = False,
        store_id: str | None = None,
        strict: bool = False,
    ):
        self.store = store
        self.path = path
        self.document = document
        self.missing_ok = missing_ok
        #: The store's id when opened (format 4 values arrays, see
        #: :mod:`.zarr_identity`): each chunk file read is checked against the chunk
        #: table of ``document``.
        self.store_id = store_id
        #: see :class:`~.zarr_identity.ChunkIdentity`
        self.strict = strict
        self._array: Array | None = None
        self._reader: Array | None = None
        self._identity: ChunkIdentity | None = None

    def identity(self) -> ChunkIdentity | None:
        """The check of the chunk files read against the table of ``document``
        (``None`` without one)."""
        if self._identity is None and self.store_id is not None and records_table(self.document):
            self._identity = ChunkIdentity(
                self.store,
                self.path,
                self.document,
                self.store_id,
                describe(self.store),
                self.strict,
            )
        return self._identity

    def array(self) -> Array:
        """The array, for writing: every chunk is stored, all-zero ones too."""
        if self._array is None:
            self._array = Array(
                # zarr types the metadata document as a TypedDict, ours is a plain dict
                AsyncArray(  # type: ignore[call-overload]
                    metadata=self.document,
                    store_path=StorePath(self.store, self.path),
                    config={"write_empty_chunks": True},
                )
            )
        return self._array

    def async_array(self) -> AsyncArray:
        return self.array().async_array

    def reader(self) -> Array:
        """The array, for reading: a missing chunk is a :class:`DamagedStoreError`."""
        if self._reader is None:
            store = CheckedStore(
                self.store,
                self.path,
                self.document,
                describe(self.store),
                self.identity(),
                self.missing_ok,
            )
            self._reader = Array(
                AsyncArray(  # type: ignore[call-overload]
                    metadata=self.document, store_path=StorePath(store, self.path)
                )
            )
        return self._reader

    def read(self, region: Any) -> np.ndarray:
        """``region`` of the array; a chunk that does not decode (checksum, size) is a
        :class:`DamagedStoreError` naming the array and the rows.

        A sharded array is read again once before its chunk is called damaged: an append
        replaces the last shard of an array (atomically), and a read between the shard's
        index and one of its chunks can see the index of one file and the bytes of the
        other.

        Damage found while the store's id is still the one opened is read again once
        too: a whole write of the same tensor gives the store the same id, and one that
        ran during the read (its chunks removed, then written again) leaves the store
        as it was opened once it ends.
        """
        try:
            return self._read_told(region)
        except DamagedStoreError:
            return self._read_told(region)

    def _read_told(self, region: Any) -> np.ndarray:
        with self.overwrite_told(region):
            if shard_index_entries(self.document) is not None:
                try:
                    return np.asarray(self.reader()[region])
                except (DamagedStoreError, *_UNDECODABLE):
                    pass  # read again, below
            return self._read_checked(region)

    def overwrite_told(self, region: Any) -> AbstractContextManager[None]:
        """Around a read of ``region``: damage found in a store overwritten since this
        array was opened (format 4, see :func:`~.zarr_identity.overwrite_told`) is
        raised as such."""
        what = f"the region ({_region_name(region)}) of the array '{self.path}'"
        return overwrite_told(self.store, describe(self.store), self.store_id, what)

    def _read_checked(self, region: Any) -> np.ndarray:
        try:
            return np.asarray(self.reader()[region])
        except MetatensorDaskError:  # damage, or a store overwritten since opened
            raise
        except _UNDECODABLE as error:
            raise damaged(
                describe(self.store),
                f"{_region_name(region)} of the array '{self.path}' can not be decoded "
                f"({type(error).__name__}: {error})",
            ) from None

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            ArrayRef,
            (self.store, self.path, self.document, self.missing_ok, self.store_id, self.strict),
        )

    def __dask_tokenize__(self) -> Any:
        return (
            "ArrayRef",
            describe(self.store),
            self.path,
            json.dumps(self.document, sort_keys=True),
            self.missing_ok,
            self.store_id,
            self.strict,
        )


def _region_name(region: Any) -> str:
    """The rows of ``region`` (of an array), for messages."""
    rows = region[0] if isinstance(region, tuple) else region
    return f"rows {rows.start}:{rows.stop}" if isinstance(rows, slice) else "its chunks"


def read_arrays(refs: list[ArrayRef]) -> list[np.ndarray]:
    """The whole content of each array; Labels and row pointers are decoded here, in
    bulk, other arrays read through zarr (see :meth:`ArrayRef.read`)."""
    return cast(list[np.ndarray], _read_arrays(refs, skip_damaged=False))


def read_healthy_arrays(refs: list[ArrayRef]) -> list[np.ndarray | None]:
    """:func:`read_arrays`, with ``None`` for each array whose read raised a
    :class:`MetatensorDaskError` (a chunk missing or damaged): read alone, it raises
    that error, for the caller to raise when that array is needed."""
    return _read_arrays(refs, skip_damaged=True)


def _read_arrays(refs: list[ArrayRef], skip_damaged: bool) -> list[np.ndarray | None]:
    results: list[np.ndarray | None] = [None] * len(refs)
    # maps of many blocks share documents (see zarr_layout.ArrayInfo): what follows
    # from one is worked out once
    formats: dict[int, tuple[ChunkFormat | None, list[str]]] = {}
    for ref in refs:
        if id(ref.document) not in formats:
            encoding = ChunkFormat.of(ref.document)
            keys = [] if encoding is None else chunk_keys(ref.document)
            formats[id(ref.document)] = (encoding, keys)
    plain = [i for i, ref in enumerate(refs) if formats[id(ref.document)][0] is not None]
    flat = [f"{refs[i].path}/{key}" for i in plain for key in formats[id(refs[i].document)][1]]
    raw = iter(get_many(refs[0].store, flat) if flat else [])
    where = describe(refs[0].store) if refs else ""
    for i in plain:
        encoding, keys = formats[id(refs[i].document)]
        chunks = [next(raw) for _ in keys]
        try:
            results[i] = decode_chunks(chunks, refs[i].document, refs[i].path, where, encoding)
            _check_identity(refs[i], chunks)
        except MetatensorDaskError:
            if not skip_damaged:
                raise
    for i, ref in enumerate(refs):
        if formats[id(ref.document)][0] is None:
            try:
                results[i] = read_region(ref, tuple(slice(0, n) for n in ref.document["shape"]))
            except MetatensorDaskError:
                if not skip_damaged:
                    raise
    return results


def _check_identity(ref: ArrayRef, chunks: list[Any], first: int = 0) -> None:
    """Check each chunk of ``ref`` decoded from ``chunks`` (from its chunk ``first``)
    against its table (see :class:`~.zarr_identity.ChunkIdentity`), if it has one."""
    identity = ref.identity()
    if identity is not None:
        for index, data in enumerate(chunks, start=first):
            identity.check(index, last_crc(data), memoryview(data)[:-4])


def plain_chunks(
    path: str,
    document: dict[str, Any],
    values: np.ndarray,
    first: int = 0,
    chunks: ChunkFormat | None = None,
) -> dict[str, memoryview]:
    """The encoded chunks of a plain array (see :func:`is_plain`), by store key;
    ``chunks`` is the format of its chunks, when known."""
    encoded = encode_chunks(values, document, first, chunks)
    return {f"{path}/{key}": data for key, data in encoded.items()}


def read_region(ref: ArrayRef, region: tuple[slice, ...]) -> np.ndarray:
    """A dask task: one region of a stored array."""
    if any(s.stop <= s.start for s in region):
        shape = tuple(max(s.stop - s.start, 0) for s in region)
        return np.empty(shape, dtype=np.dtype(ref.document["data_type"]))
    return ref.read(region)


def _read_files(store: Store, keys: list[str]) -> list[Any]:
    """The content of each key; local files are read into writable buffers (so that
    the arrays viewing them are writable, with no copy)."""
    if not isinstance(store, LocalStore):
        return get_many(store, keys)
    base = str(store.root)
    return read_whole_files([f"{base}/{key}" for key in keys])


def read_plain_region(ref: ArrayRef, region: tuple[slice, ...]) -> np.ndarray:
    """Rows of a stored array with plain codecs (see
    :func:`~metatensor_dask.io.zarr_codecs.is_plain`), decoded here from its chunk files
    rather than through zarr's codec pipeline, which copies every chunk twice more: the
    task of a reader's chunk, or the stored rows of the partial chunk an append starts in."""
    return read_plain_regions([(ref, region)])[0]


def read_plain_regions(reads: list[tuple[ArrayRef, tuple[slice, ...]]]) -> list[np.ndarray]:
    """:func:`read_plain_region` of each ``(ref, region)`` (arrays of one store), their
    chunk files fetched together: concurrently from stores other than local ones."""
    if not reads:
        return []
    plans = [_plain_plan(ref, region) for ref, region in reads]
    raw = iter(_read_files(reads[0][0].store, [key for _, keys in plans for key in keys]))
    results = []
    for (ref, region), (chunks, keys) in zip(reads, plans, strict=True):
        if keys:
            results.append(_decoded_region(ref, region, [next(raw) for _ in keys], chunks))
        else:
            results.append(read_region(ref, region))
    return results


def _plain_plan(ref: ArrayRef, region: tuple[slice, ...]) -> tuple[ChunkFormat | None, list[str]]:
    """The chunk format of a plain array, and the keys of the chunks holding ``region``
    of it; no keys (nor format) for an empty region."""
    start, stop = region[0].start, region[0].stop
    if stop <= start:
        return None, []
    for axis in region[1:]:
        if axis.stop <= axis.start:
            return None, []
    chunks = ChunkFormat.of(ref.document)
    if chunks is None:
        raise MetatensorDaskError(f"the chunks of the array '{ref.path}' are not plain")
    rows, ndim = chunks.shape[0], len(chunks.shape)
    indices = range(start // rows, (stop - 1) // rows + 1)
    return chunks, [f"{ref.path}/{chunk_key(i, ndim)}" for i in indices]


def _decoded_region(
    ref: ArrayRef, region: tuple[slice, ...], raw: list[Any], chunks: ChunkFormat | None
) -> np.ndarray:
    """``region`` of a plain array from the content of its chunks (see
    :func:`_plain_plan`), each checked: present, its size and checksum, and its place
    in the chunk table."""
    start, stop = region[0].start, region[0].stop
    try:
        rows_read = decode_rows(
            raw, ref.document, ref.path, describe(ref.store), start, stop, chunks
        )
    except DamagedStoreError:
        # the overwrite context and its message made only then: a group
        # decodes a thousand arrays
        with ref.overwrite_told(region):
            raise
    # each chunk decoded: present, its size and checksum right
    first = start // int(ref.document["chunk_grid"]["configuration"]["chunk_shape"][0])
    _check_identity(ref, raw, first)
    return rows_read


def read_labels(store: Store, infos: list[layout.ArrayInfo]) -> list[Labels]:
    """Labels from their arrays, reading each distinct digest once, concurrently, and
    checked against their digest (see :func:`checked_labels`)."""
    first: dict[Any, int] = {}
    for i, info in enumerate(infos):
        first.setdefault((info.digest, tuple(info.names)) if info.digest else i, i)
    unique = sorted(set(first.values()))
    values = read_arrays([ArrayRef(store, infos[i].path, infos[i].document) for i in unique])
    loaded = {}
    for i, array in zip(unique, values, strict=True):
        info = infos[i]
        loaded[i] = checked_labels(describe(store), info.path, info.names, array, info.digest)
    return [
        loaded[first[(info.digest, tuple(info.names)) if info.digest else i]]
        for i, info in enumerate(infos)
    ]


#: The name of the temporary file of an atomic write (``<name>.<uuid4 hex>.partial``,
#: renamed over ``<name>`` once whole): ours, and zarr's local stores' (whose
#: ``<name>`` lacks the file's last suffix).
_TEMPORARY = re.compile(r".+\.[0-9a-f]{32}\.partial")


def is_temporary(name: str) -> bool:
    """Whether the file name ``name`` (without folder) is that of a temporary file of an
    atomic write."""
    return _TEMPORARY.fullmatch(name) is not None


def remove_temporaries(root: Path) -> list[str]:
    """Remove the temporary files of atomic writes (see :func:`is_temporary`) anywhere
    in the local store at ``root``; returns their keys.

    Only for a writer holding the store's lock, that took it over from a writer gone
    (killed) before it renamed them: no live writer owns them then.
    """
    removed = []
    for folder, _, files in os.walk(root):
        for name in files:
            if is_temporary(name):
                path = Path(folder, name)
                path.unlink(missing_ok=True)
                removed.append(path.relative_to(root).as_posix())
    return removed


def read_nodes(
    store: Store, invalid: dict[str, str] | None = None, temporaries: list[str] | None = None
) -> dict[str, Any]:
    """Every node document of a store, for stores without inline (consolidated) metadata.

    A document that is not valid JSON is a :class:`DamagedStoreError`, or with
    ``invalid``, recorded there (its node's path: the JSON error) and left out. The keys
    of temporary files of atomic writes (see :func:`is_temporary`) are appended to
    ``temporaries`` when given.
    """
    listed = list_prefix(store, "")
    if temporaries is not None:
        temporaries.extend(key for key in listed if is_temporary(key.rpartition("/")[2]))
    keys = [
        key for key in listed if key.endswith("/zarr.json") and not key.startswith(PROGRESS_PREFIX)
    ]
    nodes = {}
    for key, raw in zip(keys, get_many(store, keys), strict=True):
        if raw is not None:
            try:
                nodes[key[: -len("/zarr.json")]] = json.loads(raw)
            except ValueError as error:
                if invalid is None:
                    raise damaged(describe(store), f"'{key}' is not valid JSON ({error})") from None
                invalid[key[: -len("/zarr.json")]] = str(error)
    return nodes
