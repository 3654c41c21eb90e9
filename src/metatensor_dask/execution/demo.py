"""``metatensor-dask demo``: the whole workflow on the embedded defaults, checked.

1. convert the tutorial's two files (shipped in :mod:`metatensor_dask.datasets`) to Zarr;
2. generate a featomic-like tensor of ``size`` bytes straight into Zarr, chunk by chunk;
3. run a pipeline with gradients — ``pow(x, 2)``, ``multiply(x², x)``,
   ``sum_over_samples(·, "atom")`` — from store to store, with progress;
4. check the result against the same computation in plain numpy on a sample of blocks
   and rows (values and gradients), and verify the result store's checksums;
5. print a summary: time, bytes and chunks.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from dask.utils import format_time

from .._format import nbytes_text
from ..errors import MetatensorDaskError
from .cluster import Execution
from .progress import Reporter, compute

__all__ = ["PIPELINE", "check_against_numpy", "prepared_workdir", "run_demo"]

#: the demo's pipeline file; ``{input}`` and ``{output}`` are filled in
PIPELINE = """\
# written by `metatensor-dask demo`; to run it again, delete {output} first, then:
# `metatensor-dask run {name}`
inputs:
  x: {input}
steps:
  - op: pow
    inputs: x
    args: {{B: 2}}
    name: squared
  - op: multiply
    inputs: [squared, x]
  - op: sum_over_samples
    args: {{sample_names: atom}}
output: {output}
"""


def _rows(tensor_block: Any, rows: np.ndarray) -> np.ndarray:
    """Selected rows of a block's values, as numpy (works for dask and numpy values)."""
    return np.asarray(tensor_block.values[rows])


def _expand(rows: np.ndarray, extra: int) -> np.ndarray:
    """Value rows shaped to broadcast against gradient rows with ``extra`` more components."""
    return rows.reshape(rows.shape[0], *(1,) * extra, *rows.shape[1:])


def _expected_row(block: Any, system_rows: np.ndarray, row: int) -> tuple[Any, dict[str, Any]]:
    """Values and gradients of output row ``row`` of the demo pipeline, in numpy.

    ``system_rows`` are the input rows summed into it. The gradient rules are
    metatensor's: ``pow``: ``B · ∇x · x**(B-1)``; ``multiply``: ``a·∇b + ∇a·b``;
    ``sum_over_samples``: gradient rows with equal remaining labels are summed. Each
    array comes with the sum of the magnitudes of its terms, which bounds the rounding
    error of the sums (they are added in another order by the library).
    """
    x = _rows(block, system_rows)
    squared = x**2
    product = squared * x
    values = (product.sum(axis=0), np.abs(product).sum(axis=0))
    gradients = {}
    for parameter, gradient in block.gradients():
        column = gradient.samples.column("sample")
        selected = np.flatnonzero(np.isin(column, system_rows))
        dx = _rows(gradient, selected)
        local = np.searchsorted(system_rows, column[selected])
        extra = dx.ndim - x.ndim
        x_s = _expand(x[local], extra)
        d_squared = 2 * dx * x_s
        d_product = _expand(squared[local], extra) * dx + d_squared * x_s
        rest = gradient.samples.values[selected][:, 1:]
        unique, inverse = np.unique(rest, axis=0, return_inverse=True)
        summed = np.zeros((len(unique), *d_product.shape[1:]))
        scale = np.zeros_like(summed)
        np.add.at(summed, inverse.reshape(-1), d_product)
        np.add.at(scale, inverse.reshape(-1), np.abs(d_product))
        labels = np.column_stack([np.full(len(unique), row), unique]).astype(np.int32)
        gradients[parameter] = (labels, summed, scale)
    return values, gradients


def _close(actual: np.ndarray, expected: np.ndarray, scale: np.ndarray) -> bool:
    return actual.shape == expected.shape and bool(
        np.all(np.abs(actual - expected) <= 1e-12 * scale)
    )


def check_against_numpy(
    source: Any, result: Any, *, max_blocks: int = 3, max_rows: int = 4, seed: int = 0
) -> tuple[int, int]:
    """Compare ``result`` (``sum_over_samples(x**2 * x, "atom")`` of ``source``) with numpy.

    Checks values and gradients of up to ``max_rows`` output rows in each of up to
    ``max_blocks`` blocks (first, last and others at random).

    Returns
    -------
    tuple[int, int]
        Blocks and rows checked.

    Raises
    ------
    AssertionError
        Naming the block, row and array that differ.
    """
    rng = np.random.default_rng(seed)
    n_blocks = len(result.keys)
    picked = sorted(
        {0, n_blocks - 1, *rng.choice(n_blocks, min(n_blocks, max_blocks), replace=False).tolist()}
    )
    picked = picked[:max_blocks]
    rows_checked = 0
    for index in picked:
        key = result.keys.entry(index)
        block_in = source.block(key)
        block_out = result.block(key)
        systems = block_in.samples.column("system")
        out_systems = block_out.samples.column("system")
        rows = rng.choice(len(out_systems), min(len(out_systems), max_rows), replace=False)
        for row in sorted(rows.tolist()):
            system_rows = np.flatnonzero(systems == out_systems[row])
            (values, scale), gradients = _expected_row(block_in, system_rows, row)
            where = f"block {key.print()}, row {row}"
            if not _close(_rows(block_out, np.array([row]))[0], values, scale):
                raise AssertionError(f"{where}: values differ from numpy")
            for parameter, (labels, expected, scale) in gradients.items():
                gradient = block_out.gradient(parameter)
                selected = np.flatnonzero(gradient.samples.column("sample") == row)
                stored = gradient.samples.values[selected]
                if not np.array_equal(stored, labels):
                    raise AssertionError(
                        f"{where}: gradient '{parameter}' samples differ from numpy"
                    )
                if not _close(_rows(gradient, selected), expected, scale):
                    raise AssertionError(
                        f"{where}: gradient '{parameter}' values differ from numpy"
                    )
            rows_checked += 1
    return len(picked), rows_checked


def _stored_bytes(path: str) -> int:
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )


def _chunks(tensor: Any) -> int:
    return tensor.npartitions


def prepared_workdir(workdir: str) -> str:
    """``workdir`` made absolute and created, refused when it can not be created or
    written (a file, a read-only folder)."""
    workdir = os.path.abspath(workdir)
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as error:
        raise _unwritable(workdir, error.strerror or str(error)) from None
    if not os.access(workdir, os.W_OK):
        raise _unwritable(workdir, "it can not be written")
    return workdir


def _unwritable(workdir: str, why: str) -> MetatensorDaskError:
    return MetatensorDaskError(
        f"the demo can not write its stores in {workdir} ({why}): give --workdir a "
        "folder you can write"
    )


def run_demo(workdir: str, *, size: str = "256MiB", where: Execution, quiet: bool = False) -> int:
    """Run the demonstration in ``workdir`` (created; earlier demo stores are replaced).

    Returns
    -------
    int
        The exit code: 0 when the result matches numpy and the result store verifies.
    """
    import metatensor_dask as mtd

    from ..datasets import TUTORIAL_FILES, featomic_like, systems_for_size, tutorial_file
    from ..io.inspection import verify_store
    from .pipeline import Pipeline

    reporter = Reporter(quiet)
    workdir = prepared_workdir(workdir)
    reporter.step(f"metatensor-dask demo in {workdir}, computing on {where.description}")

    def run(collection: Any) -> Any:
        return compute(collection, client=where.client, quiet=quiet)

    stores = [os.path.join(workdir, name.replace(".npz", ".zarr")) for name in TUTORIAL_FILES]
    reporter.step(f"[1/5] converting the tutorial files {', '.join(TUTORIAL_FILES)} to Zarr")
    run(
        [
            mtd.load(tutorial_file(n)).to_zarr(s, mode="w", compute=False)
            for n, s in zip(TUTORIAL_FILES, stores, strict=True)
        ]
    )

    n_systems = systems_for_size(size)
    generated = featomic_like(n_systems)
    source_store = os.path.join(workdir, "featomic-like.zarr")
    nbytes = sum(int(a.nbytes) for a in generated._arrays())
    reporter.step(
        f"[2/5] generating a featomic-like tensor ({n_systems} system(s), {len(generated.keys)} "
        f"blocks, {nbytes_text(nbytes)}, {_chunks(generated)} chunks) -> {source_store}"
    )
    run(generated.to_zarr(source_store, mode="w", compute=False))

    totals = {"written": 0, "chunks": 0}
    checks = []
    for label, store in (
        ("spherical-expansion", "spherical-expansion.zarr"),
        ("featomic-like", "featomic-like.zarr"),
    ):
        pipeline_file = os.path.join(workdir, f"{label}-pipeline.yaml")
        output = os.path.join(workdir, f"{label}-result.zarr")
        with open(pipeline_file, "w", encoding="utf-8") as file:
            file.write(
                PIPELINE.format(input=store, output=os.path.basename(output), name=pipeline_file)
            )
        if os.path.exists(output):
            import shutil

            shutil.rmtree(output)
        pipeline = Pipeline.from_file(pipeline_file)
        pipeline.check_paths()
        result = pipeline.build()
        reporter.step(f"[3/5] running {pipeline_file}: pow, multiply, sum_over_samples -> {output}")
        run(pipeline.write(result))
        totals["written"] += _stored_bytes(output)
        totals["chunks"] += _chunks(result)

        source = mtd.open_zarr(os.path.join(workdir, store))
        blocks, rows = check_against_numpy(source, mtd.open_zarr(output))
        verification = verify_store(output, compute=run)
        if not verification.ok:
            for problem in verification.problems:
                reporter.step(f"verify {output}: {problem}")
            return 1
        checks.append(f"{label}: {rows} rows of {blocks} blocks")
        reporter.step(
            f"[4/5] {label}: result equals numpy on {rows} rows of {blocks} blocks, store verified"
        )

    read = _stored_bytes(source_store) + _stored_bytes(
        os.path.join(workdir, "spherical-expansion.zarr")
    )
    reporter.step(
        f"[5/5] demo finished in {format_time(reporter.elapsed())}: pipelines read "
        f"{nbytes_text(read)} and wrote {nbytes_text(totals['written'])} in "
        f"{totals['chunks']} chunks; checked against numpy ({'; '.join(checks)})"
    )
    return 0
