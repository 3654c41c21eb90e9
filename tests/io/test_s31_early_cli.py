"""The command line refuses bad input before it starts a cluster: ``run --resume`` of a
pipeline whose inputs changed since the interrupted run, and ``convert`` of sources it
can not read or join, or into a destination it can not write. Nothing is written, and
no cluster is started."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import dask
import metatensor
import numpy as np
import pytest
from read_only_mounts import unwritable

import metatensor_dask as mtd
from metatensor_dask.execution import cli, cluster
from metatensor_dask.execution.pipeline import Pipeline
from metatensor_dask.io._lock import released_on_failure
from metatensor_dask.testing import assert_equal_to_metatensor

LOCAL = ["--cluster", "local", "--workers", "2", "-q"]


def tensor(seed: int, n_properties: int = 3) -> metatensor.TensorMap:
    """Two blocks of 12 systems with random values."""
    rng = np.random.default_rng(seed)
    samples = metatensor.Labels(["system"], np.arange(12, dtype=np.int32)[:, None])
    blocks = [
        metatensor.TensorBlock(
            rng.normal(size=(12, n_properties)),
            samples,
            [],
            metatensor.Labels.range("p", n_properties),
        )
        for _ in range(2)
    ]
    return metatensor.TensorMap(metatensor.Labels.range("k", 2), blocks)


def hashes(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` by its relative name, with its hash."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def clusters(monkeypatch):
    """The local clusters the command starts (each recorded, then started)."""
    started = []
    local = cluster._local

    @contextlib.contextmanager
    def recorded(*arguments, **options):
        started.append(arguments)
        with local(*arguments, **options) as execution:
            yield execution

    monkeypatch.setattr(cluster, "_local", recorded)
    return started


def _interrupted_run(folder: Path) -> None:
    """``x.zarr``, the pipeline ``p.yaml`` squaring it into ``out.zarr``, and that
    write interrupted before it computed anything."""
    mtd.from_metatensor(tensor(0)).to_zarr(folder / "x.zarr", chunks=4)
    (folder / "p.yaml").write_text(
        "inputs: {x: x.zarr}\nsteps:\n  - {op: multiply, inputs: [x, x]}\noutput: out.zarr\n"
    )
    pipeline = Pipeline.from_file(str(folder / "p.yaml"))
    with contextlib.suppress(KeyboardInterrupt), released_on_failure():
        pipeline.write(pipeline.build())
        raise KeyboardInterrupt


def test_a_resume_whose_input_changed_starts_no_cluster(tmp_path, capsys, clusters):
    _interrupted_run(tmp_path)
    mtd.from_metatensor(tensor(1)).to_zarr(tmp_path / "x.zarr", chunks=4, mode="w")
    before = hashes(tmp_path)
    assert cli.main(["run", str(tmp_path / "p.yaml"), "--resume", *LOCAL]) == 1
    error = capsys.readouterr().err
    assert "another computation" in error and "delete" in error, error
    assert clusters == []
    assert hashes(tmp_path) == before

    # the input as it was: the resume finishes the write (on threads here)
    mtd.from_metatensor(tensor(0)).to_zarr(tmp_path / "x.zarr", chunks=4, mode="w")
    assert cli.main(["run", str(tmp_path / "p.yaml"), "--resume", "-q"]) == 0
    expected = metatensor.multiply(tensor(0), tensor(0))
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "out.zarr"), expected)


def _convert_refusals(folder: Path, read_only: Path) -> dict[str, tuple[list[str], str]]:
    """Bad ``convert`` command lines, by case: the arguments and the error expected."""
    metatensor.save(str(folder / "a.mts"), tensor(2))
    metatensor.save(str(folder / "four.mts"), tensor(3, n_properties=4))
    mtd.from_metatensor(tensor(4)).to_zarr(folder / "s.zarr", chunks=4)
    a, four, stored = str(folder / "a.mts"), str(folder / "four.mts"), str(folder / "s.zarr")
    return {
        "missing source": ([str(folder / "no.mts"), str(folder / "o.zarr")], "no such"),
        "sources not joinable": (
            ["--append", a, four, str(folder / "o.zarr")],
            "can not be appended together",
        ),
        "a source without the dimension to renumber": (
            ["--append", "--renumber", "atom", a, str(folder / "o.zarr")],
            f"sample dimension of the source {a}",
        ),
        "append of other properties": (
            ["--append", four, stored],
            "other properties",
        ),
        "store in a read-only folder": ([a, str(read_only / "o.zarr")], "Read-only"),
        "file in a read-only folder": (
            [str(folder / "s.zarr"), str(read_only / "o.mts")],
            "read-only",
        ),
        "file in a missing folder": (
            [str(folder / "s.zarr"), str(folder / "no" / "o.mts")],
            "create it",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing source",
        "sources not joinable",
        "a source without the dimension to renumber",
        "append of other properties",
        "store in a read-only folder",
        "file in a read-only folder",
        "file in a missing folder",
    ],
)
def test_a_refused_convert_starts_no_cluster(tmp_path, capsys, clusters, case):
    data, shared = tmp_path / "data", tmp_path / "shared"
    data.mkdir()
    shared.mkdir()
    with unwritable(shared) as read_only:
        arguments, match = _convert_refusals(data, read_only)[case]
        before = hashes(tmp_path)
        assert cli.main(["convert", *arguments, *LOCAL]) == 1
        error = capsys.readouterr().err
        assert match in error, error
        assert clusters == []
        assert hashes(tmp_path) == before


def test_verify_starts_a_cluster_only_to_read_chunks(tmp_path, capsys, clusters):
    """A missing store and a metatensor file (its CRC-32s read here) are verified
    without a cluster."""
    metatensor.save(str(tmp_path / "a.mts"), tensor(5))
    assert cli.main(["verify", str(tmp_path / "missing.zarr"), *LOCAL]) == 1
    assert "no Zarr store found" in capsys.readouterr().err
    assert cli.main(["verify", str(tmp_path / "a.mts"), *LOCAL]) == 0
    assert clusters == []


def test_a_demo_that_can_not_write_its_workdir_starts_no_cluster(tmp_path, capsys, clusters):
    (tmp_path / "file").write_text("not a folder")
    assert cli.main(["demo", "--workdir", str(tmp_path / "file"), *LOCAL]) == 1
    assert "give --workdir a folder you can write" in capsys.readouterr().err
    assert clusters == []


def test_a_memory_output_on_a_cluster_starts_none(tmp_path, capsys, clusters):
    """Its worker processes would each write to a memory store of their own."""
    mtd.from_metatensor(tensor(6)).to_zarr(tmp_path / "x.zarr", chunks=4)
    argv = ["apply", "pow", str(tmp_path / "x.zarr"), "-o", "memory://o.zarr", "--arg", "B=2"]
    assert cli.main([*argv, *LOCAL]) == 1
    assert "memory store" in capsys.readouterr().err
    assert clusters == []


def test_a_write_set_up_before_a_cluster_that_fails_is_undone(tmp_path, capsys):
    """The write is set up (a new store's metadata, an append's record stored) before
    the cluster starts: a scheduler that can not be reached leaves no new output, nor
    its folders, and a store appended to reads as before and takes the next append."""
    mtd.from_metatensor(tensor(7)).to_zarr(tmp_path / "x.zarr", chunks=5)
    metatensor.save(str(tmp_path / "more.mts"), tensor(8))
    before = hashes(tmp_path)
    unreachable = ["--cluster", "tcp://127.0.0.1:1", "-q"]
    new = ["apply", "pow", str(tmp_path / "x.zarr"), "-o", str(tmp_path / "n" / "o.zarr")]
    append = ["convert", "--append", "--renumber", "system", str(tmp_path / "more.mts")]
    with dask.config.set({"distributed.comm.timeouts.connect": "0.5s"}):
        assert cli.main([*new, "--arg", "B=2", *unreachable]) == 1
        assert not (tmp_path / "n").exists()
        assert hashes(tmp_path) == before
        assert cli.main([*append, str(tmp_path / "x.zarr"), *unreachable]) == 1
    assert capsys.readouterr().err.count("cannot connect to the dask scheduler") == 2
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "x.zarr"), tensor(7))
    assert cli.main([*append, str(tmp_path / "x.zarr"), "-q"]) == 0
    renumbered = metatensor.TensorMap(
        tensor(8).keys,
        [
            metatensor.TensorBlock(
                block.values,
                metatensor.Labels(["system"], block.samples.values + 12),
                [],
                block.properties,
            )
            for block in tensor(8).blocks()
        ],
    )
    expected = metatensor.join([tensor(7), renumbered], axis="samples")
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "x.zarr"), expected)
