"""xarray reads the stores this package writes: every array carries dimension names that
xarray's ``open_datatree`` accepts; stores written before they did still open."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
import zarr
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def _arrays(block, prefix: str):
    """(path, block) of a block and of its gradients, recursively."""
    yield prefix, block
    for parameter, gradient in block.gradients():
        yield from _arrays(gradient, f"{prefix}/gradients/{parameter}")


@pytest.mark.parametrize("consolidated", [True, False])
def test_xarray_open_datatree_reads_what_we_read(tmp_path, consolidated):
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(make_metatensor(seed=3)).to_zarr(path, chunks=4)
    ours = mtd.open_zarr(path)
    tree = xr.open_datatree(path, engine="zarr", consolidated=consolidated)

    np.testing.assert_array_equal(tree["keys"].values, ours.keys.values)
    assert tree["keys"].attrs["names"] == ours.keys.names
    assert tree["keys"].dims == ("keys_entry", "keys_dimension")
    checked = []
    for i, block in enumerate(ours.blocks()):
        for prefix, part in _arrays(block, f"blocks/{i}"):
            values = tree[f"{prefix}/values"]
            assert values.dtype == part.dtype
            np.testing.assert_array_equal(values.values, part.values.compute())
            np.testing.assert_array_equal(tree[f"{prefix}/samples"].values, part.samples.values)
            assert tree[f"{prefix}/samples"].attrs["names"] == part.samples.names
            for j, component in enumerate(part.components):
                stored = tree[f"{prefix}/components/{j}"]
                np.testing.assert_array_equal(stored.values, component.values)
            checked.append(prefix)
    assert "blocks/1/gradients/positions/gradients/cell" in checked
    # a block's axes are named as TensorBlock.to_xarray names them; a gradient's own
    # sample axis is prefixed so that it differs from its parent's
    assert tree["blocks/0/values"].dims == ("samples", "o3_mu", "properties")
    assert tree["blocks/0/gradients/positions/values"].dims == (
        "positions_samples",
        "xyz",
        "o3_mu",
        "properties",
    )
    assert tree["blocks/0/gradients/positions/row_pointer"].dims == ("positions_row_pointer_entry",)
    group = zarr.open_group(path, mode="r")
    arrays = [a for _, a in group.members(max_depth=None) if isinstance(a, zarr.Array)]
    assert len(arrays) > 40
    assert all(a.metadata.dimension_names is not None for a in arrays)


def _as_written_before(attributes, nodes) -> None:
    """Dimension names as format 2 stores had them before every array carried them:
    only on values, with a gradient's sample axis named ``samples``."""
    for path, document in nodes.items():
        if document["node_type"] != "array":
            continue
        if path.endswith("/values"):
            document["dimension_names"] = ["samples", *document["dimension_names"][1:]]
        else:
            del document["dimension_names"]


def test_stores_without_dimension_names_open_and_are_rewritten(tmp_path):
    path = tmp_path / "t.zarr"
    theirs = make_metatensor(seed=3)
    mtd.from_metatensor(theirs).to_zarr(path, chunks=4)
    root = json.loads((path / "zarr.json").read_text())
    nodes = root["consolidated_metadata"]["metadata"]
    _as_written_before(root["attributes"], nodes)
    (path / "zarr.json").write_text(json.dumps(root))
    for name, document in nodes.items():
        (path / name / "zarr.json").write_text(json.dumps(document))
    with pytest.raises(KeyError, match="missing the `dimension_names`"):  # what it fixes
        xr.open_datatree(path, engine="zarr", consolidated=True)

    assert_equal_to_metatensor(mtd.open_zarr(path), theirs)
    assert mtd.verify(path).ok
    # the writer's modes compare stored metadata without the dimension names
    mtd.from_metatensor(theirs).to_zarr(path, mode="r+")
    mtd.from_metatensor(theirs).to_zarr(path, mode="r+", resume=True)
    ours = mtd.open_zarr(path)
    keys = mtd.Labels(ours.keys.names, ours.keys.values + 100)
    mtd.TensorMap(keys, [b.copy() for b in mtd.from_metatensor(theirs).blocks()]).to_zarr(
        path, mode="a"
    )
    extended = mtd.open_zarr(path)
    assert len(extended) == 2 * len(theirs) and mtd.verify(path).ok
    for i in range(len(extended)):
        assert_equal_to_metatensor(extended.block_by_id(i), theirs.block_by_id(i % len(theirs)))


def _named_components(block_names: list[str], gradient_names: list[str]):
    """A metatensor map whose block has components ``block_names`` (sizes 2, 3, ...)
    and a positions gradient with the components ``gradient_names`` too."""
    import metatensor

    rng = np.random.default_rng(4)
    sizes = [2 + j for j in range(len(block_names))]
    components = [metatensor.Labels.range(n, s) for n, s in zip(block_names, sizes, strict=True)]
    extra = [metatensor.Labels.range(n, 4 + j) for j, n in enumerate(gradient_names)]
    properties = metatensor.Labels.range("n", 3)
    block = metatensor.TensorBlock(
        rng.random((5, *sizes, 3)), metatensor.Labels.range("system", 5), components, properties
    )
    rows = metatensor.Labels(
        ["sample", "system", "atom"], np.array([[i, i, 0] for i in range(5)], np.int32)
    )
    shape = (5, *(4 + j for j in range(len(extra))), *sizes, 3)
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(rng.random(shape), rows, extra + components, properties),
    )
    return metatensor.TensorMap(metatensor.Labels.range("key", 1), [block])


@pytest.mark.parametrize(
    "block_names, gradient_names",
    [
        (["samples"], ["xyz"]),
        (["properties", "samples_entry"], ["xyz"]),
        (["o3_mu"], ["samples"]),
        (["o3_mu"], ["positions_samples", "properties"]),
        (["samples", "samples_component"], ["row_pointer_entry"]),
    ],
)
def test_components_named_like_other_axes_open_in_xarray(tmp_path, block_names, gradient_names):
    """A component named like an axis the store names otherwise (``samples``,
    ``properties``, a Labels' ``*_entry``) gets a dimension name of its own: with the
    same name, xarray refused the store (one name, two sizes)."""
    path = tmp_path / "t.zarr"
    theirs = _named_components(block_names, gradient_names)
    mtd.from_metatensor(theirs).to_zarr(path)
    tree = xr.open_datatree(path, engine="zarr")
    block = theirs.block(0)
    values = tree["blocks/0/values"]
    np.testing.assert_array_equal(values.values, block.values)
    assert len(set(values.dims)) == values.ndim
    gradient = tree["blocks/0/gradients/positions/values"]
    np.testing.assert_array_equal(gradient.values, block.gradient("positions").values)
    assert len(set(gradient.dims)) == gradient.ndim
    # the block's components keep one name on both arrays (xarray aligns them)
    assert gradient.dims[-1 - len(block_names) : -1] == values.dims[1:-1]
    assert_equal_to_metatensor(mtd.open_zarr(path), theirs)
