"""SyncBatchNorm: ours (any device, two all-reduces each way) against PyTorch's on CUDA.

`sync_batchnorm_benchmark` times one training step (forward + backward) of a head-sized
norm + leaky ReLU layer and its peak memory, for each implementation
`ccnet.nn.convert_sync_batchnorm` can give, in the caller's process group or, without
one, in a group of one that it sets up and tears down:

* ``ours``: `ccnet.nn.norm.SyncBatchNormAct2d` (CPU/gloo training; always all-reduces).
* ``native``: `ccnet.nn.norm.NativeSyncBatchNormAct2d`, what CUDA training uses. With one
  process PyTorch skips the synchronisation (plain cuDNN batch norm).
* ``native-sync-path`` (CUDA, a group of one only): the same layer forced through
  ``nn.SyncBatchNorm``'s multi-process path (statistics kernel, one all-gather, fused
  elementwise kernel), what every rank runs with two or more processes.

The outputs and input gradients of the candidates are compared with ``ours`` (``max_abs_diff``).
Reported, never asserted.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ccnet.bench.measure import compare_times, median, peak_memory_bytes
from ccnet.nn.norm import NativeSyncBatchNormAct2d, SyncBatchNormAct2d

__all__ = ["sync_batchnorm_benchmark", "sync_batchnorm_table"]


class _NativeSyncPath(NativeSyncBatchNormAct2d):
    """``nn.SyncBatchNorm``'s multi-process kernels and collective even in a group of one."""

    def forward(self, x: Tensor) -> Tensor:
        from torch.nn.modules._functions import SyncBatchNorm as SyncBatchNormFunction

        group = self.process_group or dist.group.WORLD
        out = SyncBatchNormFunction.apply(x, self.weight, self.bias, self.running_mean, self.running_var, self.eps,
                                          self.momentum, group, dist.get_world_size(group))
        return self.act(out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _step(layer: nn.Module, x: Tensor, grad: Tensor) -> Callable[[], Tensor]:
    def run() -> Tensor:
        x.grad = None
        layer.zero_grad(set_to_none=True)
        out = layer(x)
        out.backward(grad)
        return out

    return run


def sync_batchnorm_benchmark(device: torch.device | str = "cuda", batch: int = 4, channels: int = 512,
                             size: tuple[int, int] = (97, 97), repeats: int = 20, warmup: int = 3) -> dict[str, Any]:
    """Forward + backward milliseconds (median) and peak bytes of each SyncBatchNorm candidate on a
    ``(batch, channels, *size)`` float32 map (default: the head's 512 channels at 1/8 of 769x769).

    Runs in the current process group, else in a one-process group (nccl on CUDA, gloo on CPU)
    made for the call. On CPU only ``ours`` runs (PyTorch's layer refuses CPU tensors in a group).
    Returns ``{"device", "world_size", "shape", "rows": [{"name", "ms", "peak_bytes",
    "max_abs_diff"}]}``.
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    own_group = not dist.is_initialized()
    if own_group:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1,
                                device_id=device if device.type == "cuda" else None)
    try:
        world = dist.get_world_size()
        classes: dict[str, type[nn.Module]] = {"ours": SyncBatchNormAct2d}
        if device.type == "cuda":
            classes["native"] = NativeSyncBatchNormAct2d
            if world == 1:
                classes["native-sync-path"] = _NativeSyncPath
        generator = torch.Generator().manual_seed(0)
        shape = (batch, channels, *size)
        x = (torch.randn(shape, generator=generator) * 2 + 0.5).to(device).requires_grad_()
        grad = torch.randn(shape, generator=generator).to(device)
        layers = {name: cls(channels, act="leaky_relu").to(device).train() for name, cls in classes.items()}
        steps = {name: _step(layer, x, grad) for name, layer in layers.items()}
        reference = steps["ours"]().detach()
        reference_grad = x.grad.detach().clone()
        rows = []
        for name, step in steps.items():
            out = step().detach()
            diff = max(float((out - reference).abs().max()), float((x.grad - reference_grad).abs().max()))
            rows.append({"name": name, "max_abs_diff": diff, "peak_bytes": peak_memory_bytes(step, device)})
        times = compare_times(steps, device, warmup=warmup, repeats=repeats)
        for row in rows:
            row["ms"] = median(times[row["name"]])
    finally:
        if own_group:
            dist.destroy_process_group()
    return {"device": str(device), "world_size": world, "shape": list(shape), "rows": rows}


def sync_batchnorm_table(result: dict[str, Any]) -> str:
    """Markdown table of `sync_batchnorm_benchmark`'s result, ratios against ``ours``."""
    ours = next(row for row in result["rows"] if row["name"] == "ours")
    lines = [f"SyncBatchNorm + leaky ReLU, forward + backward, input {tuple(result['shape'])} float32, "
             f"{result['device']}, {result['world_size']} process(es)", "",
             "| implementation | ms (median) | vs ours | peak MiB | vs ours | max abs diff to ours |",
             "|---|---:|---:|---:|---:|---:|"]
    for row in result["rows"]:
        lines.append(f"| {row['name']} | {row['ms']:.3f} | {row['ms'] / ours['ms']:.2f}x | "
                     f"{row['peak_bytes'] / 2**20:.1f} | {row['peak_bytes'] / max(ours['peak_bytes'], 1):.2f}x | "
                     f"{row['max_abs_diff']:.2g} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m ccnet.bench.sync_batchnorm [--device cuda] [--output DIR]``: the table on stdout,
    ``sync_batchnorm.json`` and ``.md`` in ``--output``."""
    import argparse
    from pathlib import Path

    from ccnet.bench.report import write_json
    from ccnet.files import atomic_write_text

    parser = argparse.ArgumentParser(prog="python -m ccnet.bench.sync_batchnorm", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--size", type=int, nargs=2, default=(97, 97), metavar=("H", "W"))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    result = sync_batchnorm_benchmark(args.device, args.batch, args.channels, tuple(args.size), args.repeats)
    table = sync_batchnorm_table(result)
    print(table)
    if args.output is not None:
        args.output.mkdir(parents=True, exist_ok=True)
        write_json(result, args.output / "sync_batchnorm.json")
        atomic_write_text(args.output / "sync_batchnorm.md", table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
