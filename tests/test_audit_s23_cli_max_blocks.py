"""`info --max-blocks N`: -1 lists every block, 0 or more that many; other negative
numbers were taken as -1 silently, and are refused with the usage (exit code 2)."""

import pytest
from pipeline_support import RADIAL, run


@pytest.mark.parametrize("value", ["-2", "-20", "x", "1.5"])
def test_other_values_are_refused(capsys, value):
    code, out, err = run(capsys, "info", RADIAL, f"--max-blocks={value}")
    assert code == 2
    assert "argument --max-blocks" in err
    assert out == ""


@pytest.mark.parametrize(("value", "listed"), [("-1", 5), ("0", 0), ("2", 2), ("9", 5)])
def test_valid_values_list_that_many_blocks(capsys, value, listed):
    code, out, err = run(capsys, "info", RADIAL, "--max-blocks", value)
    assert code == 0, err
    assert sum(" values " in line for line in out.splitlines()) == listed, out
