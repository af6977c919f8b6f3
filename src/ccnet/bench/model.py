"""Whole-model speed: CCNet inference and a training step, per memory format (NCHW, channels-last)
and mixed precision (off, float16, bfloat16), all variants timed round-robin in one run."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable
from typing import Any

import torch

from ccnet.bench.measure import compare_times, median, peak_memory_bytes
from ccnet.losses import SegmentationCriterion
from ccnet.models import create_model

logger = logging.getLogger(__name__)

MEMORY_FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
AMP_DTYPES: dict[str, torch.dtype | None] = {"off": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def variant_name(layout: str, amp: str) -> str:
    return layout if amp == "off" else f"{layout}+{amp}"


def model_benchmark(
    preset: str = "ccnet_official_cityscapes",
    backbone: str | None = None,
    inference_size: tuple[int, int] = (769, 769),
    train_size: tuple[int, int] = (512, 512),
    batch: int = 1,
    layouts: Iterable[str] = ("nchw", "channels_last"),
    amp: Iterable[str] = ("off",),
    device: torch.device | str = "cpu",
    repeats: int = 3,
    memory: bool | None = None,
) -> list[dict[str, Any]]:
    """Median time of an inference forward and of an SGD training step (forward, main + aux loss,
    backward, step; float16 with a GradScaler) for every memory format x AMP variant, measured
    round-robin in one run. ``memory`` (default: on CUDA only, where it is cheap) adds each
    variant's peak memory. One row per task and variant."""
    device = torch.device(device)
    layouts, amp = list(layouts), list(amp)
    for name in amp:
        if name not in AMP_DTYPES:
            raise ValueError(f"unknown AMP mode {name!r}; choose from {', '.join(AMP_DTYPES)}")
    for name in layouts:
        if name not in MEMORY_FORMATS:
            raise ValueError(f"unknown layout {name!r}; choose from {', '.join(MEMORY_FORMATS)}")
    memory = device.type == "cuda" if memory is None else memory
    overrides = {"backbone": backbone} if backbone else {}
    torch.manual_seed(0)
    models = {layout: create_model(preset, 19, **overrides).to(device, memory_format=MEMORY_FORMATS[layout])
              for layout in layouts}
    first = next(iter(models.values()))
    for model in models.values():
        model.load_state_dict(first.state_dict())
    optimizers = {layout: torch.optim.SGD(m.parameters(), lr=1e-9, momentum=0.9) for layout, m in models.items()}
    criterion = SegmentationCriterion(aux_weight=0.4)
    image = torch.randn(batch, 3, *inference_size, device=device)
    train_image = torch.randn(batch, 3, *train_size, device=device)
    target = torch.randint(0, 19, (batch, *train_size), device=device)
    variants = list(itertools.product(layouts, amp))

    def autocast(mode: str) -> torch.autocast:
        dtype = AMP_DTYPES[mode]
        return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

    def inference(layout: str, mode: str) -> Callable[[], object]:
        model, x = models[layout], image.contiguous(memory_format=MEMORY_FORMATS[layout])

        def run() -> object:
            model.eval()
            with torch.no_grad(), autocast(mode):
                return model(x)["out"]

        return run

    def train_step(layout: str, mode: str) -> Callable[[], object]:
        model, optimizer = models[layout], optimizers[layout]
        x = train_image.contiguous(memory_format=MEMORY_FORMATS[layout])
        scaler = torch.amp.GradScaler(device.type, enabled=AMP_DTYPES[mode] == torch.float16)

        def run() -> object:
            model.train()
            optimizer.zero_grad(set_to_none=True)
            with autocast(mode):
                loss, _ = criterion(model(x), target)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            return loss

        return run

    rows = []
    for task, make in (("inference", inference), ("train_step", train_step)):
        size = inference_size if task == "inference" else train_size
        runners = {variant_name(layout, mode): make(layout, mode) for layout, mode in variants}
        times = compare_times(runners, device, warmup=1, repeats=repeats)
        baseline = median(next(iter(times.values())))
        for (layout, mode), (name, samples) in zip(variants, times.items(), strict=True):
            row = {"task": task, "preset": preset, "backbone": first.config["backbone"], "batch": batch,
                   "height": size[0], "width": size[1], "layout": layout, "amp": mode, "variant": name,
                   "ms": median(samples), "samples_ms": samples, "peak_mb": None}
            row["speedup"] = baseline / row["ms"]  # against the first variant (NCHW without AMP by default)
            if memory:
                for m in models.values():
                    m.zero_grad(set_to_none=True)  # other variants' gradients are not this one's memory
                row["peak_mb"] = peak_memory_bytes(runners[name], device) / 2**20
            rows.append(row)
            peak = "" if row["peak_mb"] is None else f", peak {row['peak_mb']:.0f} MB"
            logger.info(f"{task} {size[0]}x{size[1]} batch {batch} {name}: {row['ms']:.1f} ms "
                f"({row['speedup']:.2f}x {next(iter(runners))}){peak}")
    return rows
