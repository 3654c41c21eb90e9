"""A command that set its write up and then failed before computing (here: a scheduler
that can not be reached) undoes that write while it still holds the output's lock:
another process trying to write there meanwhile is refused, rather than writing a store
that the undo then removes (or an append that it then discards)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.execution import cli
from metatensor_dask.testing import assert_equal_to_metatensor

UNREACHABLE = ["--cluster", "tcp://127.0.0.1:1", "-q"]

#: Another process writing a one-block store at ``sys.argv[1]`` (``mode="w"``): prints
#: the class of the error that refused it, or ``written``.
OTHER_WRITER = textwrap.dedent(
    """
    import sys
    import metatensor, numpy as np
    import metatensor_dask as mtd
    block = metatensor.TensorBlock(
        np.ones((2, 1)), metatensor.Labels.range("s", 2), [], metatensor.Labels.range("p", 1)
    )
    try:
        mtd.from_metatensor(metatensor.TensorMap(metatensor.Labels.range("k", 1), [block])).to_zarr(
            sys.argv[1], mode="w"
        )
    except Exception as error:
        print(type(error).__name__)
    else:
        print("written")
    """
)


def tensor(seed: int) -> metatensor.TensorMap:
    rng = np.random.default_rng(seed)
    block = metatensor.TensorBlock(
        rng.normal(size=(6, 2)),
        metatensor.Labels(["system"], np.arange(6, dtype=np.int32)[:, None]),
        [],
        metatensor.Labels.range("p", 2),
    )
    return metatensor.TensorMap(metatensor.Labels.range("k", 1), [block])


@pytest.fixture
def undone(monkeypatch):
    """The output's lock file at each undo, and what another process writing there
    at that moment met."""
    seen = []
    undo = cli._Output.undo

    def watched(output):
        if output.written and not output.computing:
            lock = (cli.Path(output.location) / ".lock").exists()
            other = subprocess.run(
                [sys.executable, "-c", OTHER_WRITER, output.location],
                capture_output=True,
                text=True,
                timeout=120,
            )
            seen.append((lock, other.stdout.strip() or other.stderr[-500:]))
        undo(output)

    monkeypatch.setattr(cli._Output, "undo", watched)
    return seen


def test_a_new_store_is_removed_under_its_lock(tmp_path, capsys, undone):
    mtd.from_metatensor(tensor(0)).to_zarr(tmp_path / "x.zarr")
    out = tmp_path / "new" / "o.zarr"
    command = ["apply", "pow", str(tmp_path / "x.zarr"), "-o", str(out), "--arg", "B=2"]
    with dask.config.set({"distributed.comm.timeouts.connect": "0.5s"}):
        assert cli.main([*command, *UNREACHABLE]) == 1
    assert "cannot connect to the dask scheduler" in capsys.readouterr().err
    assert undone == [(True, "StoreLockedError")]
    # nothing left: neither the store, nor its folder, nor the copy moved aside
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.zarr"]


def test_an_append_is_discarded_under_its_lock(tmp_path, capsys, undone):
    mtd.from_metatensor(tensor(0)).to_zarr(tmp_path / "x.zarr")
    metatensor.save(str(tmp_path / "more.mts"), tensor(1))
    command = ["convert", "--append", "--renumber", "system", str(tmp_path / "more.mts")]
    with dask.config.set({"distributed.comm.timeouts.connect": "0.5s"}):
        assert cli.main([*command, str(tmp_path / "x.zarr"), *UNREACHABLE]) == 1
    assert "cannot connect to the dask scheduler" in capsys.readouterr().err
    assert undone == [(True, "StoreLockedError")]
    assert not (tmp_path / "x.zarr" / ".lock").exists()
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "x.zarr"), tensor(0))
    # the store takes the next append
    assert cli.main([*command, str(tmp_path / "x.zarr"), "-q"]) == 0
    assert len(mtd.open_zarr(tmp_path / "x.zarr").block(0).samples) == 12
