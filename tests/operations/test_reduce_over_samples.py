import metatensor
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from oracle2 import (
    assert_co_partitioned,
    assert_same_error,
    check_against_metatensor,
    check_function,
    check_out_of_core,
    densified,
    finite_differences,
    to_mts,
    tutorial,
)

import metatensor_dask as mtd
from metatensor_dask.testing import strategies

REDUCTIONS = ["sum", "mean", "var", "std"]


@pytest.mark.parametrize("name", ["radial-spectrum", "spherical-expansion"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("names", ["atom", ["system", "atom"], "system", []])
def test_like_metatensor(name, reduction, names):
    ours, theirs = tutorial(name)
    reduced = [names] if isinstance(names, str) else names
    # metatensor's mean/var/std gradients are only right with dense gradients
    dense = densified(theirs, reduced)
    function = f"{reduction}_over_samples"
    result = check_function(function, ours, dense, names, rtol=1e-10, atol=1e-12)
    assert_co_partitioned(result)
    check_function(
        function + "_block", ours.block(4), dense.block(4), names, rtol=1e-10, atol=1e-12
    )


@settings(max_examples=10)
@given(
    tensor=strategies.tensor_maps(max_samples=7, max_blocks=2, grouped=False),
    reduction=st.sampled_from(REDUCTIONS),
    names=st.sampled_from([["atom"], ["system"], ["system", "atom"]]),
)
def test_random_tensors(tensor, reduction, names):
    # metatensor gives empty blocks no sample names when every name is reduced
    assume(len(names) < 2 or all(len(b.samples) for b in tensor.blocks()))
    dense = densified(to_mts(tensor), names)
    check_function(f"{reduction}_over_samples", tensor, dense, names, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_one_gradient_row_after_an_empty_chunk(reduction):
    """A gradient of one row chunked as (0, 1), as co-partitioning gives when the first
    values chunk has no gradient rows: dask 2026.8's element-wise operators take such an
    axis for a broadcast one (found by test_random_tensors)."""
    import dask.array as da

    def labels(names, values):
        return mtd.Labels(names, np.array(values, dtype=np.int32))

    xyz = labels(["xyz"], [[0], [1], [2]])
    block = mtd.TensorBlock(
        da.from_array(np.array([[1.5], [2.5]]), chunks=((1, 1), (1,))),
        labels(["system", "atom"], [[0, 0], [0, 1]]),
        [],
        labels(["p"], [[0]]),
    )
    positions = da.from_array(np.array([[[1.0], [2.0], [4.0]]]), chunks=((0, 1), (3,), (1,)))
    block.add_gradient(
        "positions",
        mtd.TensorBlock(
            positions,
            labels(["sample", "system", "atom"], [[1, 0, 0]]),
            [xyz],
            labels(["p"], [[0]]),
        ),
    )
    tensor = mtd.TensorMap(labels(["k"], [[0]]), [block])
    check_function(
        f"{reduction}_over_samples",
        tensor,
        densified(to_mts(tensor), ["system"]),
        ["system"],
        rtol=1e-10,
        atol=1e-12,
    )


def _one_parameter_per_entry(tensor):
    """The x component of the positions gradient only: one scalar per gradient entry."""
    blocks = []
    for block in tensor.blocks():
        gradient = block.gradient("positions")
        new = mtd.TensorBlock(block.values, block.samples, block.components, block.properties)
        new.add_gradient(
            "positions",
            mtd.TensorBlock(
                gradient.values[:, 0],
                gradient.samples,
                gradient.components[1:],
                gradient.properties,
            ),
        )
        blocks.append(new)
    return mtd.TensorMap(tensor.keys, blocks)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_finite_differences_with_sparse_gradients(reduction):
    """Each atom's gradient only has rows for its neighbours: metatensor 0.5.0 gets
    mean/var/std gradients wrong here, finite differences show ours are right."""
    ours, theirs = tutorial("spherical-expansion")
    tensor = _one_parameter_per_entry(ours)
    function = getattr(mtd, f"{reduction}_over_samples")
    finite_differences(lambda t: function(t, "atom"), tensor, "positions")
    if reduction != "sum":
        wrong = getattr(metatensor, f"{reduction}_over_samples")(theirs, "atom")
        right = function(ours, "atom").compute()
        differ = [
            not np.allclose(w.gradient("positions").values, r.gradient("positions").values)
            for w, r in zip(wrong.blocks(), right.blocks(), strict=True)
        ]
        assert any(differ)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_out_of_core_structure(reduction):
    """Chunk-local partial sums: output chunks no larger than the input's, one per input
    chunk, gradients co-partitioned, and the graph grows linearly with the number of
    chunks."""
    function = getattr(mtd, f"{reduction}_over_samples")
    results = check_out_of_core(lambda tensor: function(tensor, "atom"))
    for n_chunks, result in results.items():
        assert len(result.block(0).values.chunks[0]) == n_chunks


def test_empty_blocks_and_empty_gradients():
    ours, theirs = tutorial("radial-spectrum")
    empty = mtd.slice(ours, "samples", mtd.Labels(["atom"], np.array([[2]])))
    empty_theirs = metatensor.slice(theirs, "samples", metatensor.Labels(["atom"], np.array([[2]])))
    check_against_metatensor(
        lambda: mtd.sum_over_samples(empty, "atom"),
        lambda: metatensor.sum_over_samples(empty_theirs, "atom"),
        [empty],
    )


def test_reducing_every_name_of_an_empty_block():
    """metatensor gives such a block samples without names, so the map is invalid;
    here it keeps the ``_`` name of the other blocks."""
    ours, _ = tutorial("radial-spectrum")
    tensor = mtd.slice(ours, "samples", mtd.Labels(["atom"], np.array([[2]])))
    result = mtd.mean_over_samples(tensor, ["system", "atom"])
    assert {tuple(b.samples.names) for b in result.blocks()} == {("_",)}
    assert [len(b.samples) for b in result.blocks()] == [
        1 if len(b.samples) else 0 for b in tensor.blocks()
    ]


def test_errors_like_metatensor():
    ours, theirs = tutorial("radial-spectrum")
    for reduction in REDUCTIONS:
        assert_same_error(
            lambda reduction=reduction: getattr(mtd, f"{reduction}_over_samples")(
                ours, ["atom", "zz"]
            ),
            lambda reduction=reduction: getattr(metatensor, f"{reduction}_over_samples")(
                theirs, ["atom", "zz"]
            ),
        )
    with pytest.raises(ValueError, match=r"sample name \(zz\) is not part"):
        mtd.sum_over_samples_block(ours.block(0), "zz")
