"""``convert --append`` of many sources, one of which has its components in another
order than the sources before it: the message names that source, not every source."""

from __future__ import annotations

import subprocess
import sys

import metatensor
from test_s24_append_refusals import location_state
from test_s26_components_refusals import CASES, _stored, _tensor


def test_convert_append_names_the_source_that_can_not_follow(tmp_path):
    path = tmp_path / "expansion.zarr"
    _stored(path)
    sources = [str(tmp_path / f"{i}.mts") for i in range(4)]
    for i, source in enumerate(sources):
        changes = CASES["mu in another order"][0] if i == 2 else None
        metatensor.save(source, _tensor([0, 1], changes))
    before = location_state(path)
    command = [sys.executable, "-m", "metatensor_dask", "convert", *sources, str(path)]
    done = subprocess.run(
        [*command, "--append", "--renumber", "system", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert f"can not be appended together, from {sources[2]} on: " in done.stderr
    assert sources[3] not in done.stderr
    assert location_state(path) == before
