# Two entry points, each doing all of its own set-up on a fresh machine:
#   make demo   create .venv, install, run the main job (ccnet train: the synthetic default)
#   make test   create .venv, install with dev extras, run the test suite; then create
#               .venv-detection (torch + torchvision + pycocotools) and run tests/detection there
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The PyTorch pin used when the environment has none. On a CPU-only machine with a local
# CPU wheel (see pip's find-links) this resolves to that wheel, never to CUDA packages.
TORCH_PIN ?= torch==2.13.0
# The detection extra (ccnet.detection) needs torchvision, which does not load with the CPU
# wheel above: its tests run in a second environment with a matching torch/torchvision pair.
DET_VENV := .venv-detection
DET_PY := $(DET_VENV)/bin/python
DETECTION_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test test-detection lint clean venv venv-detection

$(PY):
	$(PYTHON) -m venv $(VENV)

# Installs PyTorch first (only when missing), then the package; the stamp depends on
# pyproject.toml so a changed dependency list reinstalls.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_PIN)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

$(DET_PY):
	$(PYTHON) -m venv $(DET_VENV)

$(DET_VENV)/.installed: pyproject.toml | $(DET_PY)
	$(DET_PY) -c "import torchvision" 2>/dev/null || $(DET_PY) -m pip install --quiet $(DETECTION_PINS)
	$(DET_PY) -m pip install --quiet -e ".[detection]" "pytest>=8" "pytest-xdist>=3.5" "hypothesis>=6.100"
	touch $@

venv-detection: $(DET_VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/ccnet train

test: $(VENV)/.installed $(DET_VENV)/.installed
	$(PY) -m pytest -n 2 -q
	$(MAKE) --no-print-directory test-detection

# Mask R-CNN (tests/detection): skipped by the main run above, which has no torchvision.
test-detection: $(DET_VENV)/.installed
	$(DET_PY) -m pytest -n 2 -q tests/detection

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) $(DET_VENV) build dist *.egg-info src/*.egg-info .pytest_cache .hypothesis
