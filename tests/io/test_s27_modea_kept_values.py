"""``to_zarr(mode="a")`` of stored keys with new gradients, attacked: tensors whose
values are the stored ones but reached otherwise are accepted (and not computed when
read from the store as it is), values that differ in one element anywhere are refused
with nothing written, whatever the codecs, store, scheduler or format."""

from __future__ import annotations

import hashlib
import struct
import uuid
from pathlib import Path

import dask
import metatensor
import numpy as np
import pytest
from dask.callbacks import Callback
from forked_process import Forked, run_code
from kill_support import ended
from older_formats import make_format_3
from zarr_writer_process import make_metatensor, with_strain_of

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

#: make_metatensor(nested=False): blocks (1, 1) of 23 rows, (1, 6) of 0 rows, (6, 8)
#: of 0 properties; stored in chunks of 4 rows
CHUNK_ROWS = 4


@pytest.fixture
def full() -> metatensor.TensorMap:
    return make_metatensor(seed=27, nested=False)


def _without(tensor: metatensor.TensorMap) -> metatensor.TensorMap:
    """``tensor`` without its strain gradient (nested gradients of the others kept)."""
    blocks = []
    for block in tensor.blocks():
        new = metatensor.TensorBlock(
            block.values.copy(), block.samples, block.components, block.properties
        )
        for parameter, gradient in block.gradients():
            if parameter != "strain":
                new.add_gradient(parameter, gradient.copy())
        blocks.append(new)
    result = metatensor.TensorMap(tensor.keys, blocks)
    for name, value in tensor.info().items():
        result.set_info(name, value)
    return result


def _contents(path) -> list[tuple[str, str]]:
    """Every file under ``path`` and a digest of its bytes."""
    return sorted(
        (str(p.relative_to(path)), hashlib.sha256(p.read_bytes()).hexdigest())
        for p in path.rglob("*")
        if p.is_file()
    )


def _raising_scheduler(*args, **kwargs):
    raise AssertionError("the write computed something while it was built")


class _Computes:
    """A scheduler counting its calls and the tasks of each, running them in this thread."""

    def __init__(self):
        self.tasks: list[int] = []

    def __call__(self, graph, keys, **kwargs):
        tasks = graph.__dask_graph__() if hasattr(graph, "__dask_graph__") else graph
        self.tasks.append(len(dict(tasks)))
        return dask.get(graph, keys, **kwargs)


def _changed(tensor: metatensor.TensorMap, change) -> metatensor.TensorMap:
    """A copy of ``tensor`` whose block (1, 1) went through ``change(block)``."""
    blocks = []
    for key, block in tensor.items():
        new = block.copy()
        if tuple(key.values) == (1, 1):
            change(new)
        blocks.append(new)
    return metatensor.TensorMap(tensor.keys, blocks)


# -- equal values reached otherwise: accepted ------------------------------------------


def _opened(path, full, chunks):
    return with_strain_of(mtd.open_zarr(path, chunks=chunks), full)


def _persisted(path, full):
    return with_strain_of(mtd.open_zarr(path, chunks=3).persist(), full)


def _from_mts(path, full, chunks):
    mts = path.with_suffix(".mts")
    metatensor.save(str(mts), _without(full))
    return with_strain_of(mtd.load(mts, chunks=chunks), full)


def _from_copy(path, full):
    copy = path.with_name("copy.zarr")
    mtd.from_metatensor(_without(full)).to_zarr(copy, chunks=7)
    return with_strain_of(mtd.open_zarr(copy, chunks=5), full)


def _sliced_whole(path, full):
    systems = mtd.Labels(["system"], np.arange(10, dtype=np.int32).reshape(-1, 1))
    return with_strain_of(mtd.slice(mtd.open_zarr(path), "samples", systems), full)


@pytest.mark.parametrize(
    ("source", "lazy"),
    [
        (lambda path, full: _opened(path, full, None), True),
        (lambda path, full: _opened(path, full, 3), True),
        (lambda path, full: _opened(path, full, 9), True),
        (lambda path, full: _opened(path, full, "1KiB"), True),
        (_persisted, False),  # tiny blocks' items are arrays of their own once persisted
        (lambda path, full: _from_mts(path, full, 5), False),
        (lambda path, full: _from_mts(path, full, None), False),
        (_from_copy, False),
        (_sliced_whole, False),
        (lambda path, full: mtd.from_metatensor(full), False),
    ],
    ids=["stored", "3", "9", "1KiB", "persisted", "mts", "mts-tiny", "copy", "sliced", "numpy"],
)
def test_the_stored_values_reached_otherwise_are_accepted(tmp_path, full, source, lazy):
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(_without(full)).to_zarr(path, chunks=CHUNK_ROWS)
    tensor = source(path, full)
    computes = _Computes()
    with dask.config.set(scheduler=_raising_scheduler if lazy else computes):
        write = tensor.to_zarr(path, mode="a", compute=False)
    if not lazy:
        assert len(computes.tasks) == 1
    write.compute()
    assert_equal_to_metatensor(mtd.open_zarr(path), full)


@pytest.mark.parametrize(
    "settings",
    [
        {"shard-chunks": 2},
        {"compressor": "zstd"},
        {"compressor": "gzip", "shard-chunks": 3},
        {"checksum": False},
    ],
    ids=["shards", "zstd", "gzip-shards", "no-checksum"],
)
@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_codecs_and_dtypes(tmp_path, settings, dtype):
    full = make_metatensor(seed=5, dtype=dtype, nested=False)
    path = tmp_path / "t.zarr"
    with dask.config.set({f"metatensor_dask.{k}": v for k, v in settings.items()}):
        mtd.from_metatensor(_without(full)).to_zarr(path, chunks=CHUNK_ROWS)
    before = _contents(path)

    def change(block):
        block.values[-1, 2, 3] += 1

    with pytest.raises(mtd.MetatensorDaskError, match=r"block \(1, 1\).*first at row 22"):
        mtd.from_metatensor(_changed(full, change)).to_zarr(path, mode="a")
    assert _contents(path) == before
    for chunks in (None, 5):
        with dask.config.set(scheduler=_raising_scheduler):
            write = _opened(path, full, chunks).to_zarr(path, mode="a", compute=False)
        write.compute()
        assert_equal_to_metatensor(mtd.open_zarr(path), full)
        mtd.from_metatensor(_without(full)).to_zarr(path, mode="w", chunks=CHUNK_ROWS)
    mtd.from_metatensor(full).to_zarr(path, mode="a")
    assert_equal_to_metatensor(mtd.open_zarr(path), full)


@pytest.mark.parametrize("scheme", ["memory://", "file://"])
def test_stores_at_urls(tmp_path, full, scheme):
    url = (
        f"memory://s27-modea-{uuid.uuid4().hex}/t.zarr"
        if scheme == "memory://"
        else f"file://{tmp_path}/t.zarr"
    )
    options = {"auto_mkdir": True} if scheme == "file://" else None
    mtd.from_metatensor(_without(full)).to_zarr(url, chunks=CHUNK_ROWS, storage_options=options)
    with pytest.raises(mtd.MetatensorDaskError, match=r"block \(1, 1\).*first at row 0"):
        mtd.from_metatensor(_changed(full, _first_value_nan)).to_zarr(
            url, mode="a", storage_options=options
        )
    with dask.config.set(scheduler=_raising_scheduler):
        write = _opened(url, full, 3).to_zarr(url, mode="a", compute=False, storage_options=options)
    write.compute()
    assert_equal_to_metatensor(mtd.open_zarr(url), full)


@pytest.mark.xdist_group("serial")
def test_compared_on_a_cluster(tmp_path, full):
    distributed = pytest.importorskip("distributed")
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(_without(full)).to_zarr(path, chunks=CHUNK_ROWS)
    before = _contents(path)
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
        ) as cluster,
        distributed.Client(cluster),
    ):
        with pytest.raises(mtd.MetatensorDaskError, match=r"block \(1, 1\).*first at row 13"):
            mtd.from_metatensor(_changed(full, _row_13_component_1)).to_zarr(path, mode="a")
        assert _contents(path) == before
        _from_copy(path, full).to_zarr(path, mode="a")
    assert_equal_to_metatensor(mtd.open_zarr(path), full)


# -- one value that differs, anywhere: refused, nothing written ------------------------


def _first_value_nan(block):
    block.values[0, 0, 0] = np.nan


def _row_13_component_1(block):
    block.values[13, 1, 2] = np.nextafter(block.values[13, 1, 2], np.inf)


def _last_value(block):
    block.values[-1, -1, -1] *= -1


def _stored_gradient(block):
    gradient = block.gradient("positions")
    gradient.values[-1, 2, 1, 3] = np.nextafter(gradient.values[-1, 2, 1, 3], -np.inf)


@pytest.mark.parametrize(
    ("change", "what", "row"),
    [
        (_first_value_nan, "values", 0),
        (_row_13_component_1, "values", 13),
        (_last_value, "values", 22),
        (_stored_gradient, "values of the gradient 'positions'", None),
    ],
    ids=["nan-first", "component", "last", "stored-gradient"],
)
def test_one_value_that_differs_is_refused(tmp_path, full, change, what, row):
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(_without(full)).to_zarr(path, chunks=CHUNK_ROWS)
    before = _contents(path)
    changed = _changed(full, change)
    row = len(full.block(0).gradient("positions").samples) - 1 if row is None else row
    with pytest.raises(
        mtd.MetatensorDaskError,
        match=rf"the stored {what} of the block \(1, 1\) in .*t\.zarr.*differ from "
        rf"them \(first at row {row}\).*open_zarr.*mode='w'",
    ):
        mtd.from_metatensor(changed).to_zarr(path, mode="a", compute=False)
    assert _contents(path) == before
    assert_equal_to_metatensor(mtd.open_zarr(path), _without(full))


def test_a_number_where_the_store_has_nan_is_refused(tmp_path, full):
    stored = _changed(full, _first_value_nan)
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(_without(stored)).to_zarr(path, chunks=CHUNK_ROWS)
    with pytest.raises(mtd.MetatensorDaskError, match=r"first at row 0"):
        mtd.from_metatensor(full).to_zarr(path, mode="a")


def test_nan_of_other_bits_are_the_same_values(tmp_path, full):
    """A NaN is a NaN: one of another sign or payload is kept as stored."""
    quiet = struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000001))[0]
    negative = struct.unpack("<d", struct.pack("<Q", 0xFFF8000000000002))[0]

    def stored_nan(block):
        block.values[7, 0, 1] = quiet

    def other_nan(block):
        block.values[7, 0, 1] = negative

    stored = _changed(full, stored_nan)
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(_without(stored)).to_zarr(path, chunks=CHUNK_ROWS)
    mtd.from_metatensor(_changed(full, other_nan)).to_zarr(path, mode="a")
    kept = mtd.open_zarr(path).block(0).values.compute()[7, 0, 1]
    assert struct.pack("<d", kept) == struct.pack("<d", quiet)


# -- stores changed since the tensor was opened ------------------------------------------


_REWRITE = (
    "import sys, metatensor_dask as mtd\n"
    "for path in sys.argv[1:]:\n"
    "    stored = mtd.open_zarr(path).compute()\n"
    "    mtd.multiply(stored, 2.0).to_zarr(path, mode='r+')\n"
)


def _written(path: Path, full: metatensor.TensorMap) -> None:
    mtd.from_metatensor(_without(full)).to_zarr(path, chunks=CHUNK_ROWS)


REWRITTEN_CHUNKS = (None, 3)


@pytest.fixture(scope="module")
def opened_then_rewritten_elsewhere(
    tmp_path_factory,
) -> dict[int | None, tuple[Path, mtd.TensorMap]]:
    """For each ``chunks``: a store and the tensor opened from it, the store then
    rewritten with its values doubled (``mode="r+"``) by another process, one for all
    the stores (forked from a server that imported metatensor-dask once: an
    interpreter each took a second or two more)."""
    full = make_metatensor(seed=27, nested=False)
    opened = {}
    for chunks in REWRITTEN_CHUNKS:
        path = tmp_path_factory.mktemp("rewritten") / "t.zarr"
        _written(path, full)
        opened[chunks] = (path, _opened(path, full, chunks))
    paths = [str(path) for path, _ in opened.values()]
    process = Forked(run_code, _REWRITE, paths, {})
    output = ended(process)
    assert process.returncode == 0, output
    return opened


def _opened_then_rewritten_here(path: Path, full: metatensor.TensorMap, chunks):
    """The tensor opened from a store at ``path``, the store then rewritten with its
    values doubled (``mode="r+"``) in this process."""
    _written(path, full)
    tensor = _opened(path, full, chunks)
    mtd.multiply(mtd.open_zarr(path).compute(), 2.0).to_zarr(path, mode="r+")
    return tensor


@pytest.mark.xdist_group("serial")
@pytest.mark.parametrize("chunks", REWRITTEN_CHUNKS)
@pytest.mark.parametrize("elsewhere", [False, True], ids=["here", "other-process"])
def test_a_store_rewritten_since_opened_is_refused(request, tmp_path, full, chunks, elsewhere):
    if elsewhere:
        path, tensor = request.getfixturevalue("opened_then_rewritten_elsewhere")[chunks]
    else:
        path = tmp_path / "t.zarr"
        tensor = _opened_then_rewritten_here(path, full, chunks)
    before = _contents(path)
    with pytest.raises(mtd.MetatensorDaskError, match=r"overwritten .*since this tensor"):
        tensor.to_zarr(path, mode="a")
    assert _contents(path) == before


def test_format_3_stores_are_compared(tmp_path, full):
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(_without(full)).to_zarr(path, chunks=CHUNK_ROWS)
    make_format_3(path)
    before = _contents(path)
    with pytest.raises(mtd.MetatensorDaskError, match=r"block \(1, 1\).*first at row 22"):
        mtd.from_metatensor(_changed(full, _last_value)).to_zarr(path, mode="a")
    assert _contents(path) == before
    computes = _Computes()
    with dask.config.set(scheduler=computes):
        write = _opened(path, full, None).to_zarr(path, mode="a", compute=False)
    assert len(computes.tasks) == 1
    write.compute()
    assert_equal_to_metatensor(mtd.open_zarr(path), full)


# -- resume, compute=False, many blocks, memory --------------------------------------------


def test_resume_of_an_interrupted_addition_of_gradients(tmp_path, full):
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(_without(full)).to_zarr(path, chunks=CHUNK_ROWS)
    lazy = mtd.from_metatensor(full).to_zarr(path, mode="a", compute=False)
    del lazy  # never run: the write is interrupted
    with pytest.raises(mtd.MetatensorDaskError, match="another computation"):
        mtd.from_metatensor(_changed(full, _last_value)).to_zarr(path, mode="a", resume=True)
    mtd.from_metatensor(full).to_zarr(path, mode="a", resume=True)
    assert_equal_to_metatensor(mtd.open_zarr(path), full)


def test_the_store_is_locked_until_the_delayed_write_runs(tmp_path, full):
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(_without(full)).to_zarr(path, chunks=CHUNK_ROWS)
    write = mtd.from_metatensor(full).to_zarr(path, mode="a", compute=False)
    with pytest.raises(mtd.StoreLockedError):
        mtd.from_metatensor(_without(_changed(full, _last_value))).to_zarr(path, mode="r+")
    write.compute()
    assert_equal_to_metatensor(mtd.open_zarr(path), full)


#: Blocks of the tiny-blocks test: enough that a computation or a few tasks more per
#: block would show.
TINY_BLOCKS = 200


def _tiny_blocks(n: int, gradients: bool) -> metatensor.TensorMap:
    rng = np.random.default_rng(n)
    values = rng.normal(size=(n, 2, 3))
    properties = metatensor.Labels(["p"], np.arange(3, dtype=np.int32).reshape(-1, 1))
    samples = metatensor.Labels(["s"], np.arange(2, dtype=np.int32).reshape(-1, 1))
    rows = metatensor.Labels(["sample"], np.arange(2, dtype=np.int32).reshape(-1, 1))
    blocks = []
    for i in range(n):
        block = metatensor.TensorBlock(values[i], samples, [], properties)
        if gradients:
            block.add_gradient(
                "strain", metatensor.TensorBlock(rng.normal(size=(2, 3)), rows, [], properties)
            )
        blocks.append(block)
    keys = metatensor.Labels(["k"], np.arange(n, dtype=np.int32).reshape(-1, 1))
    return metatensor.TensorMap(keys, blocks)


def test_many_tiny_blocks_are_compared_in_one_computation(tmp_path):
    """One computation, not one per block, of at most 5 tasks per block."""
    full = _tiny_blocks(TINY_BLOCKS, gradients=True)
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(_tiny_blocks(TINY_BLOCKS, gradients=False)).to_zarr(path)
    computes = _Computes()
    with dask.config.set(scheduler=computes):
        write = mtd.from_metatensor(full).to_zarr(path, mode="a", compute=False)
    assert len(computes.tasks) == 1
    assert computes.tasks[0] <= 5 * len(full)
    write.compute()
    last = mtd.open_zarr(path).block(len(full) - 1).gradient("strain").values.compute()
    np.testing.assert_array_equal(last, full.block(len(full) - 1).gradient("strain").values)


class _Largest(Callback):
    def __init__(self):
        super().__init__()
        self.nbytes = 0

    def _posttask(self, key, result, dsk, state, worker_id):
        if isinstance(result, np.ndarray):
            self.nbytes = max(self.nbytes, result.nbytes)


def test_the_comparison_holds_a_stored_chunk_at_a_time(tmp_path):
    """The tensor's values in one chunk (in memory): the stored values are read and
    compared a stored chunk at a time, not gathered into a copy of the whole array."""
    full = make_metatensor(seed=9, n_samples=(400,), n_properties=(50,), nested=False)
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(_without(full)).to_zarr(path, chunks=20)
    opened = mtd.open_zarr(path).block(0)
    chunks = [
        max(array.chunks[0]) * array.dtype.itemsize * int(np.prod(array.shape[1:]))
        for array in (opened.values, opened.gradient("positions").values)
    ]
    largest = _Largest()
    with dask.config.set(scheduler="synchronous"), largest:
        write = mtd.from_metatensor(full).to_zarr(path, mode="a", compute=False)
    assert 0 < largest.nbytes <= max(chunks)
    assert max(chunks) < full.block(0).values.nbytes
    write.compute()
    assert_equal_to_metatensor(mtd.open_zarr(path), full)


def test_complex_numbers_are_compared_part_by_part(tmp_path):
    full = make_metatensor(seed=6, dtype=np.complex128, nested=False)

    def nan_real(imaginary):
        def change(block):
            block.values[3, 0, 0] = complex(np.nan, imaginary)

        return change

    stored = _changed(full, nan_real(1.0))
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(_without(stored)).to_zarr(path, chunks=CHUNK_ROWS)
    before = _contents(path)
    with pytest.raises(mtd.MetatensorDaskError, match=r"block \(1, 1\).*first at row 3"):
        mtd.from_metatensor(_changed(full, nan_real(2.0))).to_zarr(path, mode="a")
    assert _contents(path) == before
    mtd.from_metatensor(stored).to_zarr(path, mode="a")
    assert_equal_to_metatensor(mtd.open_zarr(path), stored)


def test_the_block_named_is_the_stored_key_whatever_the_order(tmp_path, full):
    """Stored keys in another order than the store's, beside a new key: the block that
    differs is named by its key, the new key's values are not compared."""
    path = tmp_path / "t.zarr"
    stored = metatensor.TensorMap(
        metatensor.Labels(full.keys.names, full.keys.values[:2]),
        [full.block(i).copy() for i in range(2)],
    )
    mtd.from_metatensor(_without(stored)).to_zarr(path, chunks=CHUNK_ROWS)
    before = _contents(path)
    order = [2, 1, 0]
    changed = metatensor.TensorMap(
        metatensor.Labels(full.keys.names, full.keys.values[order]),
        [full.block(i).copy() for i in order],
    )
    for name, value in full.info().items():
        changed.set_info(name, value)
    changed.block(2).values[16, 0, 0] += 1.0  # the block (1, 1), stored first
    with pytest.raises(mtd.MetatensorDaskError, match=r"block \(1, 1\).*first at row 16"):
        mtd.from_metatensor(changed).to_zarr(path, mode="a")
    assert _contents(path) == before
    changed.block(2).values[16, 0, 0] -= 1.0
    mtd.from_metatensor(changed).to_zarr(path, mode="a")
    assert_equal_to_metatensor(mtd.open_zarr(path), full)


def test_a_stored_nested_gradient_that_differs_is_refused(tmp_path):
    full = make_metatensor(seed=11, nested=True)
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(_without(full)).to_zarr(path, chunks=CHUNK_ROWS)
    before = _contents(path)

    def change(block):
        cell = block.gradient("positions").gradient("cell")
        cell.values[1, 1, 0, 2, 3] = np.nextafter(cell.values[1, 1, 0, 2, 3], np.inf)

    with pytest.raises(
        mtd.MetatensorDaskError,
        match=r"stored values of the gradient 'positions/cell' of the block \(1, 1\).*"
        r"first at row 1",
    ):
        mtd.from_metatensor(_changed(full, change)).to_zarr(path, mode="a")
    assert _contents(path) == before
    with dask.config.set(scheduler=_raising_scheduler):
        write = _opened(path, full, None).to_zarr(path, mode="a", compute=False)
    write.compute()
    assert_equal_to_metatensor(mtd.open_zarr(path), full)


@pytest.mark.parametrize("kind", ["format-3", "no-checksum"])
@pytest.mark.parametrize("tiny", [True, False], ids=["tiny", "chunked"])
def test_stores_without_chunk_tables_rewritten_since_opened(tmp_path, kind, tiny):
    """Without a chunk table a tensor opened before a rewrite reads the rewritten values
    without an error: its gradients are refused as of an older state of the store. A
    tensor opened since is accepted: compared in a store of format 3 (no id), not
    computed in one of format 4 (its reads are named by the store's metadata)."""
    full = _tiny_blocks(3, gradients=True) if tiny else make_metatensor(seed=2, nested=False)
    path = tmp_path / "t.zarr"

    def write(tensor, mode):
        with dask.config.set({"metatensor_dask.checksum": kind != "no-checksum"}):
            tensor.to_zarr(path, mode=mode, chunks=None if tiny else CHUNK_ROWS)

    write(mtd.from_metatensor(_without(full)), "w-")
    if kind == "format-3":
        make_format_3(path)
    before_rewrite = with_strain_of(mtd.open_zarr(path), full)
    write(mtd.multiply(mtd.open_zarr(path).compute(), 2.0), "r+")
    before = _contents(path)
    with pytest.raises(
        mtd.MetatensorDaskError,
        match=r"read the store as it was before it was written again.*no checksum table.*"
        r"Open the store again",
    ):
        before_rewrite.to_zarr(path, mode="a")
    assert _contents(path) == before
    write(mtd.from_metatensor(_without(full)), "r+")
    computes = _Computes()
    with dask.config.set(scheduler=computes):
        write_now = with_strain_of(mtd.open_zarr(path), full).to_zarr(path, mode="a", compute=False)
    assert len(computes.tasks) == (1 if kind == "format-3" else 0)
    write_now.compute()
    assert_equal_to_metatensor(mtd.open_zarr(path), full)


@pytest.mark.parametrize("old_format", [False, True], ids=["format-4", "format-3"])
def test_two_additions_from_one_opened_tensor(tmp_path, full, old_format):
    """The second addition from a tensor opened before the first reads the store as it
    was: compared with a chunk table (format 4), refused without one (format 3)."""
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(_without(full)).to_zarr(path, chunks=CHUNK_ROWS)
    if old_format:
        make_format_3(path)
    opened = mtd.open_zarr(path)
    with_strain_of(opened, full).to_zarr(path, mode="a")
    theirs = mtd.from_metatensor(full)
    blocks = []
    for key, block in opened.items():
        new = mtd.TensorBlock(block.values, block.samples, block.components, block.properties)
        new.add_gradient("positions", block.gradient("positions"))
        new.add_gradient("other", theirs.block(key).gradient("strain"))
        blocks.append(new)
    second = mtd.TensorMap(opened.keys, blocks)
    if old_format:
        with pytest.raises(mtd.MetatensorDaskError, match=r"Open the store again"):
            second.to_zarr(path, mode="a")
        return
    second.to_zarr(path, mode="a")
    result = mtd.open_zarr(path)
    for block, expected in zip(result.blocks(), full.blocks(), strict=True):
        np.testing.assert_array_equal(
            block.gradient("other").values.compute(), expected.gradient("strain").values
        )


def test_new_gradients_for_some_stored_blocks_are_refused_before_any_comparison(tmp_path, full):
    """A subset of the stored blocks (drop_blocks) given a new gradient would leave the
    others without it: refused naming a block without it, before computing anything."""
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(_without(full)).to_zarr(path, chunks=CHUNK_ROWS)
    before = _contents(path)
    whole = mtd.from_metatensor(full)
    subset = mtd.drop_blocks(whole, mtd.Labels(whole.keys.names, whole.keys.values[:1]))
    with (
        dask.config.set(scheduler=_raising_scheduler),
        pytest.raises(
            mtd.MetatensorDaskError,
            match=r"the block \(1, 1\) would not have the gradient 'strain' that other blocks "
            r"would.*every stored key",
        ),
    ):
        subset.to_zarr(path, mode="a", compute=False)
    assert _contents(path) == before
