"""Damaged chunk files of 1 MiB or more, written past the page cache (whole blocks of
zeros left as holes, the last bytes short of a block through the page cache): by a
whole write, by an append (the partial last chunk rewritten) and by ``write_batches``.
Every damage is refused by a reader, naming the store, the chunk and the remedy, and
never read as other numbers, also while an append is interrupted (whose rewritten
partial chunk readers accept); an append onto a damaged partial chunk refuses it."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import dask
import metatensor
import numpy as np
import pytest
from store_support import failing

import metatensor_dask as mtd
from metatensor_dask.io import _direct_writes, _page_cache

#: Rows per chunk: 700 rows of 200 float64 (or 400 float32) hold 1,120,000 bytes.
ROWS = 700
VALUES = "blocks/0/values"
GRADIENT = "blocks/0/gradients/positions/values"


def _labels(names: list[str], values: np.ndarray) -> metatensor.Labels:
    return metatensor.Labels(names, np.asarray(values, dtype=np.int32).reshape(-1, len(names)))


def _tensor(seed: int, n: int, dtype: type, first: int = 0) -> metatensor.TensorMap:
    """A block of ``n`` samples (systems from ``first``) with a positions gradient."""
    rng = np.random.default_rng(seed)
    width = 1_600 // np.dtype(dtype).itemsize
    systems = first + np.arange(n) // 4
    block = metatensor.TensorBlock(
        rng.normal(size=(n, width)).astype(dtype),
        _labels(["system", "atom"], np.stack([systems, np.arange(n)], axis=1)),
        [],
        _labels(["n"], np.arange(width)),
    )
    per = rng.integers(0, 3, size=n)
    sample = np.repeat(np.arange(n), per)
    atom = np.concatenate([np.arange(k) for k in per])
    gradient = metatensor.TensorBlock(
        rng.normal(size=(len(sample), 3, width)).astype(dtype),
        _labels(["sample", "system", "atom"], np.stack([sample, systems[sample], atom], 1)),
        [_labels(["xyz"], np.arange(3))],
        block.properties,
    )
    block.add_gradient("positions", gradient)
    return metatensor.TensorMap(_labels(["k"], [0]), [block])


def _batch(items: list[int]) -> metatensor.TensorMap:
    return _tensor(100 + items[0], 10 * len(items), np.float64)


def _written(kind: str, path: Path) -> None:
    if kind == "append":
        mtd.from_metatensor(_tensor(1, 1_000, np.float64)).to_zarr(path, chunks=ROWS)
        appended = _tensor(2, 900, np.float64, first=250)
        mtd.from_metatensor(appended).to_zarr(path, append_dim="samples")
    elif kind == "batches":
        mtd.write_batches(_batch, list(range(150)), path, batch_size=40, chunks=ROWS, quiet=True)
    else:
        mtd.from_metatensor(_tensor(1, 1_500, np.float32)).to_zarr(path, chunks=ROWS)


def _holes(path: Path) -> int:
    """Bytes of ``path`` in holes (not allocated)."""
    return path.stat().st_size - path.stat().st_blocks * 512


@pytest.fixture(scope="module", params=["write", "append", "batches"])
def stored(request, tmp_path_factory) -> tuple[Path, metatensor.TensorMap]:
    """A store whose chunks are written directly, and the tensor it holds."""
    folder = tmp_path_factory.mktemp(request.param)
    if _page_cache.budget() is None or not _direct_writes.on_local_disk(str(folder)):
        pytest.skip("chunk files are written past the page cache on local disks only")
    path = folder / "t.zarr"
    with dask.config.set({"metatensor_dask.direct-writes": True}):
        _written(request.param, path)
    last = path / VALUES / "c.2.0"
    assert last.stat().st_size >= _page_cache.SMALLEST_FILE
    assert _holes(last) >= _direct_writes.ALIGNMENT  # the padding of the partial chunk
    return path, mtd.to_metatensor(mtd.open_zarr(path))


def _poke(offset: Callable[[int], int]) -> Callable[[Path], None]:
    def damage(chunk: Path) -> None:
        with open(chunk, "r+b") as file:
            file.seek(offset(chunk.stat().st_size))
            file.write(b"\x7f")

    return damage


def _sparse(chunk: Path) -> None:
    size = chunk.stat().st_size
    chunk.unlink()
    with open(chunk, "wb") as file:
        file.truncate(size)


def _swapped(chunk: Path) -> None:
    other = chunk.with_name("c.0.0" if chunk.name == "c.2.0" else "c.0.0.0")
    assert other.stat().st_size == chunk.stat().st_size
    aside = chunk.with_name("aside")
    os.rename(chunk, aside)
    os.rename(other, chunk)
    os.rename(aside, other)


def _hole_start(chunk: Path) -> int:
    descriptor = os.open(chunk, os.O_RDONLY)
    try:
        return os.lseek(descriptor, 0, os.SEEK_HOLE)
    finally:
        os.close(descriptor)


DAMAGES: dict[str, Callable[[Path], None]] = {
    "cut-in-first-block": lambda c: os.truncate(c, 1_000),
    "cut-at-a-block": lambda c: os.truncate(c, 8_192),
    "cut-at-last-block": lambda c: os.truncate(c, c.stat().st_size // 4_096 * 4_096),
    "crc-cut": lambda c: os.truncate(c, c.stat().st_size - 4),
    "in-a-hole": _poke(lambda size: size - 8_192),
    "in-tail": _poke(lambda size: size - 6),
    "sparse": _sparse,
    "swapped": _swapped,
}


#: Every damage to the values, a few to the gradient (chunks of other sizes).
CASES = [(damage, VALUES) for damage in DAMAGES] + [
    (damage, GRADIENT) for damage in ("cut-at-a-block", "in-tail", "sparse", "swapped")
]


@pytest.mark.parametrize(("damage", "array"), CASES)
def test_a_damaged_direct_chunk_is_refused(stored, damage, array):
    path, _ = stored
    chunk = path / array / ("c.2.0" if array == VALUES else "c.2.0.0")
    saved = path / "saved"  # the files as written (a copy would have no holes)
    os.rename(path / array, saved)
    shutil.copytree(saved, path / array)
    try:
        DAMAGES[damage](chunk)
        with pytest.raises(mtd.DamagedStoreError) as raised:
            mtd.to_metatensor(mtd.open_zarr(path))
    finally:
        shutil.rmtree(path / array)
        os.rename(saved, path / array)
    message = str(raised.value)
    assert str(path) in message
    assert f"'{array}'" in message
    assert "'c." in message
    assert "verify" in message


def test_the_damages_reach_the_holes_and_the_tail(stored):
    """The pokes land where the direct writer left a hole and in the buffered tail."""
    path, _ = stored
    chunk = path / VALUES / "c.2.0"
    size = chunk.stat().st_size
    assert _hole_start(chunk) <= size - 8_192
    assert size % _direct_writes.ALIGNMENT != 0  # a tail, written through the page cache


def test_the_undamaged_store_reads_back(stored):
    path, expected = stored
    assert metatensor.equal(mtd.to_metatensor(mtd.open_zarr(path)), expected)


def _files(path: Path) -> dict[str, str]:
    """The hash of every file under ``path``, by its relative name."""
    return {
        str(p.relative_to(path)): hashlib.blake2b(p.read_bytes()).hexdigest()
        for p in path.rglob("*")
        if p.is_file()
    }


def test_an_append_onto_a_cut_partial_chunk_refuses_before_writing(tmp_path):
    path = tmp_path / "t.zarr"
    if _page_cache.budget() is None or not _direct_writes.on_local_disk(str(tmp_path)):
        pytest.skip("chunk files are written past the page cache on local disks only")
    mtd.from_metatensor(_tensor(1, 1_000, np.float64)).to_zarr(path, chunks=ROWS)
    os.truncate(path / VALUES / "c.1.0", 4_096)
    before = _files(path)
    appended = _tensor(2, 900, np.float64, first=250)
    with pytest.raises(mtd.DamagedStoreError, match=r"'c\.1\.0' of the array 'blocks/0/values'"):
        mtd.from_metatensor(appended).to_zarr(path, append_dim="samples")
    assert _files(path) == before


SETTINGS = {
    "plain": {},
    "sharded": {"metatensor_dask.shard-chunks": 2},
    "zstd": {"metatensor_dask.compressor": "zstd"},
    "sharded-zstd": {"metatensor_dask.shard-chunks": 2, "metatensor_dask.compressor": "zstd"},
}


@pytest.mark.parametrize("settings", list(SETTINGS))
def test_an_older_partial_chunk_put_back_while_an_append_is_interrupted_is_refused(
    tmp_path, settings
):
    """While an append is interrupted, readers accept a partial last chunk that is not
    the one listed (the append rewrote it, keeping its rows); an older copy of it, from
    before an earlier append, holds zeros where that append stored rows."""
    path = tmp_path / "t.zarr"
    shards = settings.startswith("sharded")
    with dask.config.set(SETTINGS[settings]):
        mtd.from_metatensor(_tensor(1, 1_000, np.float64)).to_zarr(path, chunks=ROWS)
        chunk = path / VALUES / ("c.0.0" if shards else "c.1.0")
        older = chunk.read_bytes()
        appended = _tensor(2, 200, np.float64, first=250)
        mtd.from_metatensor(appended).to_zarr(path, append_dim="samples")
        expected = mtd.to_metatensor(mtd.open_zarr(path))
        with pytest.raises(RuntimeError, match="the source failed"):
            failing(_tensor(3, 300, np.float64, first=10_000)).to_zarr(path, append_dim="samples")
    assert (path / ".progress/append.json").exists()
    assert metatensor.equal(mtd.to_metatensor(mtd.open_zarr(path)), expected)
    chunk.write_bytes(older)
    with pytest.raises(mtd.DamagedStoreError, match="is not the chunk the store lists"):
        mtd.to_metatensor(mtd.open_zarr(path))
    problems = mtd.verify(path).problems
    assert any("is not the chunk the store lists" in problem for problem in problems)


@pytest.mark.parametrize("settings", ["plain", "sharded"])
def test_a_partial_chunk_rewritten_by_an_interrupted_append_is_read(tmp_path, settings):
    """The partial last chunk (or shard) as an append killed once it replaced it left
    it (its rows kept, new ones after them) is read by a tensor opened before, and by
    one opened since."""
    path, appended = tmp_path / "t.zarr", tmp_path / "appended.zarr"
    stored = _tensor(1, 1_000, np.float64)
    with dask.config.set(SETTINGS[settings]):
        mtd.from_metatensor(stored).to_zarr(path, chunks=ROWS)
        opened = mtd.open_zarr(path)
        shutil.copytree(path, appended)
        extra = _tensor(2, 200, np.float64, first=250)
        mtd.from_metatensor(extra).to_zarr(appended, append_dim="samples")
    (path / ".progress").mkdir()
    (path / ".progress/append.json").write_text('{"token": "killed"}')
    name = "c.0.0" if settings == "sharded" else "c.1.0"
    assert (appended / VALUES / name).read_bytes() != (path / VALUES / name).read_bytes()
    for array, chunk in ((VALUES, name), (GRADIENT, f"{name}.0")):
        shutil.copyfile(appended / array / chunk, path / array / chunk)
    assert metatensor.equal(mtd.to_metatensor(opened), stored)
    assert metatensor.equal(mtd.to_metatensor(mtd.open_zarr(path)), stored)
