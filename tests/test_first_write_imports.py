"""The first Zarr write of a process pays for no import of ``distributed``.

``dask.compute`` given no scheduler imports ``distributed`` to look for a Client: a
fifth of a second of CPU that a process writing a store (a command line run, a batch
job) paid on every run. Where no module imported it, no Client can exist: the write
and the append run with dask's threads, the scheduler dask would have picked. Each case
runs in a new Python process (this one may have imported ``distributed`` already).
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

    path, mode = sys.argv[1], sys.argv[2]
    first = tensor({0: block(0, [0, 1]), 1: block(1, [0, 1, 2])})
    if mode == "append":
        mtd.from_metatensor(first).to_zarr(path, append_dim="samples")
        second = tensor({0: block(2, [2, 3]), 2: block(3, [5])})
        mtd.from_metatensor(second).to_zarr(path, append_dim="samples")
        expected = metatensor.join(
            [first, second], axis="samples", different_keys="union"
        )
    else:
        mtd.from_metatensor(first).to_zarr(path)
        expected = first
    imported = "distributed" in sys.modules
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), expected)
    print(json.dumps({"distributed": imported}))
    """
)


@pytest.mark.parametrize("mode", ["write", "append"])
def test_write_does_not_import_distributed(tmp_path, mode):
    """A write, and an append, in a process that never imported ``distributed`` store
    what metatensor holds (values and gradients) without importing it."""
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path / "t.zarr"), mode],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {"distributed": False}
