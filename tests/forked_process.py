"""Writer and reader processes forked from one server that imported everything once.

A race test starts many processes and kills most of them (SIGKILL) at random moments.
Started as new interpreters, each costs its imports (1 to 3 s under load); forked from
a ``forkserver`` that imported metatensor-dask and the race helpers once, each costs a
fork. The process is still a process of its own (its own pid, its own lock, killed
without any cleanup) and holds no thread of the test's process: the server forks
before any thread is started.

:func:`forked` returns an object used like the :class:`subprocess.Popen` of
``kill_support`` (``stdout`` with what the process printed, stderr included, ``pid``,
``kill``, ``poll``, ``wait``, ``returncode`` negative for a signal, a context manager),
so that its helpers (``ended``, ``killed_after``, ``seconds_to_done``) take either.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import multiprocessing
import multiprocessing.forkserver
import os
import runpy
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from kill_support import _ready, all_ready

_CONTEXT = multiprocessing.get_context("forkserver")
#: Imported once by the server (if this module starts it), not by each process: the
#: package, the modules its first append imports (``distributed`` among them, which
#: dask imports to look for a Client; it starts no thread), and the race helpers.
_PRELOAD = [
    "metatensor_dask",
    "metatensor_dask.tensor",
    "metatensor_dask.io.convert",
    "metatensor_dask.io.zarr_write",
    "distributed",
    "race_process",
    "cut_writers",
]
_CONTEXT.set_forkserver_preload(_PRELOAD)


@functools.cache
def _start_server() -> None:
    """Start the server, once, with the folders of this process (those of the tests
    among them) as its ``PYTHONPATH``: a new interpreter, it does not take them over
    (Python 3.11), and would silently skip the preloads it can not import."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved


class Forked:
    """A process forked from the server, running ``target(*arguments)`` with its
    stdout and stderr sent to :attr:`stdout` (or, given a ``log``, written to that
    file, :attr:`stdout` then ``None``)."""

    def __init__(
        self, target: Callable[..., object], *arguments: object, log: Path | None = None
    ) -> None:
        _start_server()
        reading, writing = _CONTEXT.Pipe(duplex=False)
        output = str(log) if log is not None else writing
        # the target is imported by name with the folders of this process: the server
        # knows only those of the process that started it
        named = (target.__module__, target.__qualname__, list(sys.path))
        self._process = _CONTEXT.Process(
            target=_with_output_to, args=(output, named, arguments), daemon=True
        )
        self._process.start()
        writing.close()
        self.stdout = open(os.dup(reading.fileno()), encoding="utf-8") if log is None else None
        reading.close()
        self.pid = self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit code, ``-signal`` for a process killed by a signal (as
        :class:`subprocess.Popen`), ``None`` while it runs."""
        return self._process.exitcode

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, number: int) -> None:
        os.kill(self.pid, number)

    def kill(self) -> None:
        """SIGKILL, if it still runs."""
        if self._process.exitcode is None:
            self._process.kill()

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(f"forked {self.pid}", timeout or 0)
        return self._process.exitcode

    def __enter__(self) -> Forked:
        return self

    def __exit__(self, *exception: object) -> None:
        if self.stdout is not None:
            self.stdout.close()
        self.wait()


def _with_output_to(output, named: tuple[str, str, list[str]], arguments: tuple) -> None:
    """In the forked process: print to ``output`` (a connection, or the path of a log
    file), then run the target (``named``: its module, its name and the folders to
    import it from) with ``arguments``."""
    file = open(output, "wb") if isinstance(output, str) else output
    os.dup2(file.fileno(), sys.stdout.fileno())
    os.dup2(file.fileno(), sys.stderr.fileno())
    file.close()
    module, name, sys.path[:] = named
    getattr(importlib.import_module(module), name)(*arguments)


def _add_to_environment(environment: Mapping[str, str]) -> None:
    """``environment`` added to the variables, and dask's settings read again."""
    if environment:
        import dask

        os.environ.update(environment)
        dask.config.refresh()


def run_script(script: str, arguments: list[str], environment: Mapping[str, str]) -> None:
    """``python script arguments...`` in this process, with ``environment`` added to
    the variables (dask's settings read again from them)."""
    _add_to_environment(environment)
    sys.argv = [script, *arguments]
    sys.path.insert(0, os.path.dirname(script))
    runpy.run_path(script, run_name="__main__")


def run_code(code: str, arguments: list[str], environment: Mapping[str, str]) -> None:
    """``python -c code arguments...`` in this process, with ``environment`` added to
    the variables (dask's settings read again from them)."""
    _add_to_environment(environment)
    sys.argv = ["-c", *arguments]
    exec(compile(code, "<string>", "exec"), {"__name__": "__main__"})


def forked_script(
    script: str | Path,
    *arguments: str,
    environment: Mapping[str, str] | None = None,
    log: Path | None = None,
) -> Forked:
    """``python script arguments...`` (with ``environment`` added to the variables) in
    a forked process, just started."""
    return Forked(run_script, str(script), list(arguments), dict(environment or {}), log=log)


def started_script(script: str | Path, *arguments: str) -> Forked:
    """``python script arguments...`` in a forked process, once it printed ``ready``."""
    return forked(run_script, str(script), list(arguments), {})


@contextlib.contextmanager
def scripts_together(*commands: list[str]) -> Iterator[list[Forked]]:
    """``python script arguments...`` for each ``[script, *arguments]`` of ``commands``
    in forked processes, once each printed ``ready``; those still running at the end are
    killed (see ``kill_support.all_ready``)."""
    with all_ready([forked_script(*command) for command in commands]) as processes:
        yield processes


def run_race_process(*arguments: str) -> None:
    """``race_process.py arguments...``, in this process."""
    import race_process

    sys.argv = ["race_process.py", *arguments]
    race_process.main()


def forked(target: Callable[..., object], *arguments: object) -> Forked:
    """``target(*arguments)`` in a forked process, once it printed ``ready``."""
    process = Forked(target, *arguments)
    _ready(process)
    return process


@contextlib.contextmanager
def forked_together(*commands: list[str]) -> Iterator[list[Forked]]:
    """``race_process.py arguments...`` for each list of ``arguments`` of ``commands``,
    forked at once, once each printed ``ready``; those still running at the end are
    killed. Processes that must not touch a store before a given moment wait for a
    ``--go`` file."""
    with all_ready([Forked(run_race_process, *command) for command in commands]) as processes:
        yield processes
