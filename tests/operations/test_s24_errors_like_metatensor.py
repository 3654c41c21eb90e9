"""Wrong inputs to the operations, on maps read from a Zarr store: refused as
metatensor-operations refuses them (an error of the same type, saying at least what
metatensor says), before any chunk is computed."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd


def _refuse_to_compute(dsk: Any, keys: Any, **kwargs: Any) -> Any:
    raise AssertionError("a wrong input was refused only after computing")


def _map(seed: int, keys: int = 2, properties: int = 3, property_name: str = "p"):
    """``keys`` blocks of random sizes with a gradient."""
    rng = np.random.default_rng(seed)
    blocks = []
    for _ in range(keys):
        rows = int(rng.integers(3, 7))
        block = metatensor.TensorBlock(
            rng.random((rows, properties)),
            metatensor.Labels(["system"], np.arange(rows, dtype=np.int32)[:, None]),
            [],
            metatensor.Labels.range(property_name, properties),
        )
        samples = np.stack([np.arange(rows), np.zeros(rows)], axis=1).astype(np.int32)
        block.add_gradient(
            "positions",
            metatensor.TensorBlock(
                rng.random((rows, 3, properties)),
                metatensor.Labels(["sample", "atom"], samples),
                [metatensor.Labels.range("xyz", 3)],
                block.properties,
            ),
        )
        blocks.append(block)
    return metatensor.TensorMap(metatensor.Labels.range("key", keys), blocks)


MAPS = {
    "A": lambda: _map(1),
    "B": lambda: _map(2),
    "more_keys": lambda: _map(3, keys=3),
    "other_properties": lambda: _map(4, properties=2),
    "other_property_name": lambda: _map(5, property_name="q"),
}


@pytest.fixture(scope="module")
def maps(tmp_path_factory) -> dict[str, SimpleNamespace]:
    """The maps of metatensor, and the same maps opened from Zarr stores."""
    theirs, ours = {}, {}
    for name, build in MAPS.items():
        theirs[name] = build()
        path = tmp_path_factory.mktemp("stores") / f"{name}.zarr"
        mtd.from_metatensor(theirs[name]).to_zarr(path)
        ours[name] = mtd.open_zarr(path, chunks=2)
    return {
        "theirs": SimpleNamespace(ops=metatensor, **theirs),
        "ours": SimpleNamespace(ops=mtd, **ours),
    }


def _labels(n: SimpleNamespace, name: str, values: list[int]) -> Any:
    module = metatensor if n.ops is metatensor else mtd
    return module.Labels([name], np.array(values, dtype=np.int32)[:, None])


CASES: dict[str, Callable[[SimpleNamespace], Any]] = {
    "add more keys": lambda n: n.ops.add(n.A, n.more_keys),
    "subtract other properties": lambda n: n.ops.subtract(n.A, n.other_properties),
    "multiply other property name": lambda n: n.ops.multiply(n.A, n.other_property_name),
    "divide by a string": lambda n: n.ops.divide(n.A, "x"),
    "pow of a map": lambda n: n.ops.pow(n.A, n.B),
    "dot other properties": lambda n: n.ops.dot(n.A, n.other_properties),
    "dot with gradients": lambda n: n.ops.dot(n.A, n.B),
    "lstsq more keys": lambda n: n.ops.lstsq(n.A, n.more_keys, rcond=1e-8),
    "equal_metadata_raise other properties": lambda n: n.ops.equal_metadata_raise(
        n.A, n.other_properties
    ),
    "equal_metadata check keys": lambda n: n.ops.equal_metadata(n.A, n.B, check=["keys"]),
    "zeros_like unknown gradient": lambda n: n.ops.zeros_like(n.A, gradients=["cell"]),
    "drop_blocks other names": lambda n: n.ops.drop_blocks(n.A, _labels(n, "z", [0])),
    "slice components": lambda n: n.ops.slice(n.A, "components", [0]),
    "slice unknown name": lambda n: n.ops.slice(n.A, "samples", _labels(n, "z", [0])),
    "slice 2-D array": lambda n: n.ops.slice(n.A, "samples", np.zeros((2, 2), dtype=int)),
    "split not a list": lambda n: n.ops.split(n.A, "samples", np.array([0])),
    "split keys": lambda n: n.ops.split(n.A, "keys", [[0]]),
    "join empty list": lambda n: n.ops.join([], "samples"),
    "join components": lambda n: n.ops.join([n.A, n.B], "components"),
    "join different keys": lambda n: n.ops.join([n.A, n.more_keys], "samples"),
    "join different_keys option": lambda n: n.ops.join([n.A, n.B], "samples", different_keys="x"),
    "join same samples": lambda n: n.ops.join([n.A, n.A], "samples"),
    "sort keys of a block": lambda n: n.ops.sort_block(n.A.block(0), axes="keys"),
    "sum_over_samples unknown": lambda n: n.ops.sum_over_samples(n.A, "z"),
    "std_over_properties unknown": lambda n: n.ops.std_over_properties(n.A, ["p", "z"]),
    "mean_over_samples not a name": lambda n: n.ops.mean_over_samples(n.A, ["system", 0]),
    "append_dimension components": lambda n: n.ops.append_dimension(n.A, "components", "x", 0),
    "remove_dimension unknown": lambda n: n.ops.remove_dimension(n.A, "samples", "z"),
    "rename_dimension unknown": lambda n: n.ops.rename_dimension(n.A, "keys", "z", "y"),
    "unique_metadata keys": lambda n: n.ops.unique_metadata(n.A, "keys", "system"),
    "unique_metadata unknown gradient": lambda n: n.ops.unique_metadata(
        n.A, "samples", "system", gradient="cell"
    ),
    "one_hot missing value": lambda n: n.ops.one_hot(_labels(n, "a", [2]), _labels(n, "a", [0])),
}


def _builtin_bases(error: type) -> set[type]:
    return {base for base in error.__mro__ if base.__module__ == "builtins"} - {
        Exception,
        BaseException,
        object,
    }


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_as_metatensor_refuses_before_computing(maps, case):
    with pytest.raises(Exception) as expected:
        CASES[case](maps["theirs"])
    with dask.config.set(scheduler=_refuse_to_compute):
        with pytest.raises(Exception) as error:
            CASES[case](maps["ours"])
    theirs, ours = expected.value, error.value
    assert type(ours).__name__ == type(theirs).__name__ or _builtin_bases(type(theirs)) <= set(
        type(ours).__mro__
    ), (type(theirs), type(ours))
    assert str(theirs).replace("metatensor.", "metatensor_dask.") in str(ours).replace(
        "metatensor_dask.tensor.", "metatensor_dask."
    ).replace("metatensor_dask.labels.", "metatensor_dask.")
