"""Benchmarks of the attention itself: our op against the official and mmcv algorithms, and the
RCCA block against non-local blocks (the paper's cost claims).

Every number is measured in the same process and run; ratios are taken pair by pair between
candidates timed round-robin (see :mod:`ccnet.bench.measure`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from ccnet.bench.baselines import mmcv_criss_cross, official_criss_cross
from ccnet.bench.measure import compare_times, count_flops, matmul_rate, median, peak_memory_bytes
from ccnet.nn import CrissCrossAttention, NonLocal2d
from ccnet.ops import criss_cross_attention, criss_cross_attention_reference

# Feature sizes at output stride 8: Cityscapes 769x769 crops, 512x1024 crops, ADE20K 512x512.
FEATURE_SIZES: dict[str, tuple[int, int]] = {"cityscapes-769": (97, 97), "cityscapes-512x1024": (64, 128),
                                             "ade20k-512": (64, 64)}
OPS: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    "ccnet": criss_cross_attention,
    "official": official_criss_cross,
    "mmcv": mmcv_criss_cross,
}


def attention_flops(batch: int, channels: int, qk_channels: int, height: int, width: int) -> int:
    """FLOPs of one criss-cross attention forward as the issue defines them: every position
    multiplies-and-adds over its H + W - 1 path positions, for the energies (Cq) and the
    aggregation (C)."""
    return 2 * batch * height * width * (height + width - 1) * (qk_channels + channels)


def make_inputs(batch: int, channels: int, qk_channels: int, size: tuple[int, int], dtype: torch.dtype,
                device: torch.device, layout: str = "nchw", requires_grad: bool = False,
                seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Random query, key (``qk_channels``) and value (``channels``) in the given layout."""
    generator = torch.Generator().manual_seed(seed)
    shapes = [(batch, qk_channels, *size), (batch, qk_channels, *size), (batch, channels, *size)]
    fmt = _memory_format(layout)
    return tuple(torch.randn(s, generator=generator).to(device, dtype).contiguous(memory_format=fmt)
                 .requires_grad_(requires_grad) for s in shapes)


def _memory_format(layout: str) -> torch.memory_format:
    return torch.channels_last if layout == "channels_last" else torch.contiguous_format


def _autocast(inputs: tuple[Tensor, ...]) -> torch.autocast:
    """Half-precision inputs run under autocast, as in mixed-precision training (the published
    algorithms mix in float32 constants such as their -inf diagonal)."""
    dtype = inputs[0].dtype
    return torch.autocast(inputs[0].device.type, dtype=dtype, enabled=dtype in (torch.float16, torch.bfloat16))


def forward_runner(op: Callable, inputs: tuple[Tensor, ...]) -> Callable[[], object]:
    """A no-argument callable: ``op(*inputs)`` without autograd (inference)."""

    def run() -> object:
        with torch.no_grad(), _autocast(inputs):
            return op(*inputs)

    return run


def forward_backward_runner(op: Callable, inputs: tuple[Tensor, ...], grad: Tensor) -> Callable[[], object]:
    """A no-argument callable: forward, then backward of the dense gradient ``grad``."""

    def run() -> object:
        for t in inputs:
            t.grad = None
        with _autocast(inputs):
            out = op(*inputs)
        out.backward(grad.to(out.dtype))  # a dense gradient: an expanded one would flatter nobody

    return run


def relative_error(op: Callable, inputs: tuple[Tensor, ...]) -> float:
    """Max |op - dense reference| / max |reference|, the reference computed in float64."""
    with torch.no_grad():
        reference = criss_cross_attention_reference(*(t.double() for t in inputs))
        out = op(*inputs).double()
    return ((out - reference).abs().max() / reference.abs().max()).item()


def op_benchmark(
    sizes: Iterable[str] = tuple(FEATURE_SIZES),
    batches: Iterable[int] = (1, 8),
    channels: Iterable[int] = (256, 512),
    qk_channels: int = 64,
    dtype: torch.dtype = torch.float32,
    layouts: Iterable[str] = ("nchw", "channels_last"),
    device: torch.device | str = "cpu",
    repeats: int = 5,
    memory: bool = True,
    check: bool = True,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Forward and forward+backward time, GFLOP/s and peak memory of every op in :data:`OPS`,
    per feature size, batch, channel count and input layout (all ops get the same tensors).
    Returns one row per configuration."""
    device = torch.device(device)
    rows = []
    for size_name, batch, c, layout in itertools.product(sizes, batches, channels, layouts):
        height, width = FEATURE_SIZES[size_name]
        flops = attention_flops(batch, c, qk_channels, height, width)
        inputs = make_inputs(batch, c, qk_channels, (height, width), dtype, device, layout)
        grad_inputs = make_inputs(batch, c, qk_channels, (height, width), dtype, device, layout, requires_grad=True)
        grad = torch.randn(batch, c, height, width, generator=torch.Generator().manual_seed(1)).to(device, dtype)
        grad = grad.contiguous(memory_format=_memory_format(layout))
        forward = compare_times({n: forward_runner(op, inputs) for n, op in OPS.items()}, device, repeats=repeats)
        train = compare_times({n: forward_backward_runner(op, grad_inputs, grad) for n, op in OPS.items()}, device,
                              repeats=repeats)
        row: dict[str, Any] = {"size": size_name, "height": height, "width": width, "batch": batch, "channels": c,
                               "qk_channels": qk_channels, "layout": layout, "dtype": str(dtype).removeprefix("torch."),
                               "gflop_forward": flops / 1e9, "ops": {}}
        for name, op in OPS.items():
            entry = {
                "forward_ms": median(forward[name]),
                "forward_backward_ms": median(train[name]),
                "forward_samples_ms": forward[name],
                "forward_backward_samples_ms": train[name],
            }
            entry["forward_gflops"] = flops / entry["forward_ms"] / 1e6
            entry["forward_backward_gflops"] = 3 * flops / entry["forward_backward_ms"] / 1e6
            if memory:
                entry["forward_backward_peak_mb"] = peak_memory_bytes(forward_backward_runner(op, grad_inputs, grad),
                                                                      device) / 2**20
                entry["forward_peak_mb"] = peak_memory_bytes(forward_runner(op, inputs), device) / 2**20
            row["ops"][name] = entry
        ours = row["ops"]["ccnet"]
        for name in OPS:
            if name != "ccnet":
                other = row["ops"][name]
                row[f"speedup_forward_vs_{name}"] = other["forward_ms"] / ours["forward_ms"]
                row[f"speedup_forward_backward_vs_{name}"] = other["forward_backward_ms"] / ours["forward_backward_ms"]
                if memory:
                    ratio = ours["forward_backward_peak_mb"] / other["forward_backward_peak_mb"]
                    row[f"memory_ratio_vs_{name}"] = ratio
        if check and batch == 1:
            row["relative_error"] = relative_error(criss_cross_attention, inputs)
        log(_op_line(row))
        rows.append(row)
    return rows


def _op_line(row: dict[str, Any]) -> str:
    ops = row["ops"]
    text = (f"{row['size']} B={row['batch']} C={row['channels']} {row['layout']}: fwd "
            + " ".join(f"{n} {e['forward_ms']:.1f}ms" for n, e in ops.items())
            + " | fwd+bwd " + " ".join(f"{n} {e['forward_backward_ms']:.1f}ms" for n, e in ops.items()))
    if "forward_backward_peak_mb" in ops["ccnet"]:
        text += " | peak " + " ".join(f"{n} {e['forward_backward_peak_mb']:.0f}MB" for n, e in ops.items())
    return text


def block_benchmark(
    size: tuple[int, int] = (97, 97),
    channels: int = 512,
    reduction: int = 8,
    layouts: Iterable[str] = ("nchw", "channels_last"),
    device: torch.device | str = "cpu",
    repeats: int = 3,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """The paper's cost table: one and two non-local blocks against RCCA (R=1, 2) on a
    ``(1, channels, *size)`` feature map: FLOPs counted by FlopCounterMode, peak memory of the
    forward (inference) and of forward+backward, forward time; per input layout."""
    device = torch.device(device)
    torch.manual_seed(0)
    cca, nl1, nl2 = (m(channels, reduction, gamma_init=0.5).to(device) for m in (CrissCrossAttention, NonLocal2d,
                                                                                  NonLocal2d))

    def recurrent(block: nn.Module, times: int) -> Callable[[Tensor], Tensor]:
        def run(inp: Tensor) -> Tensor:
            for _ in range(times):
                inp = block(inp)
            return inp

        return run

    blocks = {"rcca_r1": recurrent(cca, 1), "rcca_r2": recurrent(cca, 2), "non_local_x1": nl1,
              "non_local_x2": lambda inp: nl2(nl1(inp))}
    rows = []
    for layout in layouts:
        memory_format = _memory_format(layout)
        for module in (cca, nl1, nl2):
            module.to(memory_format=memory_format)
        x = torch.randn(1, channels, *size, device=device).contiguous(memory_format=memory_format)
        x_grad = x.clone().requires_grad_()
        grad = torch.randn_like(x)
        runners = {n: forward_runner(b, (x,)) for n, b in blocks.items()}
        times = compare_times(runners, device, warmup=1, repeats=repeats)
        for name, block in blocks.items():
            row = {
                "block": name, "layout": layout,
                "height": size[0], "width": size[1], "channels": channels,
                "gflops": count_flops(forward_runner(block, (x,))) / 1e9,
                "forward_peak_mb": peak_memory_bytes(forward_runner(block, (x,)), device) / 2**20,
                "forward_backward_peak_mb": peak_memory_bytes(forward_backward_runner(block, (x_grad,), grad),
                                                              device) / 2**20,
                "forward_ms": median(times[name]),
            }
            log(f"{name} ({layout}): {row['gflops']:.1f} GFLOPs, forward peak {row['forward_peak_mb']:.0f} MB, "
                f"fwd+bwd peak {row['forward_backward_peak_mb']:.0f} MB, forward {row['forward_ms']:.0f} ms")
            rows.append(row)
    return rows


def ceiling(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> dict[str, float]:
    """The run's practical matmul rate (GFLOP/s of a 2048x2048 matrix multiply)."""
    return {"matmul_2048_gflops": matmul_rate(2048, dtype, device)}


def clip_benchmark(
    shape: tuple[int, int, int] = (5, 45, 60),
    channels: int = 512,
    reduction: int = 8,
    recurrences: Iterable[int] = (1, 2, 3),
    layouts: Iterable[str] = ("nchw", "channels_last"),
    device: torch.device | str = "cpu",
    repeats: int = 3,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """The 3D criss-cross block (attention across a clip, as in CCNet3D) against the 2D block
    (within each frame) on the same clip: ``shape`` = (T, h, w) features of ``channels``
    channels, stored frame by frame ``(T, C, h, w)`` as CCNet3D holds them; one block, R loops
    (shared weights). FLOPs counted by FlopCounterMode, forward and forward+backward time
    (round-robin), peak memory of the forward and of forward+backward; per input layout."""
    device = torch.device(device)
    frames, height, width = shape
    torch.manual_seed(0)
    block = CrissCrossAttention(channels, reduction, gamma_init=0.5).to(device)

    def looped(loops: int, temporal: bool) -> Callable[[Tensor], Tensor]:
        def run(inp: Tensor) -> Tensor:
            for _ in range(loops):
                inp = block(inp, frames=frames) if temporal else block(inp)
            return inp

        return run

    candidates = {(kind, r): looped(r, kind == "3d") for r in recurrences for kind in ("3d", "2d")}
    rows = []
    for layout in layouts:
        memory_format = _memory_format(layout)
        block.to(memory_format=memory_format)
        x = torch.randn(frames, channels, height, width, device=device).contiguous(memory_format=memory_format)
        x_grad = x.clone().requires_grad_()
        grad = torch.randn_like(x)
        forward = compare_times({k: forward_runner(f, (x,)) for k, f in candidates.items()}, device, warmup=1,
                                repeats=repeats)
        train = compare_times({k: forward_backward_runner(f, (x_grad,), grad) for k, f in candidates.items()}, device,
                              warmup=1, repeats=repeats)
        for (kind, loops), fn in candidates.items():
            row = {
                "attention": kind, "recurrence": loops, "layout": layout, "frames": frames, "height": height,
                "width": width, "channels": channels,
                "gflops": count_flops(forward_runner(fn, (x,))) / 1e9,
                "forward_ms": median(forward[(kind, loops)]),
                "forward_backward_ms": median(train[(kind, loops)]),
                "forward_peak_mb": peak_memory_bytes(forward_runner(fn, (x,)), device) / 2**20,
                "forward_backward_peak_mb": peak_memory_bytes(forward_backward_runner(fn, (x_grad,), grad),
                                                              device) / 2**20,
            }
            log(f"{kind} R={loops} ({layout}): {row['gflops']:.2f} GFLOPs, forward {row['forward_ms']:.1f} ms, "
                f"fwd+bwd {row['forward_backward_ms']:.1f} ms, peak {row['forward_peak_mb']:.0f} / "
                f"{row['forward_backward_peak_mb']:.0f} MB")
            rows.append(row)
    return rows
