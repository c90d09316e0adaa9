# The two quick-start commands: `make run` (set up, run the default sweep and its report) and
# `make test` (set up, run the tests). Set-up installs a CPU build of torch unless torch is already
# in .venv (tools/install_torch.py); GPU users install their CUDA build first (see README).
# `make docs` regenerates the generated docs pages and builds the site (mkdocs, strict) into site/.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup run quick test docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

setup: $(BIN)/python
	$(BIN)/python tools/install_torch.py
	$(BIN)/pip install --quiet -e ".[test]"

run: setup
	$(BIN)/gradbench run

test: setup
	$(BIN)/python -m pytest -q tests

docs: setup
	$(BIN)/pip install --quiet -e ".[docs]"
	$(BIN)/python -m gradbench.docs_pages
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV)
