"""Zarr stores in the configurations a user of zarr, xarray and metatensor tries: the
kinds of location, the modes on what is already there, the documented settings, and
metatensor maps with unusual content; metatensor-core is the oracle."""

from __future__ import annotations

import re

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.execution.cli import main
from metatensor_dask.testing import assert_equal_to_metatensor


def _labels(names: list[str], values) -> metatensor.Labels:
    return metatensor.Labels(names, np.asarray(values, dtype=np.int32).reshape(-1, len(names)))


def _map(n: int = 5) -> metatensor.TensorMap:
    rng = np.random.default_rng(n)
    block = metatensor.TensorBlock(
        rng.normal(size=(n, 2)),
        _labels(["system"], np.arange(n)),
        [],
        _labels(["p"], np.arange(2)),
    )
    return metatensor.TensorMap(_labels(["k"], [0]), [block])


def test_info_with_an_empty_value_converts_and_round_trips(tmp_path):
    # metatensor-core's info() gives None for an empty string value
    theirs = _map()
    theirs.set_info("empty", "")
    theirs.set_info("", "empty name")
    theirs.set_info("ünïcode ☃", "välue 🎉")
    tensor = mtd.from_metatensor(theirs)
    assert tensor.info() == {"empty": "", "": "empty name", "ünïcode ☃": "välue 🎉"}
    tensor.to_zarr(tmp_path / "t.zarr")
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "t.zarr"), theirs)


@pytest.mark.parametrize("mode", ["w", "w-", "a"])
def test_a_folder_holding_other_files_is_never_written_into(tmp_path, mode):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    (folder / "data.zarr").mkdir()
    with pytest.raises(mtd.MetatensorDaskError, match=r"not empty.*'data.zarr', 'notes.txt'"):
        mtd.from_metatensor(_map()).to_zarr(folder, mode=mode)
    assert sorted(p.name for p in folder.iterdir()) == ["data.zarr", "notes.txt"]


def test_write_batches_never_writes_into_a_folder_holding_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(mtd.MetatensorDaskError, match=r"not empty.*'notes.txt'"):
        mtd.write_batches(lambda items: _map(), [0], tmp_path, renumber=None)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_store_is_never_written_inside_another(tmp_path):
    tensor = mtd.from_metatensor(_map())
    tensor.to_zarr(tmp_path / "outer.zarr")
    inner = tmp_path / "outer.zarr" / "blocks" / "0" / "inner.zarr"
    with pytest.raises(mtd.MetatensorDaskError, match=r"inner\.zarr is inside the Zarr store"):
        tensor.to_zarr(inner)
    with pytest.raises(mtd.MetatensorDaskError, match="is inside the Zarr store"):
        tensor.to_zarr(inner, append_dim="samples")
    assert not inner.exists() or list(inner.iterdir()) == []
    assert mtd.verify(tmp_path / "outer.zarr").ok


@pytest.mark.parametrize("mode", ["w", "w-", "a", "r+"])
def test_a_file_is_refused_as_a_store(tmp_path, mode):
    target = tmp_path / "t.zarr"
    target.write_text("not a store")
    with pytest.raises(mtd.MetatensorDaskError, match=r"t\.zarr.* is a file, not a directory"):
        mtd.from_metatensor(_map()).to_zarr(target, mode=mode)
    assert target.read_text() == "not a store"


def test_file_urls_without_auto_mkdir_are_refused_with_the_remedy(tmp_path):
    url = f"file://{tmp_path}/t.zarr"
    with pytest.raises(mtd.MetatensorDaskError, match=r"auto_mkdir.*True"):
        mtd.from_metatensor(_map()).to_zarr(url)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.filterwarnings("ignore:Numcodecs codecs are not in the Zarr version 3")
def test_a_codec_name_zarr_does_not_know_is_refused_with_the_remedy(tmp_path):
    tensor = mtd.from_metatensor(_map())
    tensor.to_zarr(tmp_path / "kept.zarr")
    with dask.config.set({"metatensor_dask.compressor": "lz4"}):
        with pytest.raises(mtd.MetatensorDaskError, match=r"'lz4'.*'numcodecs.lz4'"):
            tensor.to_zarr(tmp_path / "t.zarr")
        with pytest.raises(mtd.MetatensorDaskError, match=r"'lz4'.*'numcodecs.lz4'"):
            tensor.to_zarr(tmp_path / "kept.zarr", mode="w")
    assert not (tmp_path / "t.zarr").exists()
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "kept.zarr"), _map())
    with dask.config.set({"metatensor_dask.compressor": "numcodecs.lz4"}):
        tensor.to_zarr(tmp_path / "t.zarr", chunks=2)
        tensor.to_zarr(tmp_path / "t.zarr", append_dim="samples", renumber={"system": "next"})
    assert mtd.verify(tmp_path / "t.zarr").ok
    stored = mtd.open_zarr(tmp_path / "t.zarr").block(0).compute()
    values = _map().block(0).values
    np.testing.assert_array_equal(stored.values, np.concatenate([values, values]))
    np.testing.assert_array_equal(stored.samples.column("system"), np.arange(10))


def test_mode_a_on_a_stored_key_points_to_appending_samples(tmp_path):
    tensor = mtd.from_metatensor(_map())
    tensor.to_zarr(tmp_path / "t.zarr")
    with pytest.raises(mtd.MetatensorDaskError, match=r"append_dim='samples'") as error:
        tensor.to_zarr(tmp_path / "t.zarr", mode="a")
    assert "not available" not in str(error.value)


@pytest.mark.parametrize("kind", ["xarray", "zarr array"])
def test_zarr_version_2_stores_are_refused_by_name(tmp_path, kind, capsys):
    xr = pytest.importorskip("xarray")
    path = tmp_path / "v2.zarr"
    if kind == "xarray":
        xr.Dataset({"a": ("x", np.arange(3.0))}).to_zarr(path, zarr_format=2)
    else:
        import zarr

        zarr.create_array(path, shape=(3,), dtype="f8", zarr_format=2)[:] = 1.0
    message = r"v2\.zarr is a Zarr version 2 store.*not a metatensor-dask store"
    with pytest.raises(mtd.MetatensorDaskError, match=message):
        mtd.open_zarr(path)
    report = mtd.verify(path)
    assert not report.ok and "Zarr version 2" in report.problems[0]
    assert main(["info", str(path)]) == 1
    assert "Zarr version 2" in capsys.readouterr().err


def test_verify_lists_a_damaged_labels_chunk_once(tmp_path):
    theirs = metatensor.TensorMap(
        _labels(["k"], [[0], [1]]), [_map(5).block(0).copy(), _map(3).block(0).copy()]
    )
    mtd.from_metatensor(theirs).to_zarr(tmp_path / "t.zarr")
    chunk = tmp_path / "t.zarr" / "blocks" / "1" / "properties" / "c.0.0"
    damaged = bytearray(chunk.read_bytes())
    damaged[0] ^= 4
    chunk.write_bytes(bytes(damaged))
    report = mtd.verify(tmp_path / "t.zarr")
    assert len(report.problems) == 1, report.problems
    assert "'blocks/1/properties'" in report.problems[0]


def test_stores_a_write_can_not_use_are_refused_before_writing(tmp_path):
    import zarr

    tensor = mtd.from_metatensor(_map())
    zipped = zarr.storage.ZipStore(tmp_path / "t.zip", mode="w")
    with pytest.raises(mtd.MetatensorDaskError, match=r"ZipStore.*can not delete.*directory"):
        tensor.to_zarr(zipped)
    zipped.close()
    assert not (tmp_path / "t.zip").exists() or (tmp_path / "t.zip").stat().st_size <= 22
    read_only = zarr.storage.LocalStore(tmp_path / "t.zarr", read_only=True)
    with pytest.raises(mtd.MetatensorDaskError, match=r"t\.zarr.*read-only.*read_only=False"):
        tensor.to_zarr(read_only, mode="w")
    assert not (tmp_path / "t.zarr").exists()


def test_a_store_zipped_after_writing_opens_and_verifies(tmp_path):
    import zipfile

    import zarr

    theirs = _map(7)
    mtd.from_metatensor(theirs).to_zarr(tmp_path / "t.zarr", chunks=3)
    with zipfile.ZipFile(tmp_path / "t.zip", "w") as archive:
        for path in sorted((tmp_path / "t.zarr").rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(tmp_path / "t.zarr").as_posix())
    store = zarr.storage.ZipStore(tmp_path / "t.zip", mode="r")
    assert_equal_to_metatensor(mtd.open_zarr(store), theirs)
    assert mtd.verify(store).ok


# (values that are not numbers can not make a map: tests/test_s32_dtypes.py)
@pytest.mark.parametrize("dtype", [np.longdouble, np.clongdouble])
def test_values_zarr_can_not_store_are_refused_before_writing(tmp_path, dtype):
    labels = mtd.Labels(["s"], [[0], [1]])
    block = mtd.TensorBlock(np.zeros((2, 1), dtype=dtype), labels, [], mtd.Labels(["p"], [[0]]))
    tensor = mtd.TensorMap(mtd.Labels(["k"], [[0]]), [block])
    with pytest.raises(mtd.MetatensorDaskError, match=r"dtype .* can not be stored in Zarr"):
        tensor.to_zarr(tmp_path / "t.zarr")
    assert not (tmp_path / "t.zarr").exists()


@pytest.mark.parametrize("dtype", [">f8", ">i2", "u8", "f2", "c8", "?"])
def test_every_zarr_dtype_round_trips(tmp_path, dtype):
    rng = np.random.default_rng(3)
    values = (rng.normal(size=(7, 2)) * 30).astype(dtype)
    block = metatensor.TensorBlock(
        values.astype(np.dtype(dtype).newbyteorder("=")),
        _labels(["s"], np.arange(7)),
        [],
        _labels(["p"], [0, 1]),
    )
    theirs = metatensor.TensorMap(_labels(["k"], [0]), [block])
    ours = mtd.TensorMap(
        mtd.Labels(["k"], [[0]]),
        [
            mtd.TensorBlock(
                values, mtd.Labels(["s"], np.arange(7)[:, None]), [], mtd.Labels(["p"], [[0], [1]])
            )
        ],
    )
    ours.to_zarr(tmp_path / "t.zarr", chunks=3)
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "t.zarr"), theirs)


def _with_gradient(name: str, nested: bool = False) -> metatensor.TensorMap:
    """``_map()`` with a gradient ``name`` (or a positions gradient with a gradient
    ``name`` of its own)."""
    parent = _map().block(0)
    rows = _labels(["sample"], np.arange(len(parent.samples)))
    gradient = metatensor.TensorBlock(
        np.ones((len(parent.samples), 2)), rows, [], parent.properties
    )
    if nested:
        inner = metatensor.TensorBlock(
            np.ones((len(parent.samples), 2)), rows, [], parent.properties
        )
        gradient.add_gradient(name, inner)
        name = "positions"
    block = parent.copy()
    block.add_gradient(name, gradient)
    return metatensor.TensorMap(_labels(["k"], [0]), [block])


@pytest.mark.parametrize("nested", [False, True])
def test_a_gradient_named_as_zarr_documents_is_refused_before_writing(tmp_path, nested):
    tensor = mtd.from_metatensor(_with_gradient("zarr.json", nested))
    with pytest.raises(mtd.UnsafeNameError, match=r"'zarr\.json' cannot be stored in Zarr"):
        tensor.to_zarr(tmp_path / "t.zarr")
    assert not (tmp_path / "t.zarr").exists()
    mtd.save(tmp_path / "t.mts", tensor)  # a folder name like any other in a .mts file
    assert_equal_to_metatensor(mtd.load(tmp_path / "t.mts"), _with_gradient("zarr.json", nested))


@pytest.mark.parametrize("name", ["a/b", "../../x", "zarr.json"])
def test_write_batches_refuses_gradient_names_that_are_not_folders(tmp_path, name):
    theirs = _with_gradient(name)
    with pytest.raises(mtd.MetatensorDaskError, match=rf"gradient name '{re.escape(name)}'"):
        mtd.write_batches(lambda items: theirs, [0], tmp_path / "t.zarr", renumber=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.zarr"]
    assert not list((tmp_path / "t.zarr").glob("blocks/**/values"))


def test_write_batches_refuses_values_zarr_can_not_store(tmp_path):
    theirs = _map()
    block = metatensor.TensorBlock(
        np.zeros((5, 2), dtype=np.longdouble),
        theirs.block(0).samples,
        [],
        theirs.block(0).properties,
    )
    batch = metatensor.TensorMap(theirs.keys, [block])
    with pytest.raises(mtd.MetatensorDaskError, match=r"dtype float128 can not be stored in Zarr"):
        mtd.write_batches(lambda items: batch, [0], tmp_path / "t.zarr", renumber=None)


@pytest.mark.parametrize(
    ("name", "value"),
    [("chunk-size", "abc"), ("chunk-size", None), ("chunk-size", "0"), ("checksum", "no")],
)
def test_invalid_settings_are_refused_by_name_before_writing(tmp_path, name, value):
    tensor = mtd.from_metatensor(_map())
    tensor.to_zarr(tmp_path / "kept.zarr")
    message = rf"invalid setting metatensor_dask\.{name}="
    with dask.config.set({f"metatensor_dask.{name}": value}):
        with pytest.raises(mtd.MetatensorDaskError, match=message):
            tensor.to_zarr(tmp_path / "kept.zarr", mode="w", chunks="auto")
        with pytest.raises(mtd.MetatensorDaskError, match=message):
            tensor.to_zarr(tmp_path / "t.zarr", chunks="auto")
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "kept.zarr"), _map())


def test_an_xarray_store_is_refused_and_never_overwritten(tmp_path):
    xr = pytest.importorskip("xarray")
    dataset = xr.Dataset({"a": ("x", np.arange(3.0))})
    dataset.to_zarr(tmp_path / "xr.zarr", zarr_format=3, consolidated=False)
    with pytest.raises(mtd.MetatensorDaskError, match="not a metatensor-dask store"):
        mtd.open_zarr(tmp_path / "xr.zarr")
    for mode in ["w", "w-", "a"]:
        with pytest.raises(mtd.MetatensorDaskError, match="not a metatensor-dask store"):
            mtd.from_metatensor(_map()).to_zarr(tmp_path / "xr.zarr", mode=mode)
    assert xr.open_zarr(tmp_path / "xr.zarr", consolidated=False).identical(dataset)


@pytest.mark.filterwarnings("ignore::zarr.errors.ZarrUserWarning")
@pytest.mark.parametrize("case", ["no blocks", "no samples", "sharded, zstd, appended"])
def test_open_datatree_opens_unusual_stores(tmp_path, case):
    xr = pytest.importorskip("xarray")
    path = tmp_path / "t.zarr"
    if case == "no blocks":
        theirs = metatensor.TensorMap(_labels(["k"], np.zeros((0, 1))), [])
        mtd.from_metatensor(theirs).to_zarr(path)
    elif case == "no samples":
        theirs = metatensor.TensorMap(_labels(["k"], [0]), [_map(0).block(0).copy()])
        mtd.from_metatensor(theirs).to_zarr(path)
    else:
        settings = {"metatensor_dask.shard-chunks": 2, "metatensor_dask.compressor": "zstd"}
        with dask.config.set(settings):
            mtd.from_metatensor(_map(5)).to_zarr(path, chunks=2)
            mtd.from_metatensor(_map(5)).to_zarr(
                path, append_dim="samples", renumber={"system": "next"}
            )
    tree = xr.open_datatree(path, engine="zarr").load()
    stored = mtd.open_zarr(path).compute()
    for i, block in enumerate(stored.blocks()):
        np.testing.assert_array_equal(tree[f"blocks/{i}/values"].values, block.values)
        np.testing.assert_array_equal(tree[f"blocks/{i}/samples"].values, block.samples.values)
    assert tree["keys"].shape == (len(stored.keys), 1)


@pytest.mark.parametrize("how", ["itself", "derived", "cli"])
def test_overwriting_the_store_a_tensor_is_read_from_is_refused(tmp_path, how, capsys):
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(_map(7)).to_zarr(path, chunks=2)
    opened = mtd.open_zarr(path, chunks=3)
    message = "reads the store it would overwrite"
    if how == "cli":
        assert main(["convert", str(path), str(path), "--chunks", "3", "--overwrite"]) == 1
        assert "is the source" in capsys.readouterr().err
    else:
        tensor = opened if how == "itself" else mtd.multiply(opened, 2.0)
        with pytest.raises(mtd.MetatensorDaskError, match=message):
            tensor.to_zarr(path, mode="w")
    assert_equal_to_metatensor(mtd.open_zarr(path), _map(7))
    assert mtd.verify(path).ok
    # computed first, it is the tensor's own data: the store can be replaced
    mtd.multiply(opened, 2.0).compute().to_zarr(path, mode="w")
    assert_equal_to_metatensor(mtd.open_zarr(path), metatensor.multiply(_map(7), 2.0))
