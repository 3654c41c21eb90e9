"""The temporary file of a metatensor file's save, named after the process writing it.

A save writes ``.<name>.<pid>-<start>-<pid namespace>-<boot>@<host>.<random>.tmp`` next
to the file and renames it over the file once complete. A save killed (SIGKILL, a node
lost) leaves it: the next save of the same file removes the ones it can prove are left
by a process that is gone (on this host, since its boot, in this pid namespace, whose
pid no process holds, or holds since another time), and names the others in a warning,
which may be those of a save still running elsewhere, or left by an older version
(``.<name>.<random>.tmp``, or a name without ``<boot>``).

The host name alone does not tell hosts apart: cloned machines and containers share
names (``localhost``), and the first pid namespace has the same number on every Linux
host. The boot's random identifier, which the containers of a host share, does.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import warnings

from ..errors import MetatensorDaskWarning
from ._lock import pid_space, process_start

__all__ = ["clean_stale", "temporary_path"]

_SAFE = re.compile(r"[A-Za-z0-9._-]+")
# the longest file name most file systems take
_NAME_MAX = 255


def temporary_path(directory: str, name: str) -> str:
    """A new temporary path for the save of ``directory/name``, naming this process."""
    token = secrets.token_hex(6)
    host = socket.gethostname()
    owner = f"{os.getpid()}-{process_start()}-{_space()}-{_boot()}"
    owned = f".{name}.{owner}@{host}.{token}.tmp"
    if _SAFE.fullmatch(host) and len(owned) <= _NAME_MAX:
        return os.path.join(directory, owned)
    return os.path.join(directory, f".{name}.{token}.tmp")  # (an owner that can not be named)


def clean_stale(directory: str, name: str, shown: str) -> None:
    """Remove the temporary files of saves of ``directory/name`` left by processes that
    are gone, and warn of the others (``shown``: the path as the caller gave it)."""
    owned = re.compile(
        rf"\.{re.escape(name)}\.(\d+)-(\d*)-(\d*)(?:-([0-9a-f]*))?@({_SAFE.pattern})"
        r"\.[0-9a-f]{12}\.tmp"
    )
    anonymous = re.compile(rf"\.{re.escape(name)}\.[0-9a-f]{{12}}\.tmp")
    try:
        entries = [e.name for e in os.scandir(directory) if e.name.startswith(f".{name}.")]
    except OSError:
        return  # (the save itself says what is wrong with the folder)
    for entry in entries:
        match = owned.fullmatch(entry)
        if match is not None and _ours(*match.groups()):
            continue  # a save of this process, in another thread
        if match is not None and _gone(*match.groups()):
            try:
                os.unlink(os.path.join(directory, entry))
            except FileNotFoundError:
                pass  # (removed by another save meanwhile)
            except OSError:  # another user's, in a folder that keeps it: said
                _warn(os.path.join(directory, entry), shown, match)
            continue
        if match is not None or anonymous.fullmatch(entry):
            _warn(os.path.join(directory, entry), shown, match)


def _here(space: str, boot: str | None, host: str) -> bool:
    """Whether a process of ``host`` since the boot ``boot`` (None: not named, as an
    older version's name), in the pid namespace numbered ``space``, is one that this
    process can see by its pid."""
    if boot is None or boot != _boot():
        return False
    return host == socket.gethostname() and space == _space()


def _space() -> str:
    """The number of this process's pid namespace (``""`` where it can not be told)."""
    return "".join(ch for ch in pid_space() if ch.isdigit())


def _boot() -> str:
    """The random identifier of this host's boot (hexadecimal digits; ``""`` where it can
    not be told)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
            boot = file.read().strip().replace("-", "").lower()
    except (OSError, ValueError):
        return ""
    return boot if re.fullmatch(r"[0-9a-f]+", boot) else ""


def _ours(pid: str, start: str, space: str, boot: str | None, host: str) -> bool:
    return _here(space, boot, host) and int(pid) == os.getpid()


def _gone(pid: str, start: str, space: str, boot: str | None, host: str) -> bool:
    """Whether the process ``pid`` of ``host`` (since the boot ``boot``, in the pid
    namespace numbered ``space``, started at ``start``) is surely gone: only a process
    of this host, boot and namespace can be told, and a pid now held by a process
    started at another time is another process's."""
    if not _here(space, boot, host):
        return False
    number = int(pid)
    try:
        os.kill(number, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # a process of another user
    held_since = process_start(number)
    return bool(start and held_since and held_since != start)


def _warn(temporary: str, shown: str, match: re.Match[str] | None) -> None:
    who = (
        f"process {match.group(1)} on host {match.group(5)}"
        if match is not None
        else "a process it does not name (an older version, or a host name unfit for a file name)"
    )
    warnings.warn(
        f"{temporary} is the temporary file of a save of {shown} by {who}, which may "
        "still be running, or was killed: this save leaves it alone; delete it once no "
        f"other save of {shown} runs",
        MetatensorDaskWarning,
        stacklevel=5,
    )
