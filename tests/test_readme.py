"""The README's Python snippet runs as written, and its commands exist."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as file:
        return file.read()


def _blocks(language: str) -> list[str]:
    text = _read(README)
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def test_the_python_snippet_runs_as_written(tmp_path):
    (snippet,) = _blocks("python")
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", snippet],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]
    assert (tmp_path / "squared.zarr" / "zarr.json").is_file()


def test_the_set_up_is_two_make_targets_that_exist():
    (commands,) = _blocks("bash")
    targets = [line.split()[1] for line in commands.splitlines() if line.strip()]
    assert targets == ["demo", "test"]
    makefile = _read(os.path.join(ROOT, "Makefile"))
    mentioned = re.findall(r"`make ([a-z-]+)`", _read(README))
    assert {"docs", "test-lowest"} <= set(mentioned)
    for target in {*targets, *mentioned}:
        assert re.search(rf"^{target}:", makefile, flags=re.MULTILINE), target
