# The two commands a newcomer types: `make demo` (the main job) and `make test`.
# Both create a virtual environment in .venv (Debian's Python is externally managed).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench venv docs docs-env test-lowest lowest-env typecheck

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Each environment is installed again only when pyproject.toml changed since (the
# package itself is installed editable: changes to src/ need no install). The
# `.installed` files record the installs. `--no-compile`: Python compiles the modules a
# program imports when it first imports them; compiling every module of every package
# at install time took 60 of the 81 s of the test environment's install here.
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --no-compile -e '.[test,hpc]'
	touch $@

demo: venv
	$(BIN)/metatensor-dask demo

# Three pytest-xdist workers on CI's 2 cores: many tests wait on other processes (SLURM
# jobs, cluster workers starting, processes killed and resumed), which a third worker
# fills; the tests of each xdist_group ("slurm", "clusters", "serial": see the README)
# run one after another on one worker, beside the others.
test: venv
	$(BIN)/python -m pytest -n 3 --dist loadgroup

# Static types of the package (src/), with mypy's settings in pyproject.toml.
typecheck: venv
	$(BIN)/python -m pip install --quiet 'mypy>=1.13' 'types-PyYAML>=6'
	$(BIN)/python -m mypy

bench: venv
	$(BIN)/python -m pytest benchmarks --benchmark-enable --benchmark-only

# The documentation site, warnings as errors: the tutorials of examples/ run while it
# builds, then the snippets of the pages and docstrings run as doctests.
DOCS_VENV ?= .venv-docs
docs-env: $(DOCS_VENV)/.installed
$(DOCS_VENV)/.installed: pyproject.toml
	test -x $(DOCS_VENV)/bin/python || $(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/python -m pip install --quiet --no-compile -e '.[docs]'
	touch $@
docs: docs-env
	$(DOCS_VENV)/bin/python -m sphinx -W --keep-going -b html docs docs/_build/html
	$(DOCS_VENV)/bin/python -m sphinx -W --keep-going -b doctest docs docs/_build/doctest

# The fast tests with the lowest versions of dask, distributed, zarr, numpy and crc32c that
# pyproject.toml declares, so that the declared floors stay true.
LOWEST_VENV ?= .venv-lowest
LOWEST_TESTS = tests/test_labels.py tests/test_block.py tests/test_tensor.py \
	tests/operations/test_multiply.py tests/operations/test_equal.py tests/io/test_zarr.py \
	tests/io/test_mts.py tests/test_examples.py tests/test_readme.py
lowest-env: $(LOWEST_VENV)/.installed
$(LOWEST_VENV)/.installed: pyproject.toml .ci/lowest_versions.py
	test -x $(LOWEST_VENV)/bin/python || $(PYTHON) -m venv $(LOWEST_VENV)
	$(PYTHON) .ci/lowest_versions.py > $(LOWEST_VENV)/constraints.txt
	$(LOWEST_VENV)/bin/python -m pip install --quiet --no-compile -c $(LOWEST_VENV)/constraints.txt -e '.[test]'
	$(LOWEST_VENV)/bin/python .ci/lowest_versions.py --check
	touch $@
test-lowest: lowest-env
	$(LOWEST_VENV)/bin/python -m pytest -m "not slurm" $(LOWEST_TESTS)
