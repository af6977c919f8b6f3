"""Process-group set-up for ``torchrun`` (gloo on CPU, nccl on CUDA) and small helpers."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None  # the process group's ("nccl", "gloo"); None when running alone

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """In a process group: DDP, SyncBatchNorm, gathered checkpoints (even with one process)."""
        return self.backend is not None


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA (this process's local GPU) when available, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def launched_by_torchrun() -> bool:
    """Started by ``torchrun`` (which sets ``TORCHELASTIC_RUN_ID``), with any number of processes."""
    return "TORCHELASTIC_RUN_ID" in os.environ


def init_distributed(device_name: str = "auto") -> DistContext:
    """Join the process group when launched by ``torchrun`` or with ``WORLD_SIZE`` > 1, else run
    alone. ``torchrun --nproc_per_node 1`` joins a group of one: the multi-process code path
    (nccl or gloo, DDP, SyncBatchNorm) on a single device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world_size == 1 and not launched_by_torchrun():
        return DistContext(device=device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, device_id=device if device.type == "cuda" else None)
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, device, dist.get_backend())


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Average scalar tensors over ranks (for logging); identity when not distributed."""
    if not (dist.is_available() and dist.is_initialized()) or not values:
        return values
    stacked = torch.stack([v.detach().float() for v in values.values()])
    dist.all_reduce(stacked)
    stacked /= dist.get_world_size()
    return dict(zip(values, stacked, strict=True))
