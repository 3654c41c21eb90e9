"""Claims of the documentation that a newcomer's check found untrue of the code.

* cli.md and zarr-format.md: ``verify`` of a store whose write failed (its lock
  released) names the remedies that ``open_zarr`` names, ``to_zarr(..., resume=True)``
  or the same command with ``--resume``; it named ``run --resume`` and ``convert
  --resume`` only, which do not finish the output of an ``apply`` or of a ``to_zarr``.
* cli.md: ``--quiet`` prints errors and the warnings Python prints (numpy's, where an
  operation makes NaN); its help said "nothing but errors".
"""

import dask.array as da
import pytest

import metatensor_dask as mtd
from metatensor_dask import Labels, TensorBlock, TensorMap


def _fails(chunk):
    raise RuntimeError("this chunk can not be computed")


def _failing_tensor() -> TensorMap:
    values = da.ones((4, 3), chunks=(2, 3)).map_blocks(_fails, dtype=float)
    block = TensorBlock(
        values=values,
        samples=Labels.range("s", 4),
        components=[],
        properties=Labels.range("p", 3),
    )
    return TensorMap(Labels.range("k", 1), [block])


def test_verify_names_the_remedies_of_a_failed_write(tmp_path):
    store = tmp_path / "failed.zarr"
    with pytest.raises(RuntimeError, match="can not be computed"):
        mtd.to_zarr(_failing_tensor(), store)
    with pytest.raises(mtd.IncompleteStoreError):
        mtd.open_zarr(store)

    (problem,) = mtd.verify(store).problems
    assert "to_zarr(..., resume=True)" in problem
    assert "the same command with `--resume`" in problem
    assert "run --resume" not in problem


def test_quiet_is_described_as_what_it_keeps(capsys):
    # numpy's warnings (NaN made by an operation) still print under --quiet: the help
    # says so rather than "nothing but errors"
    from metatensor_dask.execution.cli import main

    with pytest.raises(SystemExit):
        main(["apply", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "print nothing but errors and Python's warnings" in out
