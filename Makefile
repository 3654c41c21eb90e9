# The two commands a newcomer types: `make demo` (the main job) and `make test`.
# Both create a virtual environment in .venv (Debian's Python is externally managed).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

venv: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,hpc]'

demo: venv
	$(BIN)/metatensor-dask demo

test: venv
	$(BIN)/python -m pytest

bench: venv
	$(BIN)/python -m pytest benchmarks --benchmark-enable --benchmark-only
