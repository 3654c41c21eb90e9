"""Every public function and method, enumerated from the package, either builds its
result without computing anything or computes exactly once.

The public names (``metatensor_dask.__all__``, ``metatensor_dask.operations.__all__``
and the public methods of ``Labels``, ``TensorBlock``, ``TensorMap``) are listed here
in one of three tables: :data:`LAZY` (no dask computation, no chunk file of values or
gradients opened), :data:`ONCE` (one dask computation for the whole map, not one per
block or per array) and :data:`OTHER` (nothing to build from a map, with the reason).
A public name missing from every table fails the test, so that a new one is checked.

The maps are read from a Zarr store and a ``.mts`` file: six blocks of several chunks
each with three gradients, a block of no samples and one of no properties among them.
"""

from __future__ import annotations

import io
import itertools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import raise_if_dask_computes

sys.path.insert(0, str(Path(__file__).parents[1] / "operations"))
from chunked_maps import pair
from opened_files import VALUES_CHUNK, opened_files


def _labels(names: list[str], values: list[list[int]]) -> mtd.Labels:
    return mtd.Labels(names, np.array(values, dtype=np.int32).reshape(-1, len(names)))


def _without_components(t: mtd.TensorMap) -> mtd.TensorMap:
    """Blocks with samples and properties, components moved to properties, no
    gradients: the inputs of ``dot``, ``solve`` and ``lstsq``."""
    t = mtd.remove_gradients(mtd.components_to_properties(t, "o3_mu"))
    kept = [i for i, b in enumerate(t.blocks()) if len(b.samples) > 0 and len(b.properties) > 0]
    keys = mtd.Labels(t.keys.names, t.keys.values[kept])
    return mtd.TensorMap(keys, [t.block(i).copy() for i in kept])


def _square(t: mtd.TensorMap) -> mtd.TensorMap:
    """``_without_components`` with as many samples as properties."""
    blocks = []
    for b in _without_components(t).blocks():
        n = min(len(b.samples), len(b.properties))
        samples = mtd.Labels(b.samples.names, b.samples.values[:n])
        blocks.append(mtd.slice_block(b, "samples", samples))
    return mtd.TensorMap(_without_components(t).keys, blocks)


def _first(labels: mtd.Labels) -> mtd.Labels:
    return mtd.Labels(labels.names, labels.values[:1])


def _solve_right(t: mtd.TensorMap) -> mtd.TensorMap:
    """A right-hand side of ``solve(_square(t), ...)``."""
    return mtd.TensorMap(
        t.keys, [mtd.slice_block(b, "properties", _first(b.properties)) for b in t]
    )


def _zeros(t: mtd.TensorMap) -> np.ndarray:
    """A new column of the samples of block 1."""
    return np.zeros(len(t.block(1)), np.int32)


_SYSTEM = _labels(["system"], [[0], [2]])
_PROPERTY = _labels(["n"], [[1]])
_KEY = _labels(["center"], [[6]])
_SCALAR: Callable[[mtd.TensorMap], mtd.TensorMap] = lambda t: mtd.multiply(t, 1.5)  # noqa: E731

#: builds from the map that compute nothing: public name -> call
LAZY: dict[str, Callable[[mtd.TensorMap], Any]] = {
    "abs": mtd.abs,
    "add": lambda t: mtd.add(t, t),
    "subtract": lambda t: mtd.subtract(t, 2),
    "multiply": lambda t: mtd.multiply(t, t),
    "divide": lambda t: mtd.divide(t, t),
    "pow": lambda t: mtd.pow(t, 3),
    "dot": lambda t: mtd.dot(_without_components(t), _without_components(t)),
    "solve": lambda t: mtd.solve(_square(t), _solve_right(_square(t))),
    "lstsq": lambda t: mtd.lstsq(_without_components(t), _without_components(t), rcond=1e-10),
    "append_dimension": lambda t: mtd.append_dimension(t, "samples", "x", 4),
    "insert_dimension": lambda t: mtd.insert_dimension(t, "properties", 0, "x", 4),
    "remove_dimension": lambda t: mtd.remove_dimension(
        mtd.insert_dimension(t, "samples", 0, "x", 4), "samples", "x"
    ),
    "rename_dimension": lambda t: mtd.rename_dimension(t, "samples", "atom", "a"),
    "permute_dimensions": lambda t: mtd.permute_dimensions(t, "samples", [1, 0]),
    "block_from_array": lambda t: mtd.block_from_array(t.block(1).values),
    "components_to_properties": lambda t: mtd.components_to_properties(t, "o3_mu"),
    "keys_to_properties": lambda t: mtd.keys_to_properties(t, "neighbor"),
    "keys_to_samples": lambda t: mtd.keys_to_samples(t, "neighbor"),
    "detach": mtd.detach,
    "detach_block": lambda t: mtd.detach_block(t.block(0)),
    "requires_grad": lambda t: mtd.requires_grad(t, False),
    "requires_grad_block": lambda t: mtd.requires_grad_block(t.block(0), False),
    "drop_blocks": lambda t: mtd.drop_blocks(t, _KEY, copy=True),
    "filter_blocks": lambda t: mtd.filter_blocks(t, _KEY),
    "drop_empty_blocks": lambda t: mtd.drop_empty_blocks(t, copy=True),
    "empty_like": lambda t: mtd.empty_like(t, gradients="positions"),
    "empty_like_block": lambda t: mtd.empty_like_block(t.block(0)),
    "ones_like": mtd.ones_like,
    "ones_like_block": lambda t: mtd.ones_like_block(t.block(1)),
    "zeros_like": mtd.zeros_like,
    "zeros_like_block": lambda t: mtd.zeros_like_block(t.block(1)),
    "random_uniform_like": mtd.random_uniform_like,
    "random_uniform_like_block": lambda t: mtd.random_uniform_like_block(t.block(1)),
    "equal_metadata": lambda t: mtd.equal_metadata(t, _SCALAR(t)),
    "equal_metadata_raise": lambda t: mtd.equal_metadata_raise(t, _SCALAR(t)),
    "equal_metadata_block": lambda t: mtd.equal_metadata_block(t.block(0), t.block(1)),
    "equal_metadata_block_raise": lambda t: mtd.equal_metadata_block_raise(
        t.block(1), _SCALAR(t).block(1)
    ),
    "is_contiguous": mtd.is_contiguous,
    "is_contiguous_block": lambda t: mtd.is_contiguous_block(t.block(1)),
    "make_contiguous": mtd.make_contiguous,
    "make_contiguous_block": lambda t: mtd.make_contiguous_block(t.block(4)),
    "join": lambda t: mtd.join([t, _SCALAR(t)], "samples", add_dimension="j"),
    "join_blocks": lambda t: mtd.join_blocks([t.block(1), t.block(1)], "properties", "j"),
    "remove_gradients": lambda t: mtd.remove_gradients(t, ["strain"]),
    "remove_gradients_block": lambda t: mtd.remove_gradients_block(t.block(1)),
    "slice": lambda t: mtd.slice(t, "samples", _SYSTEM),
    "slice_block": lambda t: mtd.slice_block(t.block(4), "properties", _PROPERTY),
    "split": lambda t: mtd.split(t, "samples", [_SYSTEM, _labels(["atom"], [[1]])]),
    "split_block": lambda t: mtd.split_block(t.block(1), "properties", [_PROPERTY]),
    "sort": lambda t: mtd.sort(t, descending=True),
    "sort_block": lambda t: mtd.sort_block(t.block(4), "samples", descending=True),
    "unique_metadata": lambda t: mtd.unique_metadata(t, "samples", "atom", "positions"),
    "unique_metadata_block": lambda t: mtd.unique_metadata_block(t.block(1), "samples", "system"),
    **{
        f"{kind}_over_{axis}{suffix}": (
            lambda t, f=f"{kind}_over_{axis}{suffix}", n=name, s=suffix: getattr(mtd, f)(
                t.block(1) if s else t, n
            )
        )
        for kind in ("sum", "mean", "var", "std")
        for axis, name in (("samples", "atom"), ("properties", "l"))
        for suffix in ("", "_block")
    },
    # the package's readers and writers
    "open_zarr": None,  # the map itself, see `_read`
    "load": None,
    "load_block": None,
    "load_labels": None,
    "to_zarr": lambda t: mtd.to_zarr(_SCALAR(t), _output("planned.zarr"), compute=False),
    # methods of Labels
    "Labels.append": lambda t: t.block(1).samples.append("x", _zeros(t)),
    "Labels.column": lambda t: t.block(1).samples.column("atom"),
    "Labels.device": lambda t: t.block(1).samples.device,
    "Labels.difference": lambda t: t.block(1).samples.difference(t.block(3).samples),
    "Labels.difference_and_mapping": lambda t: t.block(1).samples.difference_and_mapping(
        t.block(3).samples
    ),
    "Labels.digest": lambda t: t.block(1).samples.digest(),
    "Labels.empty": lambda t: mtd.Labels.empty(t.block(1).samples.names),
    "Labels.entry": lambda t: t.block(1).samples.entry(0),
    "Labels.insert": lambda t: t.block(1).samples.insert(
        0, "x", np.zeros(len(t.block(1)), np.int32)
    ),
    "Labels.intersection": lambda t: t.block(1).samples.intersection(t.block(3).samples),
    "Labels.intersection_and_mapping": lambda t: t.block(1).samples.intersection_and_mapping(
        t.block(3).samples
    ),
    "Labels.is_loaded": lambda t: t.block(1).samples.is_loaded,
    "Labels.names": lambda t: t.block(1).samples.names,
    "Labels.permute": lambda t: t.block(1).samples.permute([1, 0]),
    "Labels.position": lambda t: t.block(1).samples.position((0, 1)),
    "Labels.print": lambda t: t.block(1).samples.print(4),
    "Labels.range": lambda t: mtd.Labels.range("x", 4),
    "Labels.remove": lambda t: (
        t.block(1).samples.append("x", np.zeros(len(t.block(1)), np.int32)).remove("x")
    ),
    "Labels.rename": lambda t: t.block(1).samples.rename("atom", "a"),
    "Labels.save_buffer": lambda t: t.block(1).samples.save_buffer(),
    "Labels.select": lambda t: t.block(1).samples.select(_SYSTEM),
    "Labels.single": lambda t: mtd.Labels.single(),
    "Labels.to": lambda t: t.block(1).samples.to("cpu"),
    "Labels.union": lambda t: t.block(1).samples.union(t.block(3).samples),
    "Labels.union_and_mapping": lambda t: t.block(1).samples.union_and_mapping(t.block(3).samples),
    "Labels.values": lambda t: t.block(1).samples.values,
    # methods of TensorBlock
    "TensorBlock.add_gradient": lambda t: (
        _SCALAR(t).block(3).copy().add_gradient("other", t.block(3).gradient("cell").copy())
    ),
    "TensorBlock.components": lambda t: t.block(1).components,
    "TensorBlock.copy": lambda t: t.block(1).copy(),
    "TensorBlock.device": lambda t: t.block(1).device,
    "TensorBlock.dtype": lambda t: t.block(1).dtype,
    "TensorBlock.gradient": lambda t: t.block(1).gradient("positions"),
    "TensorBlock.gradients": lambda t: list(t.block(1).gradients()),
    "TensorBlock.gradients_list": lambda t: t.block(1).gradients_list(),
    "TensorBlock.has_gradient": lambda t: t.block(1).has_gradient("cell"),
    "TensorBlock.is_view": lambda t: t.block(1).is_view,
    "TensorBlock.nbytes": lambda t: t.block(1).nbytes,
    "TensorBlock.npartitions": lambda t: t.block(1).npartitions,
    "TensorBlock.properties": lambda t: t.block(1).properties,
    "TensorBlock.row_pointer": lambda t: t.block(1).gradient("positions").row_pointer,
    "TensorBlock.samples": lambda t: t.block(1).samples,
    "TensorBlock.set_row_pointer": lambda t: (
        _SCALAR(t).block(3).set_row_pointer("strain", np.arange(len(t.block(3)) + 1))
    ),
    "TensorBlock.shape": lambda t: t.block(1).shape,
    "TensorBlock.to": lambda t: t.block(1).to(dtype=np.float32),
    "TensorBlock.to_xarray": lambda t: t.block(1).gradient("strain").to_xarray(),
    "TensorBlock.values": lambda t: t.block(1).values,
    "TensorBlock.__repr__": lambda t: (repr(t.block(1)), t.block(1)._repr_html_()),
    # methods of TensorMap
    "TensorMap.block": lambda t: t.block(center=6, neighbor=1),
    "TensorMap.block_by_id": lambda t: t.block_by_id(2),
    "TensorMap.blocks": lambda t: t.blocks(_KEY),
    "TensorMap.blocks_by_id": lambda t: t.blocks_by_id([0, 3]),
    "TensorMap.component_names": lambda t: t.component_names,
    "TensorMap.components_to_properties": lambda t: t.components_to_properties("o3_mu"),
    "TensorMap.copy": lambda t: t.copy(),
    "TensorMap.device": lambda t: t.device,
    "TensorMap.dtype": lambda t: t.dtype,
    "TensorMap.get_info": lambda t: t.get_info("missing"),
    "TensorMap.info": lambda t: t.info(),
    "TensorMap.is_view": lambda t: t.is_view,
    "TensorMap.items": lambda t: list(t.items()),
    "TensorMap.keys": lambda t: t.keys,
    "TensorMap.keys_to_properties": lambda t: t.keys_to_properties("neighbor"),
    "TensorMap.keys_to_samples": lambda t: t.keys_to_samples("neighbor"),
    "TensorMap.nbytes": lambda t: t.nbytes,
    "TensorMap.npartitions": lambda t: t.npartitions,
    "TensorMap.print": lambda t: t.print(3),
    "TensorMap.property_names": lambda t: t.property_names,
    "TensorMap.sample_names": lambda t: t.sample_names,
    "TensorMap.set_info": lambda t: t.copy().set_info("origin", "test"),
    "TensorMap.to": lambda t: t.to(dtype=np.float32),
    "TensorMap.to_zarr": lambda t: t.to_zarr(_output("method.zarr"), compute=False),
    "TensorMap.__repr__": lambda t: (repr(t), str(t), t._repr_html_()),
}

#: what computes: public name -> call; each computes once for the whole map
ONCE: dict[str, Callable[[mtd.TensorMap], Any]] = {
    "equal": lambda t: mtd.equal(t, t),
    "equal_raise": lambda t: mtd.equal_raise(t, t),
    "allclose": lambda t: mtd.allclose(t, _SCALAR(t)),
    "allclose_raise": lambda t: mtd.allclose_raise(t, t),
    "equal_block": lambda t: mtd.equal_block(t.block(1), t.block(1)),
    "equal_block_raise": lambda t: mtd.equal_block_raise(t.block(1), t.block(1)),
    "allclose_block": lambda t: mtd.allclose_block(t.block(1), t.block(1)),
    "allclose_block_raise": lambda t: mtd.allclose_block_raise(t.block(1), t.block(1)),
    "to_metatensor": mtd.to_metatensor,
    "save": lambda t: mtd.save(io.BytesIO(), t),
    "TensorMap.compute": lambda t: t.compute(),
    "TensorMap.persist": lambda t: t.persist(),
    "TensorMap.save": lambda t: t.save(_output("method.mts")),
    "TensorMap.save_buffer": lambda t: t.save_buffer(),
    "TensorBlock.compute": lambda t: t.block(1).compute(),
    "TensorBlock.persist": lambda t: t.block(1).persist(),
    "TensorBlock.save": lambda t: t.block(1).save(_output("method-block.mts")),
    "TensorBlock.save_buffer": lambda t: t.block(1).save_buffer(),
}

#: nothing to build from a map: public name -> why
OTHER = {
    "checks_enabled": "a switch",
    "unsafe_disable_checks": "a switch",
    "unsafe_enable_checks": "a switch",
    "one_hot": "numpy arrays from Labels",
    "from_metatensor": "from metatensor's numpy arrays",
    "discard_append": "an interrupted append of a store",
    "verify": "checks a store's chunks: reads them all by design",
    "write_batches": "runs a function over items into a store",
    "Labels.lazy": "Labels from a function called on first use",
    "Labels.load": "a reader of Labels files",
    "Labels.load_buffer": "a reader of Labels buffers",
    "Labels.save": "writes Labels (numpy) to a file",
    "TensorBlock.load": "metatensor's eager reader, as metatensor",
    "TensorBlock.load_buffer": "metatensor's eager reader, as metatensor",
    "TensorBlock.visualize": "dask's graph drawing (graphviz)",
    "TensorMap.load": "metatensor's eager reader, as metatensor",
    "TensorMap.load_buffer": "metatensor's eager reader, as metatensor",
    "TensorMap.visualize": "dask's graph drawing (graphviz)",
}

_OUTPUT = Path()
_WRITES = itertools.count()


def _output(name: str) -> Path:
    """A new path in the folder of the test's files."""
    return _OUTPUT / f"{next(_WRITES)}-{name}"


def _public() -> set[str]:
    """Every public callable of the package: functions and the public methods and
    properties of the three classes."""
    names = {n for n in (*mtd.__all__, *mtd.operations.__all__) if _is_function(n)}
    for cls in (mtd.Labels, mtd.TensorBlock, mtd.TensorMap):
        names |= {f"{cls.__name__}.{m}" for m in dir(cls) if not m.startswith("_")}
        names.add(f"{cls.__name__}.__repr__")
    names.discard("Labels.__repr__")  # Labels hold numpy arrays only
    return names


def _is_function(name: str) -> bool:
    """Whether ``name`` is a function or context manager of the package (not a class of
    data or of errors, nor a module)."""
    value = getattr(mtd, name)
    if name in ("Labels", "LabelsEntry", "TensorBlock", "TensorMap"):
        return False
    return callable(value) and not (isinstance(value, type) and issubclass(value, Exception))


def test_every_public_name_is_checked():
    public = _public()
    listed = set(LAZY) | set(ONCE) | set(OTHER)
    assert not public - listed, sorted(public - listed)
    assert not listed - public, sorted(listed - public)


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    global _OUTPUT
    folder = tmp_path_factory.mktemp("public")
    _OUTPUT = folder
    ours, theirs = pair()
    metatensor.save(folder / "map.mts", theirs)
    metatensor.save(folder / "block.mts", theirs.block(1))
    metatensor.save(folder / "labels.mts", theirs.block(1).samples)
    with dask.config.set({"metatensor_dask.chunk-size": "4KiB"}):
        mtd.to_zarr(ours, folder / "map.zarr")
    return {
        "mts": folder / "map.mts",
        "zarr": folder / "map.zarr",
        "block": folder / "block.mts",
        "labels": folder / "labels.mts",
    }


def _read(stored: dict[str, Path], source: str) -> mtd.TensorMap:
    if source == "mts":
        return mtd.load(stored["mts"], chunks=4)
    return mtd.open_zarr(stored["zarr"])


def _data_reads(opened: list[str], stored: dict[str, Path]) -> list[str]:
    """The files of values read: chunk files of the store, or the ``.mts`` files."""
    files = {str(stored["mts"]), str(stored["block"])}
    return [p for p in opened if VALUES_CHUNK.search(p) or p in files]


def test_the_map_has_chunks_and_gradients(stored):
    tensor = _read(stored, "zarr")
    chunked = [b for b in tensor.blocks() if len(b.samples) > 20 and len(b.properties) > 0]
    assert chunked and all(b.values.numblocks[0] > 1 for b in chunked)
    assert all(set(b.gradients_list()) == {"positions", "strain", "cell"} for b in tensor)


@pytest.mark.parametrize("source", ["zarr", "mts"])
def test_readers_read_no_values(stored, source):
    with opened_files() as opened, raise_if_dask_computes():
        if source == "zarr":
            mtd.open_zarr(stored["zarr"])
        else:
            mtd.load_labels(stored["labels"])
            block = mtd.load_block(stored["block"], chunks=4)
            mtd.load(stored["mts"], chunks=4)
    assert not [p for p in opened if VALUES_CHUNK.search(p)]
    if source == "mts":
        assert block.values.numblocks[0] > 1


@pytest.mark.parametrize("source", ["zarr", "mts"])
@pytest.mark.parametrize("name", [n for n, f in LAZY.items() if f is not None])
def test_building_computes_and_reads_nothing(stored, source, name):
    tensor = _read(stored, source)
    with opened_files() as opened, raise_if_dask_computes():
        LAZY[name](tensor)
    assert not _data_reads(opened, stored), opened[:3]


@pytest.mark.parametrize("source", ["zarr", "mts"])
@pytest.mark.parametrize("name", list(ONCE))
def test_what_computes_computes_once(stored, source, name):
    tensor = _read(stored, source)
    with opened_files() as opened, raise_if_dask_computes(max_computes=1):
        ONCE[name](tensor)
    assert _data_reads(opened, stored)


def test_the_read_check_sees_a_read(stored):
    tensor = _read(stored, "zarr")
    with opened_files() as opened:
        tensor.block(1).values.compute(scheduler="sync")
    assert _data_reads(opened, stored)
