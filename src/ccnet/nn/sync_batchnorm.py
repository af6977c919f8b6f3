"""SyncBatchNorm that runs on any device, CPU (gloo) included.

PyTorch's ``nn.SyncBatchNorm`` refuses CPU tensors, and DDP refuses CPU modules that contain
one, so multi-process training on CPUs (and its tests) would be impossible with it. This layer
computes batch statistics over all ranks with two small differentiable all-reduces per layer
(global mean, then global centred variance: numerically stable) on every device.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; its gradient is again the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx, tensor: Tensor, group) -> Tensor:  # type: ignore[override]
        ctx.group = group
        out = tensor.clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class SyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the whole batch across all ranks.

    Outside distributed training (or in eval mode) it is exactly ``nn.BatchNorm2d``; the state
    dict has the same keys, so weights move freely between the two. In a process group it always
    takes the all-reduce path, even with one process (``torchrun --nproc_per_node 1`` runs the
    code of N processes).
    """

    def __init__(self, num_features: int, *args, process_group: dist.ProcessGroup | None = None, **kwargs) -> None:
        super().__init__(num_features, *args, **kwargs)
        self.process_group = process_group

    def forward(self, x: Tensor) -> Tensor:
        distributed = dist.is_available() and dist.is_initialized()
        if not (self.training and distributed):
            return super().forward(x)
        self._check_input_dim(x)
        group = self.process_group or dist.group.WORLD
        work = x.to(torch.promote_types(x.dtype, torch.float32))
        dims = [0, *range(2, x.dim())]
        count = torch.tensor([x.numel() // x.shape[1]], dtype=work.dtype, device=x.device)
        total = _AllReduceSum.apply(torch.cat([work.sum(dims), count]), group)
        n = total[-1]
        mean = total[:-1] / n
        shape = [1, -1] + [1] * (x.dim() - 2)
        centred = work - mean.reshape(shape)
        var = _AllReduceSum.apply(centred.square().sum(dims), group) / n
        out = centred * torch.rsqrt(var + self.eps).reshape(shape)
        if self.affine:
            out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var * (n / (n - 1).clamp_min(1))
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        return out.to(x.dtype)
