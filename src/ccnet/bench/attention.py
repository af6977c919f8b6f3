"""Benchmarks of the attention itself: our op against the official and mmcv algorithms (and, on
CUDA with triton installed, our fused Triton kernels), and the RCCA block against non-local
blocks (the paper's cost claims).

Every number is measured in the same process and run; ratios are taken pair by pair between
candidates timed round-robin (see `ccnet.bench.measure`).
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from ccnet.bench.baselines import mmcv_criss_cross, official_criss_cross
from ccnet.bench.measure import compare_times, count_flops, matmul_rate, median, peak_memory_bytes
from ccnet.errors import InputError
from ccnet.nn import CrissCrossAttention, NonLocal2d
from ccnet.ops import criss_cross_attention, criss_cross_attention_reference
from ccnet.ops.criss_cross_triton import triton_available

logger = logging.getLogger(__name__)

# Feature sizes at output stride 8: Cityscapes 769x769 crops, 512x1024 crops, ADE20K 512x512.
FEATURE_SIZES: dict[str, tuple[int, int]] = {"cityscapes-769": (97, 97), "cityscapes-512x1024": (64, 128),
                                             "ade20k-512": (64, 64)}
OPS: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    "ccnet": criss_cross_attention,
    "official": official_criss_cross,
    "mmcv": mmcv_criss_cross,
}
BASELINES = ("official", "mmcv")


def candidate_ops(device: torch.device) -> dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]]:
    """`OPS`, plus ``"triton"`` (our op with ``backend="triton"``) on CUDA when triton is
    installed: it is measured against the same baselines and against ``ccnet``, our default."""
    ops = dict(OPS)
    if device.type == "cuda" and triton_available():
        ops["triton"] = functools.partial(criss_cross_attention, backend="triton")
    return ops


def feature_size(name: str) -> tuple[int, int]:
    """``(H, W)`` of a named feature size (`FEATURE_SIZES`) or of ``"HxW"`` (e.g. ``"13x11"``)."""
    if name in FEATURE_SIZES:
        return FEATURE_SIZES[name]
    parts = name.lower().split("x")
    if len(parts) == 2 and all(p.isdigit() and int(p) > 0 for p in parts):
        return int(parts[0]), int(parts[1])
    raise InputError(f"unknown feature size {name!r}; choose from {', '.join(FEATURE_SIZES)} or give HxW")


def attention_flops(batch: int, channels: int, qk_channels: int, height: int, width: int) -> int:
    """FLOPs of one criss-cross attention forward as docs/goals.md counts them: every position
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
    """A no-argument callable: forward, then backward of the dense gradient ``grad``. The input
    gradients are freed before it returns, so that no call starts by freeing the previous call's
    (the CUDA allocator's peak would net that against the call's own memory)."""

    def run() -> object:
        with _autocast(inputs):
            out = op(*inputs)
        out.backward(grad.to(out.dtype))  # a dense gradient: an expanded one would flatter nobody
        for t in inputs:
            t.grad = None

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
) -> list[dict[str, Any]]:
    """Forward and forward+backward time, GFLOP/s and peak memory of every op of
    `candidate_ops`, per feature size, batch, channel count and input layout (all ops get
    the same tensors). Returns one row per configuration."""
    device = torch.device(device)
    ops = candidate_ops(device)
    rows = []
    for size_name, batch, c, layout in itertools.product(sizes, batches, channels, layouts):
        height, width = feature_size(size_name)
        flops = attention_flops(batch, c, qk_channels, height, width)
        inputs = make_inputs(batch, c, qk_channels, (height, width), dtype, device, layout)
        grad_inputs = make_inputs(batch, c, qk_channels, (height, width), dtype, device, layout, requires_grad=True)
        grad = torch.randn(batch, c, height, width, generator=torch.Generator().manual_seed(1)).to(device, dtype)
        grad = grad.contiguous(memory_format=_memory_format(layout))
        forward = compare_times({n: forward_runner(op, inputs) for n, op in ops.items()}, device, repeats=repeats)
        train = compare_times({n: forward_backward_runner(op, grad_inputs, grad) for n, op in ops.items()}, device,
                              repeats=repeats)
        row: dict[str, Any] = {"size": size_name, "height": height, "width": width, "batch": batch, "channels": c,
                               "qk_channels": qk_channels, "layout": layout, "dtype": str(dtype).removeprefix("torch."),
                               "gflop_forward": flops / 1e9, "ops": {}}
        for name, op in ops.items():
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
        _add_ratios(row, "", "ccnet", BASELINES, memory)
        if "triton" in ops:
            _add_ratios(row, "triton_", "triton", ("ccnet", *BASELINES), memory)
        if check and batch == 1:
            row["relative_error"] = relative_error(criss_cross_attention, inputs)
            if "triton" in ops:
                row["triton_relative_error"] = relative_error(ops["triton"], inputs)
        logger.info(_op_line(row))
        rows.append(row)
    return rows


def _add_ratios(row: dict[str, Any], prefix: str, name: str, others: Iterable[str], memory: bool,
                key: str = "ops") -> None:
    """``{prefix}speedup_{forward,forward_backward}_vs_{other}`` (other's time / ``name``'s) and
    ``{prefix}memory_ratio_vs_{other}`` (``name``'s fwd+bwd peak / other's) into ``row``, from the
    candidates' entries in ``row[key]``."""
    ours = row[key][name]
    for other_name in others:
        other = row[key][other_name]
        row[f"{prefix}speedup_forward_vs_{other_name}"] = other["forward_ms"] / ours["forward_ms"]
        row[f"{prefix}speedup_forward_backward_vs_{other_name}"] = (other["forward_backward_ms"]
                                                                    / ours["forward_backward_ms"])
        if memory:
            row[f"{prefix}memory_ratio_vs_{other_name}"] = (ours["forward_backward_peak_mb"]
                                                            / other["forward_backward_peak_mb"])


def _op_line(row: dict[str, Any]) -> str:
    return _timing_line(f"{row['size']} B={row['batch']} C={row['channels']} {row['layout']}", row["ops"], 1)


def _timing_line(prefix: str, entries: dict[str, dict[str, Any]], digits: int) -> str:
    """One progress line: every candidate's forward and forward+backward time (and peak memory)."""
    text = (f"{prefix}: fwd " + " ".join(f"{n} {e['forward_ms']:.{digits}f}ms" for n, e in entries.items())
            + " | fwd+bwd " + " ".join(f"{n} {e['forward_backward_ms']:.{digits}f}ms" for n, e in entries.items()))
    if "forward_backward_peak_mb" in entries["ccnet"]:
        text += " | peak " + " ".join(f"{n} {e['forward_backward_peak_mb']:.0f}MB" for n, e in entries.items())
    return text


def block_benchmark(
    size: tuple[int, int] = (97, 97),
    channels: int = 512,
    reduction: int = 8,
    layouts: Iterable[str] = ("nchw", "channels_last"),
    device: torch.device | str = "cpu",
    repeats: int = 3,
    dtype: torch.dtype = torch.float32,
) -> list[dict[str, Any]]:
    """The paper's cost table: one and two non-local blocks against RCCA (R=1, 2) on a
    ``(1, channels, *size)`` feature map: FLOPs counted by FlopCounterMode, peak memory of the
    forward (inference) and of forward+backward, forward time; per input layout. Half-precision
    ``dtype`` runs the blocks' weights and inputs in that dtype."""
    device = torch.device(device)
    torch.manual_seed(0)
    cca, nl1, nl2 = (m(channels, reduction, gamma_init=0.5).to(device, dtype) for m in (CrissCrossAttention,
                                                                                         NonLocal2d, NonLocal2d))

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
        x = torch.randn(1, channels, *size, device=device, dtype=dtype).contiguous(memory_format=memory_format)
        x_grad = x.clone().requires_grad_()
        grad = torch.randn_like(x)
        runners = {n: forward_runner(b, (x,)) for n, b in blocks.items()}
        times = compare_times(runners, device, warmup=1, repeats=repeats)
        for name, block in blocks.items():
            row = {
                "block": name, "layout": layout, "dtype": str(dtype).removeprefix("torch."),
                "height": size[0], "width": size[1], "channels": channels,
                "gflops": count_flops(forward_runner(block, (x,))) / 1e9,
                "forward_peak_mb": peak_memory_bytes(forward_runner(block, (x,)), device) / 2**20,
                "forward_backward_peak_mb": peak_memory_bytes(forward_backward_runner(block, (x_grad,), grad),
                                                              device) / 2**20,
                "forward_ms": median(times[name]),
            }
            logger.info(f"{name} ({layout}): {row['gflops']:.1f} GFLOPs, forward peak {row['forward_peak_mb']:.0f} MB, "
                f"fwd+bwd peak {row['forward_backward_peak_mb']:.0f} MB, forward {row['forward_ms']:.0f} ms")
            rows.append(row)
    return rows


def composed_block(block: nn.Module, op: Callable[[Tensor, Tensor, Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """``block``'s weights run as the published code composes them: its ``Conv2d`` q/k/v
    projections, the attention ``op``, ``gamma * out + x`` (as one ``addcmul``, which spares the
    baselines a temporary their own code allocates)."""

    def run(x: Tensor) -> Tensor:
        return torch.addcmul(x, block.gamma, op(block.query_conv(x), block.key_conv(x), block.value_conv(x)))

    return run


# The block comparison: our block, the same weights composed with our op, and with the baselines.
BLOCK_VARIANTS: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor] | None] = {
    "ccnet": None,  # CrissCrossAttention itself: the block as one op (ccnet.ops.criss_cross_block)
    "ccnet_op": criss_cross_attention,
    "official": official_criss_cross,
    "mmcv": mmcv_criss_cross,
}


def block_comparison(
    size: tuple[int, int] = (97, 97),
    channels: int = 512,
    reduction: int = 8,
    batches: Iterable[int] = (1, 8),
    recurrence: int = 2,
    layout: str = "nchw",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    repeats: int = 3,
    memory: bool = True,
) -> list[dict[str, Any]]:
    """The RCCA block (``recurrence`` loops, shared weights) in a model of the given layout: our
    `CrissCrossAttention` against the same weights composed with our op, the official and
    the mmcv algorithm (`BLOCK_VARIANTS`; on CUDA with triton also with our Triton op).
    Forward and forward+backward time (round-robin) and peak memory per batch size; one row per
    batch with our ratios. Half-precision ``dtype`` runs under autocast, as mixed-precision training
    does (our block then runs as the composition: the one-op block is for float32/float64)."""
    device = torch.device(device)
    torch.manual_seed(0)
    block = CrissCrossAttention(channels, reduction, gamma_init=0.5).to(device, dtype)
    block.to(memory_format=_memory_format(layout))
    variants = {name: block if op is None else composed_block(block, op) for name, op in BLOCK_VARIANTS.items()}
    if "triton" in candidate_ops(device):
        variants["triton"] = composed_block(block, candidate_ops(device)["triton"])

    def forward(fn: Callable[[Tensor], Tensor], x: Tensor) -> Callable[[], object]:
        def run() -> object:
            out = x
            with torch.no_grad(), _autocast((x,)):
                for _ in range(recurrence):
                    out = fn(out)
            return out

        return run

    def forward_backward(fn: Callable[[Tensor], Tensor], x: Tensor, grad: Tensor) -> Callable[[], object]:
        def run() -> object:
            out = x
            with _autocast((x,)):
                for _ in range(recurrence):
                    out = fn(out)
            out.backward(grad.to(out.dtype))
            block.zero_grad(set_to_none=True)  # freed inside the call, as forward_backward_runner does
            x.grad = None

        return run

    rows = []
    for batch in batches:
        generator = torch.Generator().manual_seed(batch)
        x = torch.randn(batch, channels, *size, generator=generator).to(device, dtype)
        x = x.contiguous(memory_format=_memory_format(layout))
        x_grad = x.clone().requires_grad_()
        grad = torch.randn(x.shape, generator=generator).to(device, dtype)
        grad = grad.contiguous(memory_format=_memory_format(layout))
        fwd = compare_times({n: forward(f, x) for n, f in variants.items()}, device, warmup=1, repeats=repeats)
        train = compare_times({n: forward_backward(f, x_grad, grad) for n, f in variants.items()}, device, warmup=1,
                              repeats=repeats)
        row: dict[str, Any] = {"batch": batch, "height": size[0], "width": size[1], "channels": channels,
                               "qk_channels": max(channels // reduction, 1), "recurrence": recurrence,
                               "layout": layout, "dtype": str(dtype).removeprefix("torch."), "blocks": {}}
        for name, fn in variants.items():
            entry = {"forward_ms": median(fwd[name]), "forward_backward_ms": median(train[name]),
                     "forward_samples_ms": fwd[name], "forward_backward_samples_ms": train[name]}
            if memory:
                entry["forward_peak_mb"] = peak_memory_bytes(forward(fn, x), device) / 2**20
                entry["forward_backward_peak_mb"] = peak_memory_bytes(forward_backward(fn, x_grad, grad),
                                                                      device) / 2**20
            row["blocks"][name] = entry
        others = [n for n in variants if n != "ccnet"]
        _add_ratios(row, "", "ccnet", others, memory, key="blocks")
        if memory:
            for name in others:
                row[f"forward_memory_ratio_vs_{name}"] = (row["blocks"]["ccnet"]["forward_peak_mb"]
                                                          / row["blocks"][name]["forward_peak_mb"])
        logger.info(_timing_line(f"RCCA R={recurrence} B={batch} {layout}", row["blocks"], 0))
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
            logger.info(f"{kind} R={loops} ({layout}): {row['gflops']:.2f} GFLOPs, forward {row['forward_ms']:.1f} ms, "
                f"fwd+bwd {row['forward_backward_ms']:.1f} ms, peak {row['forward_peak_mb']:.0f} / "
                f"{row['forward_backward_peak_mb']:.0f} MB")
            rows.append(row)
    return rows
