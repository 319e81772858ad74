# Quick start: `make demo` (set up .venv, run the demo on synthetic data), `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_OUT ?= runs/demo

.PHONY: demo test lint bench clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# The package itself goes in editable (bone-tumor command, imports from any folder).
$(VENV)/.runtime-installed: requirements.txt pyproject.toml | $(PY)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q -e . --no-deps
	touch $@

$(VENV)/.dev-installed: requirements-dev.txt $(VENV)/.runtime-installed
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

demo: $(VENV)/.runtime-installed
	$(PY) -m bone_tumor_tf demo --out $(DEMO_OUT)

lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest -q --durations=10 -n 2 --dist loadfile

bench: $(VENV)/.runtime-installed
	$(PY) -m bench.run

clean-venv:
	rm -rf $(VENV)
