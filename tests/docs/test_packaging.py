"""What pyproject.toml, the package and the docs declare is true."""

import os
import re
import subprocess
import sys
import tomllib

import metatensor_dask

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _pyproject() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as file:
        return tomllib.load(file)


def test_importing_the_package_does_not_import_zarr():
    code = (
        "import sys, metatensor_dask, metatensor_dask.io\n"
        "assert 'zarr' not in sys.modules, 'zarr imported'\n"
        "metatensor_dask.open_zarr\n"
        "assert 'zarr' in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_zarr_functions_are_the_same_objects_everywhere():
    from metatensor_dask import io
    from metatensor_dask.io import zarr_read, zarr_write

    assert metatensor_dask.open_zarr is io.open_zarr is zarr_read.open_zarr
    assert metatensor_dask.to_zarr is io.to_zarr is zarr_write.to_zarr
    assert {"open_zarr", "to_zarr"} <= set(dir(io))
    for name in metatensor_dask.__all__:
        assert getattr(metatensor_dask, name) is not None, name


def test_an_unknown_attribute_still_raises():
    for module in (metatensor_dask, metatensor_dask.io):
        try:
            module.not_a_name  # noqa: B018
        except AttributeError as error:
            assert "not_a_name" in str(error)
        else:
            raise AssertionError(f"{module.__name__}.not_a_name did not raise")


def test_the_version_is_defined_once():
    project = _pyproject()
    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "metatensor_dask.__version__"
    }
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|rc\d+)?", metatensor_dask.__version__)


def test_the_license_file_is_the_declared_license():
    project = _pyproject()["project"]
    assert project["license"] == "BSD-3-Clause"
    with open(os.path.join(ROOT, "LICENSE")) as file:
        text = file.read()
    assert text.startswith("BSD 3-Clause License")
    assert "Copyright (c) 2026 the metatensor-dask developers" in text


def test_the_lowest_versions_are_read_from_pyproject():
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, ".ci", "lowest_versions.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    pins = dict(line.split("==") for line in result.stdout.split())
    assert set(pins) == {"dask", "distributed", "zarr", "numpy", "crc32c"}
    for requirement in _pyproject()["project"]["dependencies"]:
        name = re.match(r"[a-z0-9-]+", requirement.lower()).group(0)
        if name in pins:
            assert f">={pins[name]}" in requirement


def test_no_page_cites_documents_outside_the_repository():
    cited = []
    for folder in ("docs", "examples", "src", "benchmarks"):
        for directory, _, files in os.walk(os.path.join(ROOT, folder)):
            if "_build" in directory or "generated" in directory:
                continue
            for name in files:
                if name.endswith((".md", ".py", ".rst", ".txt")):
                    path = os.path.join(directory, name)
                    with open(path, encoding="utf-8") as file:
                        for number, line in enumerate(file, 1):
                            if re.search(r"DESIGN|§", line):
                                cited.append(f"{os.path.relpath(path, ROOT)}:{number}")
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as file:
        if re.search(r"DESIGN|§", file.read()):
            cited.append("README.md")
    assert cited == []
