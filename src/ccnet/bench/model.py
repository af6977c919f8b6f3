"""Whole-model speed: CCNet inference and a training step, contiguous (NCHW) against channels-last."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ccnet.bench.measure import compare_times, median
from ccnet.losses import SegmentationCriterion
from ccnet.models import create_model


def model_benchmark(
    preset: str = "ccnet_official_cityscapes",
    backbone: str | None = None,
    inference_size: tuple[int, int] = (769, 769),
    train_size: tuple[int, int] = (512, 512),
    batch: int = 1,
    device: torch.device | str = "cpu",
    repeats: int = 3,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Median time of an inference forward and of an SGD training step (forward, main + aux loss,
    backward, step) for each memory format, measured round-robin in one run."""
    device = torch.device(device)
    overrides = {"backbone": backbone} if backbone else {}
    formats = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
    torch.manual_seed(0)
    models = {name: create_model(preset, 19, **overrides).to(device, memory_format=fmt)
              for name, fmt in formats.items()}
    for model in models.values():
        model.load_state_dict(next(iter(models.values())).state_dict())
    criterion = SegmentationCriterion(aux_weight=0.4)
    image = torch.randn(batch, 3, *inference_size, device=device)
    train_image = torch.randn(batch, 3, *train_size, device=device)
    target = torch.randint(0, 19, (batch, *train_size), device=device)

    def inference(name: str) -> Callable[[], object]:
        model, x = models[name], image.contiguous(memory_format=formats[name])

        def run() -> object:
            model.eval()
            with torch.no_grad():
                return model(x)["out"]

        return run

    def train_step(name: str) -> Callable[[], object]:
        model, x = models[name], train_image.contiguous(memory_format=formats[name])
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-9, momentum=0.9)

        def run() -> object:
            model.train()
            loss, _ = criterion(model(x), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return loss

        return run

    rows = []
    for task, make in (("inference", inference), ("train_step", train_step)):
        size = inference_size if task == "inference" else train_size
        times = compare_times({name: make(name) for name in formats}, device, warmup=1, repeats=repeats)
        row = {"task": task, "preset": preset, "backbone": models["nchw"].config["backbone"], "batch": batch,
               "height": size[0], "width": size[1],
               **{f"{name}_ms": median(samples) for name, samples in times.items()},
               **{f"{name}_samples_ms": samples for name, samples in times.items()}}
        row["channels_last_speedup"] = row["nchw_ms"] / row["channels_last_ms"]
        log(f"{task} {size[0]}x{size[1]} batch {batch}: NCHW {row['nchw_ms']:.0f} ms, channels-last "
            f"{row['channels_last_ms']:.0f} ms ({row['channels_last_speedup']:.2f}x)")
        rows.append(row)
    return rows
