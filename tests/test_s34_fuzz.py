"""Defects found by a differential fuzzer of the operations against metatensor-operations.

An infinite value in one target of ``lstsq`` made numpy's (and metatensor's) weights NaN
for every target of a block in one chunk, and the QR factorisations of a block in several
chunks mixed the targets after it, while the weights of each target only depend on that
target. A difference it found, kept: a reduction over properties of a block without
properties but with gradients keeps them (metatensor refuses it).
"""

import dask.array as da
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd


def _maps(x: np.ndarray, y: np.ndarray, rows: int) -> tuple[mtd.TensorMap, mtd.TensorMap]:
    """One-block maps of ``x`` and ``y`` with ``rows`` value rows per chunk."""
    samples = mtd.Labels(["s"], np.arange(len(x)).reshape(-1, 1))
    keys = mtd.Labels(["k"], np.array([[0]]))

    def block(values: np.ndarray, name: str) -> mtd.TensorMap:
        properties = mtd.Labels([name], np.arange(values.shape[1]).reshape(-1, 1))
        chunked = da.from_array(values, chunks=(rows, -1))
        return mtd.TensorMap(keys, [mtd.TensorBlock(chunked, samples, [], properties)])

    return block(x, "p"), block(y, "t")


@pytest.mark.parametrize("rows", [5, 2, 1])
@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_lstsq_non_finite_target_spoils_its_own_weights_only(rows, bad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 2))
    y = rng.standard_normal((5, 3))
    y[0, 0] = bad
    X, Y = _maps(x, y, rows)
    weights = np.asarray(mtd.lstsq(X, Y, rcond=1e-10).block(0).values.compute())
    assert np.isnan(weights[0]).all()
    expected = np.linalg.lstsq(x, y[:, 1:], rcond=1e-10)[0].T
    np.testing.assert_allclose(weights[1:], expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reduction", ["sum", "mean", "var", "std"])
def test_a_reduction_over_properties_of_a_block_without_properties_keeps_its_gradients(
    reduction,
):
    """metatensor raises "gradient properties must be the same as values properties";
    the reduction of no properties is a block of no properties, gradients kept."""
    none = metatensor.Labels(["p"], np.zeros((0, 1), dtype=np.int32))
    block = metatensor.TensorBlock(np.zeros((3, 0)), metatensor.Labels.range("s", 3), [], none)
    rows = metatensor.Labels(["sample", "a"], np.array([[0, 0], [1, 1]], dtype=np.int32))
    block.add_gradient("x", metatensor.TensorBlock(np.zeros((2, 0)), rows, [], none))
    tensor = metatensor.TensorMap(metatensor.Labels.single(), [block])
    with pytest.raises(metatensor.MetatensorError, match="gradient properties must be"):
        getattr(metatensor, f"{reduction}_over_properties")(tensor, "p")
    reduced = getattr(mtd, f"{reduction}_over_properties")(mtd.from_metatensor(tensor), "p")
    result = mtd.to_metatensor(reduced).block(0)
    assert result.values.shape == (3, 0)
    assert result.gradient("x").values.shape == (2, 0)
    assert result.gradient("x").samples == rows
