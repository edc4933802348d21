# Thin targets; tool settings live in pyproject.toml. Everything runs in .venv, made on first use.
PYTHON ?= python3
VENV ?= .venv
# Extras installed for the tests; CI adds cuda13 so that the real CuPy error path is exercised without a GPU.
TEST_EXTRAS ?= dev
BIN := $(VENV)/bin

.PHONY: train test clean

train: $(VENV)/.installed
	$(BIN)/gpunet train --backend auto

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[$(TEST_EXTRAS)]'
	touch $@ $(VENV)/.installed

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
