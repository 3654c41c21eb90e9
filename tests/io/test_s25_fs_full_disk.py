"""Writes that run out of room (a file size limit, in a subprocess, standing for a full
disk: both fail the write with an ``OSError``) leave no file of their own behind: the
lock a writer could not write is not left beside the store, a store that the write
created is removed, and a rerun without the limit (in the test's process) finishes the
write with metatensor's result."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import metatensor
import pytest
from ingest_support import renumbered
from test_zarr_append import assert_equal_to_join
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.execution.cli import main
from metatensor_dask.testing import assert_equal_to_metatensor

pytestmark = pytest.mark.xdist_group("serial")

#: Runs ``argv[3]`` (Python code using ``store``, ``mtd``, ``make_metatensor``) with
#: files limited to ``argv[2]`` bytes, for the store ``argv[1]``; prints the errno of
#: the ``OSError`` it raised and its message, or ``done``.
LIMITED = """
import resource, signal, sys
import metatensor_dask as mtd
from metatensor_dask.execution.cli import main
from zarr_writer_process import make_metatensor

store, limit = sys.argv[1], int(sys.argv[2])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    exec(sys.argv[3])
except OSError as error:
    print(error.errno, error)
else:
    print("done")
"""

WRITE = "mtd.from_metatensor(make_metatensor(1)).to_zarr(store, chunks=4)"
APPEND = (
    "mtd.from_metatensor(make_metatensor(2)).to_zarr("
    "store, append_dim='samples', renumber={'system': 'next'}, chunks=4)"
)


def run_python(script: str, *arguments: str) -> str:
    """What ``script`` prints, run with ``arguments`` by a new interpreter that imports
    what this one does."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", script, *arguments],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


#: Runs each of the runs described by the JSON of ``argv[1]`` (``name``, ``store``,
#: ``limit``, ``code``, ``argv``) one after the other, its Python code using ``store``,
#: ``argv``, ``mtd``, ``main``, ``make_metatensor`` with files limited to ``limit``
#: bytes (the soft limit, set back between runs); prints, as JSON, the type, errno and
#: message of the exception each run raised, or the ``result`` its code set (``done``).
LIMITED_RUNS = """
import json, resource, signal, sys
import metatensor_dask as mtd
from metatensor_dask.execution.cli import main
from zarr_writer_process import make_metatensor

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
results = {}
for run in json.loads(sys.argv[1]):
    scope = {"store": run["store"], "argv": run["argv"], "mtd": mtd, "main": main,
             "make_metatensor": make_metatensor}
    resource.setrlimit(resource.RLIMIT_FSIZE, (run["limit"], hard))
    try:
        exec(run["code"], scope)
    except Exception as error:
        result = [type(error).__name__, getattr(error, "errno", None), str(error)]
    else:
        result = scope.get("result", "done")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    results[run["name"]] = result
print(json.dumps(results))
"""


@dataclass(frozen=True)
class LimitedRun:
    """A run of ``code`` on ``store`` with files limited to ``limit`` bytes."""

    store: Path
    limit: int
    code: str
    argv: tuple[str, ...] = ()


def run_limited(runs: dict[str, LimitedRun]) -> dict[str, object]:
    """What each of ``runs`` raised (type name, errno, message) or set as ``result``,
    by name: all run by one new interpreter (one each took a second or two more)."""
    described = [
        {"name": name, "store": str(run.store), "limit": run.limit, "code": run.code}
        | {"argv": list(run.argv)}
        for name, run in runs.items()
    ]
    return json.loads(run_python(LIMITED_RUNS, json.dumps(described)).splitlines()[-1])


def _as_printed(result: object) -> str:
    """A run's error as :data:`LIMITED` prints it (errno and message), or ``done``."""
    if result == "done":
        return "done"
    assert isinstance(result, list), result
    return f"{result[1]} {result[2]}"


def _with_room(store: Path, code: str) -> None:
    """Run ``code`` (as :data:`LIMITED` does) in this process, without a limit: the
    rerun of a user who made room (a new interpreter for it took a second or two)."""
    exec(code, {"store": str(store), "mtd": mtd, "main": main, "make_metatensor": make_metatensor})


def _lock_files(store: Path) -> list[str]:
    return sorted(path.name for path in store.glob(".lock*"))


def _first_two_blocks() -> metatensor.TensorMap:
    full = make_metatensor(1)
    return metatensor.TensorMap(
        metatensor.Labels(full.keys.names, full.keys.values[:2]),
        [full.block(0).copy(), full.block(1).copy()],
    )


#: Adds the last block of ``make_metatensor(1)`` to a store of its first two.
NEW_BLOCKS = (
    "import metatensor\n"
    "full = make_metatensor(1)\n"
    "last = metatensor.TensorMap(metatensor.Labels(full.keys.names, full.keys.values[2:]),"
    " [full.block(2).copy()])\n"
    "mtd.from_metatensor(last).to_zarr(store, mode='a', chunks=4)"
)

#: Runs the command line ``argv`` as ``python -m metatensor_dask`` does: ``result`` is
#: its exit code and what it wrote to stderr.
COMMAND = """
import contextlib, io
errors = io.StringIO()
with contextlib.redirect_stderr(errors):
    returned = main(argv)
result = [returned, errors.getvalue()]
"""


def _convert_command(directory: Path, append: bool) -> tuple[str, ...]:
    """``convert`` of a saved ``make_metatensor(1)`` to ``s.zarr`` in ``directory``."""
    source, store = directory / "t.mts", directory / "s.zarr"
    metatensor.save(str(source), make_metatensor(1))
    command = ["convert", str(source), str(store), "--quiet"] + (["--append"] if append else [])
    return tuple(command)


#: The limited runs of this module, by name.
NAMES = (
    "lock-write",
    "lock-append",
    "lock-message",
    "write",
    "append",
    "new-blocks",
    "convert-False",
    "convert-True",
)


def _runs(directory: Path) -> dict[str, LimitedRun]:
    """Every limited run of this module, each on a store of its own in ``directory``
    (made as the test of the run describes)."""
    stores = {name: directory / name / "s.zarr" for name in NAMES}
    for name, store in stores.items():
        store.parent.mkdir()
        if name in ("lock-append", "lock-message", "append"):
            mtd.from_metatensor(make_metatensor(1)).to_zarr(store, chunks=4)
    mtd.from_metatensor(_first_two_blocks()).to_zarr(stores["new-blocks"], chunks=4)
    runs = {
        "lock-write": LimitedRun(stores["lock-write"], 1000, WRITE),
        "lock-append": LimitedRun(stores["lock-append"], 1000, APPEND),
        "lock-message": LimitedRun(stores["lock-message"], 1000, APPEND),
        "write": LimitedRun(stores["write"], 8192, WRITE),
        "append": LimitedRun(stores["append"], 8192, APPEND),
        "new-blocks": LimitedRun(stores["new-blocks"], 8192, NEW_BLOCKS),
    }
    for append in (False, True):
        argv = _convert_command(stores[f"convert-{append}"].parent, append)
        runs[f"convert-{append}"] = LimitedRun(stores[f"convert-{append}"], 8192, COMMAND, argv)
    return runs


@dataclass(frozen=True)
class Ran:
    """A limited run, the files of its store before it, and what it raised or set."""

    run: LimitedRun
    before: list[str]
    result: object

    @property
    def printed(self) -> str:
        return _as_printed(self.result)


def _listing(store: Path) -> list[str]:
    return sorted(str(path.relative_to(store)) for path in store.rglob("*"))


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> dict[str, Ran]:
    """The limited runs of this module, all run by one new interpreter."""
    runs = _runs(tmp_path_factory.mktemp("full-disk"))
    before = {name: _listing(run.store) for name, run in runs.items()}
    results = run_limited(runs)
    assert set(results) == set(runs), results
    return {name: Ran(run, before[name], results[name]) for name, run in runs.items()}


def test_a_lock_that_can_not_be_written_leaves_no_store(ran):
    store = ran["lock-write"].run.store
    printed = ran["lock-write"].printed
    assert printed.startswith(f"{errno.EFBIG} "), printed
    assert not store.exists(), sorted(os.listdir(store))
    mtd.from_metatensor(make_metatensor(1)).to_zarr(store, chunks=4)
    assert_equal_to_metatensor(mtd.open_zarr(store), make_metatensor(1))


def test_an_append_whose_lock_can_not_be_written_leaves_the_store_as_it_was(ran):
    store, printed = ran["lock-append"].run.store, ran["lock-append"].printed
    assert printed.startswith(f"{errno.EFBIG} "), printed
    assert _listing(store) == ran["lock-append"].before
    assert_equal_to_metatensor(mtd.open_zarr(store), make_metatensor(1))
    _with_room(store, APPEND)
    _assert_appended(store)


def _assert_appended(store: Path) -> None:
    """The store holds ``make_metatensor(1)``, then ``make_metatensor(2)`` renumbered
    after it, as metatensor joins them (values and gradients)."""
    first, second = make_metatensor(1), make_metatensor(2)
    largest = max(int(max(block.samples.column("system"), default=-1)) for block in first)
    assert_equal_to_join(mtd.open_zarr(store), [first, renumbered(second, largest + 1)])


def _assert_out_of_room(printed: str, store: Path, then: str) -> None:
    """``printed`` is a file size limit error naming the store, the limit and ``then``."""
    number, message = printed.split(" ", 1)
    assert int(number) == errno.EFBIG, printed
    assert str(store) in message, printed
    assert "ulimit -f" in message, printed
    assert then in message, printed


def test_a_write_without_room_names_the_store_and_the_remedy(ran):
    store = ran["write"].run.store
    _assert_out_of_room(ran["write"].printed, store, "resume=True")
    with pytest.raises(mtd.IncompleteStoreError):
        mtd.open_zarr(store)
    assert _lock_files(store) == []
    resumed = WRITE.replace("chunks=4)", "chunks=4, resume=True)")
    _with_room(store, resumed)
    assert_equal_to_metatensor(mtd.open_zarr(store), make_metatensor(1))


def test_an_append_without_room_names_the_store_and_the_remedy(ran):
    store = ran["append"].run.store
    _assert_out_of_room(ran["append"].printed, store, "discard_append")
    assert_equal_to_metatensor(mtd.open_zarr(store), make_metatensor(1))
    assert _lock_files(store) == []
    resumed = APPEND.replace("chunks=4)", "chunks=4, resume=True)")
    _with_room(store, resumed)
    _assert_appended(store)


def test_a_lock_without_room_says_nothing_was_written(ran):
    store = ran["lock-message"].run.store
    _assert_out_of_room(ran["lock-message"].printed, store, "nothing was written: run it again")


def test_new_blocks_without_room_leave_the_store_as_it_was(ran):
    store = ran["new-blocks"].run.store
    printed = ran["new-blocks"].printed
    _assert_out_of_room(printed, store, "the store is as it was: run it again")
    assert_equal_to_metatensor(mtd.open_zarr(store), _first_two_blocks())
    _with_room(store, NEW_BLOCKS)
    full = make_metatensor(1)
    whole = metatensor.TensorMap(full.keys, [block.copy() for block in full.blocks()])
    assert_equal_to_metatensor(mtd.open_zarr(store), whole)  # the info of the first write


@pytest.mark.parametrize("append", [False, True])
def test_a_convert_without_room_names_its_resume(ran, append):
    limited = ran[f"convert-{append}"]
    store, command = limited.run.store, list(limited.run.argv)
    returned, stderr = limited.result
    assert returned == 1, stderr
    assert f"writing {store} failed (File too large)" in stderr, stderr
    assert "ulimit -f" in stderr and "with --resume" in stderr, stderr
    with pytest.raises(mtd.IncompleteStoreError):
        mtd.open_zarr(store)
    assert main([*command, "--resume"]) == 0
    assert_equal_to_metatensor(mtd.open_zarr(store), make_metatensor(1))
