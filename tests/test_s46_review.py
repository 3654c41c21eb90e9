"""Inputs beside those the changes of this review's commits were tested with: reductions
of maps a ``distributed`` cluster holds, and numbers of pipeline files."""

from __future__ import annotations

from pathlib import Path

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.execution.pipeline import Pipeline, PipelineError, load_yaml_value
from metatensor_dask.testing import assert_equal_to_metatensor

CLOSE = {"rtol": 1e-10, "atol": 1e-12}


def _labels(names: list[str], rows: object) -> metatensor.Labels:
    return metatensor.Labels(names, np.array(rows, dtype=np.int32).reshape(-1, len(names)))


def _reference() -> metatensor.TensorMap:
    """One block of 6 samples (3 systems of 2 atoms) with a gradient row per atom of
    the sample's system."""
    rng = np.random.default_rng(7)
    samples = [[s, a] for s in range(3) for a in range(2)]
    block = metatensor.TensorBlock(
        rng.uniform(-1, 1, (6, 4)),
        _labels(["system", "atom"], samples),
        [],
        _labels(["n"], [[0], [1], [2], [3]]),
    )
    rows = [[i, s, b] for i, (s, _) in enumerate(samples) for b in range(2)]
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.uniform(-1, 1, (len(rows), 3, 4)),
            _labels(["sample", "system", "atom"], rows),
            [_labels(["xyz"], [[0], [1], [2]])],
            block.properties,
        ),
    )
    return metatensor.TensorMap(_labels(["k"], [[0]]), [block])


@pytest.mark.parametrize("reduction", ["var_over_samples", "std_over_samples"])
def test_var_and_std_gradients_of_a_map_a_cluster_holds(reduction, client, tmp_path: Path):
    # the values read apart for the gradients were given keys that nothing computed
    # when the cluster held them as futures: "cancelled for reason: lost dependencies"
    reference = _reference()
    mtd.to_zarr(mtd.from_metatensor(reference), tmp_path / "map.zarr")
    held = client.persist(mtd.open_zarr(tmp_path / "map.zarr", chunks=4))

    reduced = getattr(mtd, reduction)(held, "atom")

    expected = getattr(metatensor, reduction)(reference, "atom")
    assert_equal_to_metatensor(reduced.compute(), expected, **CLOSE)


@pytest.mark.parametrize("text", ["0x_", "-0b_", "0o_"])
def test_a_base_prefix_without_digits_is_a_string(text):
    # YAML 1.2 reads these as strings; they were taken for integers, whose reading then
    # failed with a bare "invalid literal for int() with base 16: ''"
    assert load_yaml_value(text) == text


def test_an_int_tag_on_a_base_60_number_is_named_with_its_line(tmp_path: Path):
    # YAML 1.1 read `!!int 1:30` as 90; read as YAML 1.2, it failed with "invalid
    # literal for int() with base 10: '1:30'", without the line
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        "inputs:\n  a: a.zarr\nsteps:\n  - op: multiply\n    args: {A: a, B: !!int 1:30}\n"
        "output: out.zarr\n"
    )
    with pytest.raises(PipelineError, match=r"line 5: .*'1:30' is not an integer"):
        Pipeline.from_file(str(pipeline))
