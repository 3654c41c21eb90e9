"""The ``huge-pages`` setting: numpy's huge-page advice, set when metatensor_dask is
imported (``_huge_pages.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dask.config
import pytest
from numpy._core import multiarray

from metatensor_dask import _huge_pages
from metatensor_dask.errors import MetatensorDaskError

# measures memory or the page cache: one such test at a time
pytestmark = pytest.mark.xdist_group("serial")


@pytest.fixture
def numpy_advice():
    """numpy's advice as the test found it, restored after it."""
    before = multiarray._set_madvise_hugepage(True)
    multiarray._set_madvise_hugepage(before)
    yield before
    multiarray._set_madvise_hugepage(before)


def _advice() -> bool:
    current = multiarray._set_madvise_hugepage(True)
    multiarray._set_madvise_hugepage(current)
    return current


def _balloon(tmp_path: Path, *features: str) -> str:
    for i, bits in enumerate(features):
        device = tmp_path / f"virtio{i}"
        device.mkdir()
        (device / "features").write_text(bits + "\n")
    return str(tmp_path / "virtio*" / "features")


@pytest.mark.parametrize(
    ("features", "reporting"),
    [
        ((), False),
        (("0110000000000000000000000000000010",), False),
        (("0110010000000000000000000000000010",), True),
        (("0110",), False),
        (("0000000", "0000010"), True),
    ],
)
def test_free_page_reporting_is_bit_5_of_a_balloon(tmp_path, features, reporting):
    assert _huge_pages.free_page_reporting(_balloon(tmp_path, *features)) is reporting


@pytest.mark.parametrize("setting", [False, "false", "False"])
def test_false_turns_numpy_advice_off(numpy_advice, setting):
    multiarray._set_madvise_hugepage(True)
    with dask.config.set({"metatensor_dask.huge-pages": setting}):
        assert _huge_pages.apply() is False
    assert _advice() is False


@pytest.mark.parametrize("advice", [False, True])
def test_true_leaves_numpy_choice(numpy_advice, advice):
    multiarray._set_madvise_hugepage(advice)
    with dask.config.set({"metatensor_dask.huge-pages": True}):
        assert _huge_pages.apply() is None
    assert _advice() is advice


def test_auto_turns_advice_off_only_under_free_page_reporting(numpy_advice):
    multiarray._set_madvise_hugepage(True)
    with dask.config.set({"metatensor_dask.huge-pages": "auto"}):
        applied = _huge_pages.apply()
    if _huge_pages.free_page_reporting():
        assert applied is False
        assert _advice() is False
    else:
        assert applied is None
        assert _advice() is True


def test_an_invalid_setting_names_the_setting_and_the_remedy():
    with dask.config.set({"metatensor_dask.huge-pages": "sometimes"}):
        with pytest.raises(MetatensorDaskError, match=r"huge-pages must be true, false or auto"):
            _huge_pages.apply()


def _run(setting: str, code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DASK_METATENSOR_DASK__HUGE_PAGES": setting}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )


def test_an_invalid_setting_fails_the_import_with_the_message():
    done = _run("sometimes", "import metatensor_dask")
    assert done.returncode != 0
    assert "huge-pages must be true, false or auto" in done.stderr


_HUGE_PAGES_OF_AN_ARRAY = """
import numpy as np
import metatensor_dask
array = np.ones(64 * 2**20 // 8)
with open("/proc/self/smaps_rollup") as file:
    print(next(int(l.split()[1]) for l in file if l.startswith("AnonHugePages:")))
"""


def _thp_mode() -> str:
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return "none"
    return text.split("[")[1].split("]")[0]


@pytest.mark.skipif(
    _thp_mode() != "madvise", reason="huge pages follow numpy's advice only in madvise mode"
)
def test_the_setting_reaches_the_arrays_of_a_new_process():
    off = _run("false", _HUGE_PAGES_OF_AN_ARRAY)
    on = _run("true", _HUGE_PAGES_OF_AN_ARRAY)
    assert off.returncode == 0, off.stderr
    assert on.returncode == 0, on.stderr
    assert int(off.stdout) == 0
    assert int(on.stdout) > 0
