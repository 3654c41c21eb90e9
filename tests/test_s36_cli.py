"""The command line's pipelines and refusals, checked against metatensor's own results."""

from pathlib import Path

import metatensor
import numpy as np
import pytest
from metatensor import Labels, TensorBlock, TensorMap

from metatensor_dask.execution.cli import main


def _map(seed: int) -> TensorMap:
    """Two blocks of 3 samples and 2 properties, float64."""
    rng = np.random.default_rng(seed)
    blocks = [
        TensorBlock(
            rng.standard_normal((3, 2)),
            Labels(["system"], np.arange(3, dtype=np.int32).reshape(-1, 1)),
            [],
            Labels(["n"], np.arange(2, dtype=np.int32).reshape(-1, 1)),
        )
        for _ in range(2)
    ]
    return TensorMap(Labels(["center_type"], np.array([[1], [6]], dtype=np.int32)), blocks)


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    metatensor.save(str(tmp_path / "a.mts"), _map(1))
    metatensor.save(str(tmp_path / "b.mts"), _map(2))
    return tmp_path


@pytest.mark.parametrize(
    ("inputs_field", "steps"),
    [
        # an input called as the default name of an unnamed step
        (
            "{'step 1': a.mts, b: b.mts}",
            "[{op: abs, inputs: b}, {op: multiply, inputs: b, args: {B: 2}},"
            " {op: add, inputs: ['step 1', b]}]",
        ),
        # an earlier step named as the default name of a later, unnamed one
        (
            "{a: a.mts}",
            "[{op: abs, name: step 2}, {op: multiply, inputs: a, args: {B: 2}},"
            " {op: pow, inputs: a, args: {B: 2}}, {op: add, inputs: ['step 2', a]}]",
        ),
    ],
    ids=["an input", "an earlier step"],
)
def test_default_step_name_taken_is_refused(
    inputs: Path, inputs_field: str, steps: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unnamed step is called `step N`: when an input or an earlier step already has
    that name, the step took its place, and the steps after it computed with the wrong
    tensor without any error. The pipeline is refused instead, before anything is read."""
    pipeline = inputs / "pipeline.yaml"
    pipeline.write_text(f"inputs: {inputs_field}\nsteps: {steps}\noutput: out.zarr\n")
    assert main(["run", str(pipeline), "-q"]) == 1
    error = capsys.readouterr().err
    assert "default name 'step" in error
    assert "give this step a `name`" in error
    assert not (inputs / "out.zarr").exists()


def _sigint_ignored() -> bool:
    import signal

    return signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_local_cluster_workers_leave_ctrl_c_to_the_command() -> None:
    """Ctrl-C in a terminal reaches every process of the command's process group: the
    worker processes of `--cluster local` printed the traceback of their own
    KeyboardInterrupt among the command's one line; they ignore it, and the command,
    which catches it, closes them."""
    from metatensor_dask.execution.cluster import execution

    with execution("local", workers=1, quiet=True) as where:
        assert all(where.client.run(_sigint_ignored).values())


def test_argument_typo_is_named_with_the_parameter_meant(
    inputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pipeline whose step gives `b` for pow's `B` was refused as missing `B` only,
    without naming the typo."""
    pipeline = inputs / "pipeline.yaml"
    pipeline.write_text("inputs: {a: a.mts}\nsteps: [{op: pow, args: {b: 2}}]\noutput: out.zarr\n")
    assert main(["run", str(pipeline), "-q"]) == 1
    assert "pow has no argument 'b' (did you mean 'B'?)" in capsys.readouterr().err
    assert not (inputs / "out.zarr").exists()
