"""The seed tutorial runs and prints what metatensor's tutorial prints."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPECTED = os.path.join(ROOT, "tests", "data", "managing-gradients.expected.txt")


def _token_lines(text: str) -> list[list[str]]:
    """Whitespace-separated tokens of each non-blank line (the seed lost its spacing)."""
    return [line.split() for line in text.splitlines() if line.strip()]


def test_managing_gradients_prints_the_seed_output():
    script = os.path.join(ROOT, "examples", "managing_gradients.py")
    result = subprocess.run(
        [sys.executable, script], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    with open(EXPECTED) as file:
        expected = _token_lines(file.read())
    printed = _token_lines(result.stdout)
    assert printed == expected[: len(printed)], "output differs from the seed tutorial"
    assert len(printed) == len(expected), (
        f"the example printed {len(printed)} of the seed's {len(expected)} lines"
    )


@pytest.mark.parametrize(
    ("text", "tokens"),
    [("a  b\n\n  c\n", [["a", "b"], ["c"]]), ("", [])],
)
def test_token_lines(text, tokens):
    assert _token_lines(text) == tokens
