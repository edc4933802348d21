# Thin targets; tool settings live in pyproject.toml. Everything runs in .venv, made on first use.
PYTHON ?= python3
VENV ?= .venv
# Extras installed for the tests, and further packages: CI adds cupy-cuda13x alone (gpunet's cuda13 extra
# would bring CuPy's CUDA libraries, over a gigabyte) so that CuPy's real "no GPU" path is exercised.
TEST_EXTRAS ?= dev
TEST_PACKAGES ?=
BIN := $(VENV)/bin

# The bench's PyTorch: pinned, so that pip takes this release rather than the newest CUDA build.
TORCH ?= torch==2.13.0

.PHONY: train train-distributed test bench gpu-check gpu-wheels clean

train: $(VENV)/.installed
	$(BIN)/gpunet train --backend auto

# the tutorial's experiment trained by two MPI ranks (mpiexec comes with the mpich wheel of the extra [mpi])
train-distributed: $(VENV)/.installed-mpi
	$(BIN)/mpiexec -n 2 $(BIN)/gpunet train --backend auto --distributed

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-bench
	$(BIN)/python bench/run.py
	$(BIN)/python bench/sklearn_bench.py
	$(BIN)/python bench/predict_bench.py

# For a machine with a GPU whose python3 has the dependencies already: installs nothing. With
# .gpu-wheels/ beside it (make gpu-wheels, here), scikit-learn is unpacked from there for the
# gpunet.sklearn tests and benchmark.
gpu-check:
	PYTHON=$(PYTHON) bash bench/gpu-check.sh

# scikit-learn and scipy wheels for the GPU machine's Python (3.12, x86-64 Linux), which reaches no
# package index: about 45 MB, carried there with the source tree.
GPU_PYTHON_VERSION ?= 3.12
gpu-wheels: | $(BIN)/python
	$(BIN)/python -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
		--python-version $(GPU_PYTHON_VERSION) --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
		-d .gpu-wheels scikit-learn scipy threadpoolctl joblib cloudpickle narwhals hypothesis attrs sortedcontainers

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[$(TEST_EXTRAS)]' $(TEST_PACKAGES)
	touch $@ $(VENV)/.installed

$(VENV)/.installed-mpi: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[mpi]'
	touch $@ $(VENV)/.installed

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check '$(TORCH)'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	touch $@ $(VENV)/.installed

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
