# The two quick-start commands: `make run` (set up, run the default sweep and its report) and
# `make test` (set up, run every test tier, as CI does); `make test-fast` runs the unit tier only
# (in-process, about a minute: the everyday check; tiers are in tests/conftest.py). Set-up installs a
# CPU build of torch unless torch is already in .venv (tools/install_torch.py); GPU users install
# their CUDA build first (see README).
# `make docs` regenerates the generated docs pages and builds the site (mkdocs, strict) into site/.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup run quick test test-fast docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

setup: $(BIN)/python
	$(BIN)/python tools/install_torch.py
	$(BIN)/pip install --quiet -e ".[test]"

run: setup
	$(BIN)/gradbench run

# One pytest-xdist worker per CPU and one more (tests/conftest.py keeps each at one torch thread): many
# tests wait on Slurm, a timeout or a worker process, and the extra worker fills that (2 cores: 383 s
# with 3 workers, 443 s with 2). --dist loadgroup keeps the Slurm tests on one worker, the GPU tests on one.
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print((os.cpu_count() or 1) + 1)")
test: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup tests

test-fast: setup
	$(BIN)/python -m pytest -q -n auto -m unit tests

docs: setup
	$(BIN)/pip install --quiet -e ".[docs]"
	$(BIN)/python -m gradbench.docs_pages
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV)
