# The two quick-start commands: `make run` (set up, run the default sweep and its report) and
# `make test` (set up, run the tests). Set-up installs a CPU build of torch unless torch is already
# in .venv (tools/install_torch.py); GPU users install their CUDA build first (see README).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup run quick test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

setup: $(BIN)/python
	$(BIN)/python tools/install_torch.py
	$(BIN)/pip install --quiet -e ".[test]"

run: setup
	$(BIN)/gradbench run

test: setup
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV)
