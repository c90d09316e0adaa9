# The two quick-start commands: `make run` (set up, run the default sweep and its report) and
# `make test` (set up, run the tests). Set-up installs a CPU build of torch unless torch is already
# in .venv; GPU users install their CUDA build first (see README) or set TORCH_INDEX.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
BIN := $(VENV)/bin

.PHONY: setup run quick test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

setup: $(BIN)/python
	@$(BIN)/python -c "import torch" 2>/dev/null || \
		$(BIN)/pip install --quiet "$(TORCH_SPEC)" --extra-index-url "$(TORCH_INDEX)"
	$(BIN)/pip install --quiet -e ".[test]"

run: setup
	$(BIN)/gradbench run

test: setup
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV)
