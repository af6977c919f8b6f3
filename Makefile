# Two entry points, each doing all of its own set-up on a fresh machine:
#   make demo   create .venv, install, run the main job (ccnet train: the synthetic default)
#   make test   create .venv, install with dev extras, run the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The PyTorch pin used when the environment has none. On a CPU-only machine with a local
# CPU wheel (see pip's find-links) this resolves to that wheel, never to CUDA packages.
TORCH_PIN ?= torch==2.13.0

.PHONY: demo test lint clean venv figures

$(PY):
	$(PYTHON) -m venv $(VENV)

# Installs PyTorch first (only when missing), then the package; the stamp depends on
# pyproject.toml so a changed dependency list reinstalls.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_PIN)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/ccnet train

test: $(VENV)/.installed
	$(PY) -m pytest -n 2 -q

# The README's attention figures (docs/figures/), from the default job's model (trained first if missing).
figures: $(VENV)/.installed
	$(PY) docs/figures/make_figures.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build dist *.egg-info src/*.egg-info .pytest_cache .hypothesis
