"""Checks of the values that go into batch job scripts (``#SBATCH``, ``#PBS``, ...).

A job script is a shell script whose header lines are comments to the shell: a newline
in a value ends the comment and turns the rest of the value into a command. Every value
is therefore refused if it has a control character, and checked against the format of
its field where there is one (names, walltimes, memory sizes). Paths are quoted where
they are written, not restricted here.
"""

from __future__ import annotations

import re

from dask.utils import parse_bytes

from ..errors import MetatensorDaskError

__all__ = [
    "JobOptionError",
    "check_memory",
    "check_name",
    "check_text",
    "check_walltime",
    "job_memory_bytes",
]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# job, queue and account names: letters, digits and _ . + - ; queues may also be lists
# (a,b) or PBS destinations (queue@server)
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
_QUEUE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+@,-]*")
_WALLTIMES = {
    # minutes, minutes:seconds, hours:minutes:seconds, days-hours[:minutes[:seconds]]
    "slurm": (re.compile(r"\d+(:\d+){0,2}|\d+-\d+(:\d+){0,2}"), "02:00:00 or 1-12:00:00"),
    # [[hours:]minutes:]seconds
    "hms": (re.compile(r"\d+(:\d+){0,2}"), "02:00:00"),
    # [hours:]minutes
    "lsf": (re.compile(r"\d+(:\d+)?"), "02:00 (hours:minutes)"),
}
# sbatch --mem: a whole number of megabytes, or with a unit K, M, G or T
_JOB_MEMORY = re.compile(r"\d+[KMGTkmgt]?")
_JOB_MEMORY_UNITS = {"": 2**20, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


class JobOptionError(MetatensorDaskError):
    """A value for a batch job script is unsafe (a control character) or malformed."""


def check_text(what: str, value: str) -> str:
    """``value``, refused if it is not a string or has a control character (a newline...).

    Raises
    ------
    JobOptionError
        Naming ``what`` and the character.
    """
    if not isinstance(value, str):
        raise JobOptionError(f"{what} must be text, got {value!r}")
    found = _CONTROL.search(value)
    if found:
        raise JobOptionError(
            f"{what} {value!r} contains the control character {found.group()!r}: it would "
            "end the line of the job script and run the rest as a command; remove it"
        )
    return value


def check_name(what: str, value: str, queue: bool = False) -> str:
    """A job, queue (``queue=True``: also ``a,b`` and ``queue@server``) or account name."""
    check_text(what, value)
    pattern = _QUEUE if queue else _NAME
    if not pattern.fullmatch(value):
        allowed = "letters, digits and _ . + -" + (" , @" if queue else "")
        raise JobOptionError(f"{what} {value!r} is not a valid name: use only {allowed}")
    return value


def check_walltime(what: str, value: str, style: str = "slurm") -> str:
    """A walltime in the format of ``style``: ``"slurm"``, ``"hms"`` (PBS, SGE, OAR) or
    ``"lsf"``."""
    check_text(what, value)
    pattern, example = _WALLTIMES[style]
    if not pattern.fullmatch(value):
        raise JobOptionError(f"{what} {value!r} is not a walltime: give it as {example}")
    return value


def check_memory(what: str, value: str, style: str = "dask") -> str:
    """A memory size: ``style="dask"`` as dask writes them (``4GiB``, ``16 GB``),
    ``style="job"`` as ``sbatch --mem`` takes them (``16G``, ``2000`` megabytes)."""
    check_text(what, value)
    if style == "job":
        valid = bool(_JOB_MEMORY.fullmatch(value))
        example = "16G, 500M or 2000 (megabytes)"
    else:
        try:
            valid = parse_bytes(value) > 0
        except (ValueError, TypeError):
            valid = False
        example = "4GiB or 16GB"
    if not valid:
        raise JobOptionError(f"{what} {value!r} is not a memory size: give it as {example}")
    return value


def job_memory_bytes(what: str, value: str) -> int:
    """The bytes of a job memory size as ``sbatch --mem`` reads it: ``16G``, ``500M``,
    ``2000`` (megabytes); the units are powers of 1024."""
    check_memory(what, value, style="job")
    unit = value[-1].lower() if value[-1].isalpha() else ""
    return int(value.rstrip("KMGTkmgt")) * _JOB_MEMORY_UNITS[unit]
