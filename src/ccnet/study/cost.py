"""What each variant costs: time and peak memory of a training step, FLOPs of the head.

Measured with the meters of :mod:`ccnet.bench.measure`, once per variant (cost does not depend
on the seed), all variants in one process: training steps are timed round-robin so that load
from other processes hits every variant alike, and only ratios between variants of the same
measurement are meant to be compared.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ccnet.bench.measure import compare_times, count_flops, median, peak_memory_bytes
from ccnet.config import Config
from ccnet.models import CCNet

logger = logging.getLogger(__name__)

# The paper's setting for its FLOPs and memory figures: ResNet-101 at output stride 8 on 769x769
# Cityscapes crops (97x97 features of 2048 channels), head 512 channels, 19 classes.
PAPER_FEATURES = (2048, 97, 97)
PAPER_HEAD_CHANNELS = 512
PAPER_ASPP_RATES = (12, 24, 36)  # DeepLabv3 at output stride 8


def _model(config: Config, num_classes: int) -> CCNet:
    return CCNet(num_classes, consistency=config.loss.consistency, **dataclasses.asdict(config.model))


def paper_scale_head_gflops(config: Config) -> float:
    """GFLOPs of the variant's head at the paper's scale (batch 1), counted on the meta device
    (shapes only, no arithmetic)."""
    model_args = {**dataclasses.asdict(config.model), "head_channels": PAPER_HEAD_CHANNELS,
                  "aspp_rates": PAPER_ASPP_RATES, "backbone": "resnet101", "output_stride": 8}
    with torch.device("meta"):
        model = CCNet(19, consistency=config.loss.consistency, **model_args).eval()
        features = torch.empty(1, *PAPER_FEATURES)
    with torch.no_grad():
        return count_flops(lambda: model.head(features)) / 1e9


def _train_step(model: CCNet, criterion: Callable, images: Tensor, labels: Tensor) -> Callable[[], object]:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)

    def step() -> object:
        model.train()
        loss, _ = criterion(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return step


def measure_costs(configs: dict[str, Config], repeats: int = 5, memory: bool = True) -> dict[str, dict[str, Any]]:
    """Per variant name: ``step_ms`` (median of ``repeats`` round-robin training steps of the
    study's batch), ``step_ms_samples``, ``peak_mb`` (largest amount of tensor memory alive during
    one training step, parameters and inputs excluded), ``head_gflops`` (forward of the head on
    one image of the study's size), ``head_gflops_paper`` (the same head at the paper's scale),
    ``head_params_m``. ``memory=False`` skips the (slow) profiler: ``peak_mb`` is None."""
    from ccnet.data.synthetic import SyntheticContextDataset
    from ccnet.engine.build import build_criterion

    first = next(iter(configs.values()))
    data = SyntheticContextDataset("train", size=(first.data.synthetic_size[0], first.data.synthetic_size[1]), seed=0)
    samples = [data[i] for i in range(first.data.batch_size)]
    images = torch.stack([s["image"] for s in samples])
    labels = torch.stack([s["label"] for s in samples])
    steps, models = {}, {}
    for name, config in configs.items():
        torch.manual_seed(0)
        models[name] = _model(config, data.info.num_classes)
        steps[name] = _train_step(models[name], build_criterion(config, data.info.ignore_index), images, labels)
    logger.info(f"cost: timing {len(steps)} training steps round-robin (batch {len(images)}, "
        f"{images.shape[-2]}x{images.shape[-1]}), {repeats} rounds")
    times = compare_times(steps, warmup=1, repeats=repeats)
    costs: dict[str, dict[str, Any]] = {}
    for name, config in configs.items():
        model = models[name]
        with torch.no_grad():
            model.eval()
            features = model.backbone(images[:1])[3]
            head_flops = count_flops(lambda model=model, features=features: model.head(features))
        costs[name] = {
            "step_ms": median(times[name]),
            "step_ms_samples": times[name],
            "peak_mb": peak_memory_bytes(steps[name]) / 2**20 if memory else None,
            "head_gflops": head_flops / 1e9,
            "head_gflops_paper": paper_scale_head_gflops(config),
            "head_params_m": sum(p.numel() for p in model.head.parameters()) / 1e6,
        }
        peak = f"{costs[name]['peak_mb']:.0f} MB" if memory else "not measured"
        logger.info(f"cost: {name}: step {costs[name]['step_ms']:.0f} ms, peak {peak}, head "
            f"{costs[name]['head_gflops']:.3f} GFLOPs ({costs[name]['head_gflops_paper']:.1f} at the paper's scale)")
    return costs
