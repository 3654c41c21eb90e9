"""metatensor-core objects given where metatensor-dask ones are expected (a script
following featomic's tutorials builds metatensor.Labels): the TypeError names the
remedy, as for the operations."""

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd


def _core_map() -> metatensor.TensorMap:
    block = metatensor.TensorBlock(
        np.ones((2, 1)), metatensor.Labels.range("atom", 2), [], metatensor.Labels.range("n", 1)
    )
    keys = metatensor.Labels(["center_type", "neighbor_type"], np.array([[1, 8]], np.int32))
    return metatensor.TensorMap(keys, [block])


@pytest.mark.parametrize("call", ["keys_to_properties", "keys_to_samples", "to_zarr", "save"])
def test_core_objects_are_refused_with_the_remedy(tmp_path, call):
    core = _core_map()
    ours = mtd.from_metatensor(core)
    neighbors = metatensor.Labels(["neighbor_type"], np.zeros((0, 1), np.int32))
    calls = {
        "keys_to_properties": lambda: mtd.keys_to_properties(ours, neighbors),
        "keys_to_samples": lambda: ours.keys_to_samples(neighbors),
        "to_zarr": lambda: mtd.to_zarr(core, tmp_path / "core.zarr"),
        "save": lambda: mtd.save(tmp_path / "core.mts", core),
    }
    with pytest.raises(TypeError, match=r"convert it with `metatensor_dask\.from_metatensor`"):
        calls[call]()
    assert not list(tmp_path.iterdir())
