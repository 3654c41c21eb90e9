"""One writer per store: a lock file at the root of a Zarr store.

The lock (``.lock``, JSON) names its holder: owner (user), host, pid, start time, a
heartbeat that a daemon thread of the holder refreshes, and a write id. In local
directories it is taken with an atomic create of the whole file (written aside, then
hard-linked to ``.lock``, which fails when a lock exists), so that no killed writer leaves
an empty lock behind; the copies written aside by writers killed before they removed them
are removed by the next writer to take the lock, once older than the lock timeout; the
temporary files of atomic writes (``*.<id>.partial``) that a killed writer had not
renamed yet are removed by the writer taking its lock over. Other
stores (fsspec URLs, memory stores) have no atomic create: there the lock is written,
then read back, and the write id is checked again before the completion marker is
written, so that of two writers racing for such a store at most one marks it complete.

A lock is *stale* when its holder is gone: same host (and pid namespace: another
container's processes are told by their heartbeat only) and no process with its pid, this
process but no write of it holding the lock (a call interrupted by ``KeyboardInterrupt``
before it deleted it), or a heartbeat older than the ``metatensor_dask.lock-timeout``
setting; a local lock file that can not be read (left by a writer killed while it wrote
it, where hard links are not available) once it was last written longer ago than that.
``resume=True`` (to finish the write) and ``mode="w"`` (to start over) take a stale lock
over; other writers get a :class:`StoreLockedError` saying how to proceed.
"""

from __future__ import annotations

import contextlib
import contextvars
import getpass
import json
import math
import os
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dask.utils import parse_timedelta

from .. import config
from ..errors import (
    IncompleteStoreError,
    MetatensorDaskError,
    MetatensorDaskWarning,
    StoreLockedError,
)
from ._file_reads import read_whole
from ._file_writes import NEW_FILE_MODE, no_room, write_all
from ._zarr_internals import sync
from .zarr_layout import APPEND_KEY
from .zarr_store import _local_root as local_root
from .zarr_store import fsspec_folder, get_many, remove_temporaries, set_many

if TYPE_CHECKING:
    from zarr.abc.store import Store

__all__ = [
    "APPEND_COMMAND",
    "LOCK_KEY",
    "StoreLock",
    "WriteId",
    "append_command",
    "incomplete",
    "left_lock",
    "locked_as",
    "raise_if_out_of_room",
    "released_on_failure",
    "timeout",
    "unfinished_write",
]

#: The key of the lock at the root of a store.
LOCK_KEY = ".lock"
#: The lock file's size (a multiple of it for the rare larger documents, see
#: :meth:`Holder.encode`).
_LOCK_BYTES = 4096
#: What stands for the heartbeat in a lock's JSON until it is written with fixed width.
_HEARTBEAT_MARK = "\0heartbeat\0"
#: How long a writer without atomic create waits before reading its lock back.
_CONFIRM_SECONDS = 0.2
#: Locks of ``compute=False`` writes of this process, by write id, until they end.
_DELAYED: dict[str, StoreLock] = {}
#: The write ids of this process's locks whose write goes on: from the moment a writer
#: tries to take one until its heartbeat is stopped (the write ended, or it was
#: interrupted) or finds it released by a final task or taken over (a heartbeat that
#: could not refresh it leaves it here: its write goes on). A lock
#: file naming this process and a write id not here was left by a call that was
#: interrupted (``KeyboardInterrupt``) before it could delete it: it is stale.
_LIVE: set[str] = set()
#: The command that takes the locks of this context (see :func:`locked_as`).
_COMMAND: contextvars.ContextVar[str] = contextvars.ContextVar(
    "metatensor_dask_lock_command", default="to_zarr"
)
#: The locks handed over inside :func:`released_on_failure` (``None`` outside).
_WATCHED: contextvars.ContextVar[list[StoreLock] | None] = contextvars.ContextVar(
    "metatensor_dask_watched_locks", default=None
)


#: How to finish or give up an interrupted append, once its writer is gone.
_APPEND_REMEDY = (
    "to finish its append pass to_zarr(..., append_dim='samples', resume=True) with the "
    "same tensor and renumber, to give it up call discard_append; both take the lock over"
)


#: The shortest ``lock-timeout``, in seconds. A lock must stay fresh while its writer
#: confirms it (on a store without atomic create, :data:`_CONFIRM_SECONDS` before the
#: heartbeat starts) and until the first heartbeat (a fifth of the timeout later), with
#: as long again to spare for a writer slowed down: shorter, another writer could find
#: the lock of a live holder stale and take it.
SHORTEST_TIMEOUT = 0.5


def timeout() -> float:
    """The ``lock-timeout`` setting, in seconds.

    Raises
    ------
    MetatensorDaskError
        For a value that is not a duration (a boolean, a word...), or that is not a
        finite number of seconds of at least :data:`SHORTEST_TIMEOUT`.
    """
    value = config.get("lock-timeout")
    seconds = None
    if not isinstance(value, bool):
        try:
            seconds = parse_timedelta(value, default="seconds")
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
            seconds = None
    if seconds is None or not SHORTEST_TIMEOUT <= seconds < math.inf:
        raise MetatensorDaskError(
            f"invalid setting metatensor_dask.lock-timeout={value!r}: use a duration of at "
            f"least {SHORTEST_TIMEOUT:g} s, such as '5 minutes' or a number of seconds (a "
            "holder refreshes its lock every fifth of it: a shorter one would let another "
            "writer find a live lock stale)"
        )
    return float(seconds)


@dataclass(frozen=True)
class Holder:
    """What a lock file says about the writer that holds it."""

    owner: str
    host: str
    pid: int
    start: float
    heartbeat: float
    write_id: str
    command: str = "to_zarr"
    """What writes: ``to_zarr`` (also the lock files written before the command was
    recorded), ``write_batches``, ``discard_append`` or a command line."""
    pid_space: str = ""
    """The pid namespace of the writer (see :func:`pid_space`), ``""`` when unknown (a
    lock file written before it was recorded): containers on one host share its name
    but number their processes each their own way."""
    pid_start: str = ""
    """When the writer's process started (see :func:`process_start`), ``""`` when unknown
    (a lock file written before it was recorded): a live process of that pid which
    started at another time took the pid of a writer gone."""

    @classmethod
    def parse(cls, raw: bytes | None) -> Holder | None:
        """The holder in a lock file, ``None`` for no file or an unreadable one (times
        that are not finite numbers too: a heartbeat ``NaN`` would never grow old)."""
        if raw is None:
            return None
        try:
            fields = json.loads(raw)
            return cls(
                str(fields["owner"]),
                str(fields["host"]),
                int(fields["pid"]),
                _finite(fields["start"]),
                _finite(fields["heartbeat"]),
                str(fields["write_id"]),
                str(fields.get("command", "to_zarr")),
                str(fields.get("pid_space", "")),
                str(fields.get("pid_start", "")),
            )
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
            return None

    def encode(self) -> bytes:
        """The lock file's content: the JSON document, padded with spaces to a multiple
        of :data:`_LOCK_BYTES`.

        Where the lock is written in place (an fsspec ``file://`` URL: the file is
        truncated, then written), two writers racing both write the whole file in one
        call; of equal sizes, the last one covers the other's whole, and the lock reads
        as one of them, never as one document followed by the tail of a longer one.

        The heartbeat is written with six decimals, so that every refresh of one lock
        changes the same bytes of the file and nothing else (a local lock is refreshed
        in place: a read at that moment may mix two heartbeats, never two documents)."""
        fields = {**asdict(self), "heartbeat": _HEARTBEAT_MARK}
        document = json.dumps(fields).replace(
            json.dumps(_HEARTBEAT_MARK), f"{self.heartbeat:.6f}", 1
        )
        encoded = document.encode()
        return encoded.ljust(-(-len(encoded) // _LOCK_BYTES) * _LOCK_BYTES)

    def describe(self) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.start))
        age = max(time.time() - self.heartbeat, 0.0)
        return (
            f"{self.command} of user {self.owner} on host {self.host}, pid {self.pid}, "
            f"started {started}, last heartbeat {age:.0f} s ago"
        )

    def remedy(self, appending: bool) -> str:
        """How to finish (or give up) the write of this holder, once it is gone;
        ``appending``: the store records an interrupted append."""
        if self.command == "write_batches":
            return (
                "to finish its run call write_batches(..., resume=True) with the same "
                "function, items, batch_size and run_id, which takes the lock over and "
                "continues after the last committed batch"
            )
        if self.command == "discard_append":
            return (
                "call discard_append again to finish giving the append up, or finish the "
                "append with to_zarr(..., append_dim='samples', resume=True) and its "
                "tensor; both take the lock over"
            )
        if self.command.startswith("metatensor-dask "):
            if self.command.endswith("--append"):
                other = "to give it up call metatensor_dask.discard_append on the store"
            elif self.command.startswith("metatensor-dask convert"):
                other = "to start over run it with --overwrite"
            else:
                other = "to start over delete the store"
            job = ""
            if self.command == "metatensor-dask run":
                job = " (a job of metatensor-dask submit: submit it again with --resume)"
            return (
                f"to finish its write run the same command ({self.command}) with "
                f"--resume{job}, {other}; both take the lock over"
            )
        if appending or self.command == APPEND_COMMAND:
            return _APPEND_REMEDY
        return (
            "to finish its write pass resume=True with the same tensor (and the same "
            "append_dim for an append), to start over use mode='w'; both take the lock "
            "over"
        )

    def here(self) -> bool:
        """Whether the holder runs on this host, among the processes this one sees (the
        same pid namespace): only then does its pid tell whether it is alive, or this
        process."""
        if self.host != socket.gethostname():
            return False
        return self.pid_space in ("", pid_space())

    def stale_reason(self, limit: float) -> str | None:
        """Why the holder is gone, or ``None`` when it may still be writing."""
        if self.here():
            if self.pid == os.getpid():
                if self.write_id in _DELAYED:
                    return "it belongs to a to_zarr(..., compute=False) of this process"
                if self.write_id in _LIVE:
                    return None
                return (
                    "it names this process, where no write holds it any more (the call "
                    "that took it was interrupted)"
                )
            if not _alive(self.pid):
                return f"no process {self.pid} runs on this host"
            if self.pid_start and process_start(self.pid) not in ("", self.pid_start):
                return (
                    f"process {self.pid} of this host started at another time than the "
                    "writer: the writer is gone and its pid was given to another process"
                )
        age = time.time() - self.heartbeat
        if age > limit:
            return f"its heartbeat is {age:.0f} s old (lock-timeout: {limit:.0f} s)"
        return None


def _finite(value: Any) -> float:
    """``value`` as a finite float; ``ValueError`` for anything else (``NaN``, inf)."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"not a finite time: {value!r}")
    return number


def _announce_wait(where: str, holder: Holder, seconds: float) -> None:
    """Warn that taking over the lock of ``holder``, on another host, waits ``seconds``."""
    warnings.warn(
        f"{where} is locked by {holder.describe()}, on another host or container: whether "
        f"it still runs can not be told from here, so this write waits up to {seconds:.0f} s "
        "for its heartbeat to be older than the lock-timeout setting, then takes the lock "
        "over (or stops, if the heartbeat moves: the writer is alive). If that writer is "
        f"surely gone (its job cancelled or its node down), delete '{where}/{LOCK_KEY}' and "
        "run this again to go on at once",
        MetatensorDaskWarning,
        stacklevel=2,
    )


def process_start(pid: int | None = None) -> str:
    """When process ``pid`` (this one by default) started, in clock ticks since the boot
    (the ``starttime`` of ``/proc/<pid>/stat`` on Linux, which a pid given to another
    process changes), ``""`` where it can not be told: no ``/proc``, or one that numbers
    processes otherwise than this process sees them (another pid namespace's)."""
    try:
        with open("/proc/self/stat" if pid is None else f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return ""
    number, _, _ = stat.partition(b" ")
    # the fields after the command name, which may hold spaces and parentheses
    fields = stat[stat.rfind(b")") + 2 :].split()
    if number != str(os.getpid() if pid is None else pid).encode() or len(fields) < 20:
        return ""
    return fields[19].decode()


def pid_space() -> str:
    """The pid namespace of this process (``"pid:[<inode>]"`` on Linux, where each
    container may have its own), ``""`` where it can not be told."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user
        return True
    return True


@dataclass(frozen=True)
class WriteId:
    """What a task needs to check and release the lock of its write (picklable)."""

    store: Store
    where: str
    write_id: str

    def holder(self) -> Holder | None:
        return Holder.parse(get_many(self.store, [LOCK_KEY])[0])

    def check(self, stored: bool = True) -> None:
        """Raise :class:`StoreLockedError` unless this write still holds the lock.

        Parameters
        ----------
        stored
            Whether this write may have stored chunks already (``False`` for the check
            a storing task makes before it stores anything).
        """
        holder = self.holder()
        if holder is not None and holder.write_id == self.write_id:
            return
        left = (
            "the store is left incomplete and may mix both writes"
            if stored
            else "this write stored nothing more"
        )
        if holder is None:
            raise StoreLockedError(
                f"{self.where} is no longer locked by this write: the write ended and "
                "released its lock (the Delayed of to_zarr(..., compute=False) writes once, "
                "and this one already ran: call to_zarr again to write again), another "
                f"writer took the lock over and finished, or the lock was deleted; {left}"
            )
        raise StoreLockedError(
            f"another writer took the lock of {self.where} while this write ran (it is "
            f"now held by {holder.describe()}): {left}; make sure only one job writes "
            "there, then write it again with mode='w'"
        )

    def holds(self) -> bool:
        """Whether this write holds the lock."""
        holder = self.holder()
        return holder is not None and holder.write_id == self.write_id

    def release(self) -> None:
        """Delete the lock if this write holds it."""
        if not self.holds():
            return
        root = local_root(self.store)
        if root is not None:
            try:
                os.unlink(root / LOCK_KEY)
            except FileNotFoundError:
                pass
        else:
            sync(self.store.delete(LOCK_KEY))


class StoreLock:
    """The lock of one write: taken by :meth:`acquire`, refreshed by a daemon thread,
    given back by :meth:`release` (or by the final task of a ``compute=False`` write);
    stale after ``limit`` seconds without heartbeat."""

    def __init__(self, store: Store, where: str, limit: float, command: str | None = None):
        self.ref = WriteId(store, where, uuid.uuid4().hex)
        self._root = local_root(store)
        self._limit = limit
        self._stop = threading.Event()
        # held by the heartbeat while it refreshes the lock, and by the release while
        # it deletes it: a refresh started before a release never writes it again after
        self._writing = threading.Lock()
        self._thread: threading.Thread | None = None
        now = time.time()
        self._holder = Holder(
            getpass.getuser(),
            socket.gethostname(),
            os.getpid(),
            now,
            now,
            self.ref.write_id,
            _COMMAND.get() if command is None else command,
            pid_space(),
            process_start(),
        )

    # -- taking the lock ------------------------------------------------------------------

    def acquire(self, takeover: bool) -> None:
        """Take the lock, or raise :class:`StoreLockedError` naming its holder.

        Parameters
        ----------
        takeover
            Take over a stale lock (``resume=True`` or ``mode="w"``).

        A lock that finds no room to be written (a full disk or quota, a file size
        limit) raises an ``OSError`` of the same ``errno`` saying that nothing was
        written (see :func:`raise_if_out_of_room`).

        Whatever interrupts it (a ``KeyboardInterrupt`` too) leaves no lock of this
        write behind.
        """
        _LIVE.add(self.ref.write_id)
        try:
            self._take(takeover)
            self._thread = threading.Thread(
                target=self._beat, name=f"metatensor-dask lock {self.ref.where}", daemon=True
            )
            self._thread.start()
        except BaseException:
            self._stop.set()
            _LIVE.discard(self.ref.write_id)
            with self._writing, contextlib.suppress(Exception):
                self.ref.release()
            raise

    def _take(self, takeover: bool) -> None:
        """Write the lock file (see :meth:`acquire`)."""
        try:
            if self._root is not None:
                self._acquire_local(self._root, takeover)
            else:
                self._acquire_other(takeover)
        except FileNotFoundError as error:
            if self._root is not None:
                raise
            raise MetatensorDaskError(
                f"{self.ref.where} can not be written ({error}): create the bucket or "
                "folder that is to hold it, then run it again; nothing was written"
            ) from None
        except OSError as error:
            raise_if_out_of_room(error, self.ref.where, "nothing was written: run it again")
            raise

    def _refuse(self, holder: Holder | None, takeover: bool) -> None:
        """Raise unless ``holder`` is stale and ``takeover``; then forget its Delayed."""
        where = self.ref.where
        if holder is None:
            raise StoreLockedError(
                f"{where} is locked by a writer whose lock file '{LOCK_KEY}' can not be read "
                "(it is being written, or damaged): try again; if no other job writes there, "
                f"delete '{LOCK_KEY}' from the store"
            )
        reason = holder.stale_reason(self._limit)
        if reason is None:
            raise StoreLockedError(
                f"{where} is being written by another writer ({holder.describe()}): only one "
                "writer at a time may write a store; wait for it to finish, or write to "
                "another store"
            )
        pending = _DELAYED.get(holder.write_id)
        if not takeover and pending is not None:
            raise StoreLockedError(
                f"{where} is being written by a to_zarr(..., compute=False) of this process "
                "whose Delayed has not run: compute it first (dask.compute), then write "
                "again; or take its write over, with resume=True and its tensor (to finish "
                "it now) or mode='w' (to start over), after which its Delayed fails"
            )
        if not takeover:
            appending = get_many(self.ref.store, [APPEND_KEY])[0] is not None
            raise StoreLockedError(
                f"{where} is locked by a writer that looks gone ({holder.describe()}; "
                f"{reason}): {holder.remedy(appending)}"
            )
        if pending is not None:
            _DELAYED.pop(holder.write_id, None)
            pending.stop()

    def _wait_if_remote(self, holder: Holder) -> Holder | None:
        """A live-looking holder on another host (or in another container of this one),
        when taking over: wait until its heartbeat is older than the timeout (a requeued
        job restarts while the lock of the killed one still looks fresh), unless it
        changes meanwhile. Returns the holder as it is then (``None`` if released)."""
        if holder.here() or holder.stale_reason(self._limit):
            return holder
        deadline = holder.heartbeat + self._limit + 0.1
        _announce_wait(self.ref.where, holder, deadline - time.time())
        while time.time() < deadline:
            time.sleep(min(max(deadline - time.time(), 0.0), self._limit / 10))
            current = self.ref.holder()
            if current != holder:
                return current  # refreshed (alive), released or taken by another
        return holder

    def _refuse_unreadable(self, age: float, takeover: bool) -> None:
        """Raise unless a local lock file that can not be read, last written ``age``
        seconds ago, is stale and ``takeover``."""
        where, limit = self.ref.where, self._limit
        if age <= limit:
            raise StoreLockedError(
                f"{where} is locked by a writer whose lock file '{LOCK_KEY}' can not be read "
                f"(last written {age:.0f} s ago: it is being written, or its writer was "
                f"killed): try again; once it is older than the lock-timeout ({limit:.0f} s), "
                "resume=True (--resume) or mode='w' take it over"
            )
        if not takeover:
            # an interrupted append: mode='w' would delete the rows it appends to
            appending = get_many(self.ref.store, [APPEND_KEY])[0] is not None
            remedy = (
                _APPEND_REMEDY
                if appending
                else "to finish its write pass resume=True (--resume) with the same tensor, "
                "to start over use mode='w'; both take the lock over"
            )
            raise StoreLockedError(
                f"{where} is locked by a writer that looks gone (its lock file '{LOCK_KEY}' "
                f"can not be read and was last written {age:.0f} s ago; lock-timeout: "
                f"{limit:.0f} s): {remedy}"
            )

    def _acquire_local(self, root: Path, takeover: bool) -> None:
        root.mkdir(parents=True, exist_ok=True)
        path = root / LOCK_KEY
        aside = root / f"{LOCK_KEY}.{self.ref.write_id}"
        took_over = False
        for _ in range(20):
            try:
                created = _create(path, self._holder.encode(), root / f"{aside.name}.tmp")
            except FileNotFoundError:
                # a writer refused at this new location removed the folder it had made,
                # which this one found made
                root.mkdir(parents=True, exist_ok=True)
                continue
            if created:
                _remove_left_over(root, self._limit)
                if took_over:
                    # the lock of a writer gone: the temporary files it had not renamed
                    # yet are left for good (a writer that fails removes its own)
                    remove_temporaries(root)
                return
            raw = _read(path)
            if raw is None:
                continue  # released meanwhile: try again
            holder = Holder.parse(raw)
            if holder is None:  # being written by its creator (without a hard link)
                time.sleep(0.05)
                raw = _read(path)
                if raw is None:
                    continue
                holder = Holder.parse(raw)
            if holder is None:
                age = _age(path)
                if age is None:
                    continue
                self._refuse_unreadable(age, takeover)
            else:
                if takeover:
                    waited = self._wait_if_remote(holder)
                    if waited is None:
                        continue  # released meanwhile: try again
                    if waited != holder:
                        holder, raw = waited, _read(path)
                self._refuse(holder, takeover)
            # move the stale lock aside atomically: of several writers taking it over,
            # one moves it, the others find it gone and try again
            try:
                os.rename(path, aside)
            except FileNotFoundError:
                continue
            moved = _read(aside)
            if moved != raw:
                # another writer took it over first and this moved its fresh lock: put it back
                try:
                    os.link(aside, path)
                except FileExistsError:
                    pass  # yet another writer holds it now
                finally:
                    os.unlink(aside)
                self._refuse(Holder.parse(moved), False)
            os.unlink(aside)
            took_over = True
        raise StoreLockedError(
            f"{self.ref.where}: could not take the lock, other writers keep taking it; make "
            "sure only one job writes there"
        )

    def _acquire_other(self, takeover: bool) -> None:
        (raw,) = get_many(self.ref.store, [LOCK_KEY])
        took_over = False
        if raw is not None:
            holder = Holder.parse(raw)
            if takeover and holder is not None:
                holder = self._wait_if_remote(holder)
                released = holder is None
            else:
                released = False
            if not released:
                self._refuse(holder, takeover)
                took_over = True
        _store_lock(self.ref.store, self.ref.where, self._holder.encode())
        time.sleep(_CONFIRM_SECONDS)
        holder = self.ref.holder()
        if holder is None or holder.write_id != self.ref.write_id:
            self._refuse(holder, False)
        folder = fsspec_folder(self.ref.store)
        if took_over and folder is not None:
            # a file:// URL: the temporary files its writer gone had not renamed yet
            remove_temporaries(folder)

    # -- holding it -----------------------------------------------------------------------

    def _beat(self) -> None:
        interval = min(max(self._limit / 5, 0.01), threading.TIMEOUT_MAX)
        while not self._stop.wait(interval):
            try:
                if not self._refresh():
                    # released by the final task, or taken over: no write of this
                    # process holds it any more
                    _LIVE.discard(self.ref.write_id)
                    break
            except OSError as error:
                if no_room(error) is None:
                    # the store is gone, or can not be written now: the write goes on
                    # (until it fails, or its completion task does) and keeps its lock
                    break
                # no room for the new lock now (the old one stays): try again next time,
                # so that room made meanwhile keeps the lock from becoming stale
        _DELAYED.pop(self.ref.write_id, None)

    def _refresh(self) -> bool:
        """Refresh the heartbeat if this write still holds the lock; whether it does."""
        with self._writing:
            if self._stop.is_set():
                return False
            fresh = Holder(**{**asdict(self._holder), "heartbeat": time.time()})
            folder = self._root or fsspec_folder(self.ref.store)
            if folder is not None:
                return self._refresh_local(folder / LOCK_KEY, fresh.encode())
            holder = self.ref.holder()
            if holder is None or holder.write_id != self.ref.write_id:
                return False
            set_many(self.ref.store, {LOCK_KEY: fresh.encode()})
            return True

    def _refresh_local(self, path: Path, fresh: bytes) -> bool:
        """Write ``fresh`` over the lock file ``path`` (of a local store, or of a store
        named by a ``file://`` URL) if it is this write's; whether it was. The file is
        opened as it is, never created, and read and written through one descriptor: a
        lock deleted by the final task of a ``compute=False`` write (in another process
        or thread) between the read and the write is not written again (writing the new
        heartbeat aside and renaming it over the lock did, leaving a lock that its
        heartbeat kept fresh for as long as the process lived), and a lock another
        writer put in its place meanwhile is another file."""
        try:
            descriptor = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            holder = Holder.parse(read_whole(descriptor).tobytes())
            if holder is None or holder.write_id != self.ref.write_id:
                return False
            written = 0
            while written < len(fresh):  # a file size limit may cut a write short
                written += os.pwrite(descriptor, fresh[written:], written)
            os.ftruncate(descriptor, len(fresh))
            return True
        finally:
            os.close(descriptor)

    def hand_over(self) -> None:
        """The lock now belongs to a ``compute=False`` write: its final task releases it;
        until then the heartbeat goes on, and a resume in this process may take it over."""
        _DELAYED[self.ref.write_id] = self
        watched = _WATCHED.get()
        if watched is not None:
            watched.append(self)

    def stop(self) -> None:
        """Stop the heartbeat (without releasing the lock): from now on, the lock is
        stale for this process."""
        self._stop.set()
        _LIVE.discard(self.ref.write_id)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def release(self) -> None:
        """Stop the heartbeat and delete the lock if this write still holds it; an
        interrupt while the heartbeat stops (a ``KeyboardInterrupt`` during the join)
        still deletes it."""
        try:
            self.stop()
        finally:
            with self._writing:
                self.ref.release()

    def remedy(self) -> str:
        """How to finish this write, or give it up, once it failed."""
        return self._holder.remedy(appending=False)


def left_lock(store: Store) -> Holder | None:
    """The holder of the store's lock (``None``: no lock, or one that can not be read)."""
    return Holder.parse(get_many(store, [LOCK_KEY])[0])


def incomplete(store: Store, where: str) -> IncompleteStoreError:
    """The error for a store whose write did not finish: a writer still running holds
    its lock (then: wait for it), a killed one left it, whose command gives the remedy
    (``--resume`` of the command line that wrote the store, ``write_batches(...,
    resume=True)``, ``resume=True`` of an append...); without a lock (a write that
    failed in its process released it), the remedies of every writer."""
    return IncompleteStoreError(f"{where} is incomplete: {incomplete_reason(store)}")


def incomplete_reason(store: Store, batches: bool = False) -> str:
    """Why a store is incomplete and what to do (see :func:`incomplete`), as the end of a
    sentence starting with "the store is incomplete: "; ``batches`` when its root
    records a run of ``write_batches``."""
    holder = left_lock(store)
    if holder is None and batches:
        return (
            "a run of write_batches did not finish (it failed, was interrupted, or is still "
            "running); finish it with write_batches(..., resume=True) for a run of batches, "
            "with the same arguments"
        )
    if holder is None:
        return (
            "a write did not finish (it failed, was interrupted, or is still running); "
            "finish it with to_zarr(..., resume=True) and the same tensor (a run of "
            "write_batches: write_batches(..., resume=True); a command line: the same "
            "command with --resume), or write it again with mode='w'"
        )
    return unfinished_write(holder)


def unfinished_write(holder: Holder, stopped: str = "a write did not finish") -> str:
    """What the lock ``holder`` of an incomplete store says: a write in progress, to wait
    for, or one whose writer is gone (``stopped``: the words saying so), and its
    remedy."""
    gone = holder.stale_reason(timeout())
    if gone is None:
        return f"a write is in progress ({holder.describe()}); wait until it has finished"
    if holder.write_id in _DELAYED:
        return (
            f"{stopped} ({holder.describe()}: a to_zarr(..., compute=False) of this "
            "process whose Delayed has not run); compute it (dask.compute) to finish the "
            "write, or take the write over with to_zarr(..., resume=True) and its tensor "
            "(then its Delayed fails)"
        )
    return (
        f"{stopped} ({holder.describe()}; it looks gone: {gone}); {holder.remedy(appending=False)}"
    )


#: What the lock of ``to_zarr(..., append_dim="samples")`` records as its command (in
#: a command line, the command line), so that an append killed before it recorded
#: itself is not given the remedy of a whole write (``mode='w'`` would delete the store).
APPEND_COMMAND = "to_zarr append"


def append_command() -> str:
    """The command recorded by the lock of an append taken in this context."""
    command = _COMMAND.get()
    return APPEND_COMMAND if command == "to_zarr" else command


@contextlib.contextmanager
def locked_as(command: str) -> Iterator[None]:
    """The locks taken in this block (by ``to_zarr``) record ``command`` as their
    holder's, so that a writer finding the lock of a killed one names the command to run
    again (a command line's ``--resume`` rather than ``to_zarr``'s ``resume=True``)."""
    token = _COMMAND.set(command)
    try:
        yield
    finally:
        _COMMAND.reset(token)


@contextlib.contextmanager
def released_on_failure(undo: Callable[[], None] | None = None) -> Iterator[None]:
    """Release the locks of the ``to_zarr(..., compute=False)`` writes started in this
    block when the block raises (their ``Delayed`` failed, or was not computed).

    A caller that computes the ``Delayed`` itself (the command line, with its progress
    bars and windows) so ends a failed write as ``to_zarr`` does: the store stays as
    the failure left it (incomplete, resumable with ``resume=True``), unlocked, and the
    heartbeat stops; the storing tasks still running check the lock and store nothing.
    A write whose ``Delayed`` ran released its lock already.

    ``undo``, when given, runs first, while the locks are still held: their heartbeats
    stopped, so that a call of this process (``discard_append``) takes them over, while
    other writers still find them held. A store removed, or an append discarded, so
    can not take away the work of a writer that took the lock once it was released.
    It does not run when a lock is no longer this process's (deleted, or found stale
    and taken over by another writer, whose store is then left as it wrote it).
    """
    token = _WATCHED.set([])
    try:
        yield
    except BaseException as error:
        watched = _WATCHED.get() or []
        held = [lock for lock in watched if _DELAYED.pop(lock.ref.write_id, None) is not None]
        try:
            if undo is not None:
                for lock in held:
                    lock.stop()
                if held and all(_holds(lock.ref) for lock in held):
                    undo()
        finally:
            for lock in held:
                lock.release()
        for lock in watched:
            raise_if_out_of_room(error, lock.ref.where, lock.remedy())
        raise
    finally:
        _WATCHED.reset(token)


def _holds(ref: WriteId) -> bool:
    """Whether the write ``ref`` holds its lock (``False`` when it can not be read)."""
    try:
        return ref.holds()
    except OSError:
        return False


def raise_if_out_of_room(error: BaseException, where: str, then: str) -> None:
    """For ``error``, a write that found no room (a full disk or quota, a file size
    limit), raise an ``OSError`` of the same ``errno`` naming the store ``where``, the
    cause and what to do ``then``. Other errors: return."""
    cause = no_room(error)
    if cause is None or not isinstance(error, OSError):
        return
    message = f"writing {where} failed ({error.strerror}): {cause}, then {then}"
    raise OSError(error.errno, message) from error


def _store_lock(store: Store, where: str, data: bytes) -> None:
    """Write ``data`` as the lock of ``store`` (not a local folder), the first file a
    write stores. A file system that refuses it (a read-only one, such as an HTTP server,
    answering with an error of its own; or a location this user may not write) is a
    :class:`MetatensorDaskError` saying so; a missing bucket or no room are left to the
    caller (see :meth:`StoreLock._take`)."""
    try:
        set_many(store, {LOCK_KEY: data})
    except Exception as error:
        if isinstance(error, OSError) and not isinstance(error, PermissionError):
            raise
        raise MetatensorDaskError(
            f"{where} can not be written: the file system refused the first file of the "
            f"write, its lock '{LOCK_KEY}' ({type(error).__name__}: {error}); nothing was "
            "written. Write to a location this user may write (a read-only file system, "
            "such as an http:// server, is only read: write the store elsewhere, then copy "
            "it there)"
        ) from None


def _create(path: Path, data: bytes, temporary: Path) -> bool:
    """Create the file ``path`` holding ``data``, unless it exists (then False), in one
    step: ``data`` is written to ``temporary``, then hard-linked to ``path``. On a file
    system without hard links, ``path`` is created, then written. A write that fails (a
    full disk, a file size limit) leaves neither file behind."""
    try:
        temporary.write_bytes(data)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        except OSError:  # no hard links here
            return _create_in_place(path, data)
    finally:
        temporary.unlink(missing_ok=True)
    return True


def _create_in_place(path: Path, data: bytes) -> bool:
    """Create ``path`` holding ``data`` unless it exists (then False); the file is
    removed again when writing it fails."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, NEW_FILE_MODE)
    except FileExistsError:
        return False
    try:
        write_all(descriptor, [data])
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    finally:
        os.close(descriptor)
    return True


def _remove_left_over(root: Path, limit: float) -> None:
    """Remove the lock files written aside (``.lock.<id>.tmp``, ``.lock.<id>``) by
    writers killed before they removed them: those last written longer than ``limit``
    seconds ago (a live writer removes its own within moments)."""
    for left in root.glob(f"{LOCK_KEY}.*"):
        age = _age(left)
        if age is not None and age > limit:
            left.unlink(missing_ok=True)


def _age(path: Path) -> float | None:
    """Seconds since ``path`` was last written (``None`` when it is gone)."""
    try:
        return max(time.time() - path.stat().st_mtime, 0.0)
    except FileNotFoundError:
        return None


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
