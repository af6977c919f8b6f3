"""pytest-benchmark runs of criss-cross attention against the official and mmcv algorithms.

Not part of ``make test`` (CI checks correctness; speed is reported, never asserted). Run:

    .venv/bin/python -m pytest benchmarks/test_attention_speed.py --benchmark-columns=median,iqr,rounds
    .venv/bin/python -m pytest benchmarks/test_attention_speed.py -k test_forward_backward --benchmark-json f.json

``ccnet bench`` measures the same cases round-robin in one process and computes the README's
ratios; use this file for pytest-benchmark's statistics, comparisons and history.
"""

import pytest
import torch

from ccnet.bench.attention import FEATURE_SIZES, OPS, forward_backward_runner, forward_runner, make_inputs


@pytest.fixture(params=["cityscapes-769", "ade20k-512"])
def size(request):
    return FEATURE_SIZES[request.param]


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("op", list(OPS))
def test_forward(benchmark, op, layout, size):
    inputs = make_inputs(1, 512, 64, size, torch.float32, torch.device("cpu"), layout)
    benchmark.group = f"forward {size[0]}x{size[1]} {layout}"
    benchmark(forward_runner(OPS[op], inputs))


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("op", list(OPS))
def test_forward_backward(benchmark, op, layout, size):
    inputs = make_inputs(1, 512, 64, size, torch.float32, torch.device("cpu"), layout, requires_grad=True)
    grad = torch.randn_like(inputs[2])
    benchmark.group = f"forward+backward {size[0]}x{size[1]} {layout}"
    benchmark(forward_backward_runner(OPS[op], inputs, grad))
