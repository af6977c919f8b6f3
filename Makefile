# Two entry points, each doing all of its own set-up on a fresh machine:
#   make demo   create .venv, install, run the main job (ccnet train: the synthetic default)
#   make test   create .venv, install with dev extras, lint (ruff check), type-check (mypy), run the test suite; then create
#               .venv-detection (torch + torchvision + pycocotools) and run tests/detection there
# and two for GPUs (README, "On a GPU"):
#   make device-wheels   (where PyPI is reachable) the wheels the GPU machine lacks -> .device-wheels/
#   make gpu-check       (on the GPU machine, no .venv, no network) everything measured there -> $OUT
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

.PHONY: demo test test-detection lint clean venv venv-detection figures device-wheels gpu-check triton-compile-check

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
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -n 2 -q
	$(MAKE) --no-print-directory test-detection

# Mask R-CNN (tests/detection): skipped by the main run above, which has no torchvision; and every
# config's model on fake CUDA tensors (tests/fake_cuda: needs the CUDA build of torch this venv has).
test-detection: $(DET_VENV)/.installed
	$(DET_PY) -m pytest -n 2 -q tests/detection tests/fake_cuda

# The README's attention figures (docs/figures/), from the default job's model (trained first if missing).
figures: $(VENV)/.installed
	$(PY) docs/figures/make_figures.py

# CPython 3.12 manylinux x86_64 wheels of what ccnet and its CUDA tests need beyond the GPU
# machine's packages, their requirements closed (scripts/device_wheels.py).
device-wheels: $(VENV)/.installed
	$(PY) scripts/device_wheels.py --dest .device-wheels

# The interpreter with the CUDA PyTorch (the machine's own: no .venv there). Results go to
# $(OUT) (default gpu-check-out/); GPU_CHECK_ARGS for more, e.g. --only train,evaluate.
GPU_PYTHON ?= python3
gpu-check:
	$(GPU_PYTHON) scripts/gpu_check.py $(if $(OUT),--output "$(OUT)") $(GPU_CHECK_ARGS)

# The Triton kernels compiled for sm_90 and sm_80 without a GPU; the README's table (docs/triton-compile.md).
# make test runs the --quick set (tests/tools/test_triton_compile_check.py).
TRITON_COMPILE_ONLY ?= cityscapes-769 8x|camvid|cuda-test 1x64x40
triton-compile-check: $(VENV)/.installed
	$(PY) scripts/triton_compile_check.py --only '$(TRITON_COMPILE_ONLY)' --report docs/triton-compile.md --json docs/triton-compile.json

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) $(DET_VENV) build dist *.egg-info src/*.egg-info .pytest_cache .hypothesis gpu-check-out
