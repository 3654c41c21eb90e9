"""The first Zarr write of a process pays for no import of ``distributed``.

``dask.compute`` given no scheduler imports ``distributed`` to look for a Client: a
fifth of a second of CPU that a process writing a store (a command line run, a batch
job) paid on every run. Where no module imported it, no Client can exist: the write
and the append run with dask's threads, the scheduler dask would have picked. The
cases run in one new Python process (this one may have imported ``distributed``
already), the write first: ``distributed`` is looked for after each.
"""

import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("distributed")

_CHILD = textwrap.dedent(
    """
    import json, sys

    import metatensor
    import numpy as np

    import metatensor_dask as mtd
    from metatensor_dask.testing import assert_equal_to_metatensor

    def block(seed, samples):
        rng = np.random.default_rng(seed)
        values = rng.random((len(samples), 3, 2))
        rows = np.array(samples, dtype=np.int32).reshape(-1, 1)
        block = metatensor.TensorBlock(
            values,
            metatensor.Labels(["system"], rows),
            [metatensor.Labels.range("c", 3)],
            metatensor.Labels.range("p", 2),
        )
        gradient_rows = np.array([[i, 0] for i in range(len(samples))], dtype=np.int32)
        block.add_gradient(
            "positions",
            metatensor.TensorBlock(
                rng.random((len(samples), 3, 3, 2)),
                metatensor.Labels(["sample", "atom"], gradient_rows),
                [metatensor.Labels.range("xyz", 3), metatensor.Labels.range("c", 3)],
                metatensor.Labels.range("p", 2),
            ),
        )
        return block

    def tensor(blocks):
        keys = metatensor.Labels(["k"], np.array([[k] for k in blocks], dtype=np.int32))
        return metatensor.TensorMap(keys, list(blocks.values()))

    written, appended = sys.argv[1], sys.argv[2]
    first = tensor({0: block(0, [0, 1]), 1: block(1, [0, 1, 2])})
    imported = {}

    mtd.from_metatensor(first).to_zarr(written)
    imported["write"] = "distributed" in sys.modules
    mtd.from_metatensor(first).to_zarr(appended, append_dim="samples")
    second = tensor({0: block(2, [2, 3]), 2: block(3, [5])})
    mtd.from_metatensor(second).to_zarr(appended, append_dim="samples")
    imported["append"] = "distributed" in sys.modules

    # read back once both were looked for: a read may import distributed
    assert_equal_to_metatensor(mtd.open_zarr(written).compute(), first)
    expected = metatensor.join([first, second], axis="samples", different_keys="union")
    assert_equal_to_metatensor(mtd.open_zarr(appended).compute(), expected)
    print(json.dumps(imported))
    """
)


def test_write_and_append_do_not_import_distributed(tmp_path):
    """A write, then an append, in a process that never imported ``distributed`` store
    what metatensor holds (values and gradients) without importing it."""
    stores = [str(tmp_path / "written.zarr"), str(tmp_path / "appended.zarr")]
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, *stores], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    imported = json.loads(result.stdout.splitlines()[-1])
    assert imported == {"write": False, "append": False}
