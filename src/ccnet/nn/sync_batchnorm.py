"""SyncBatchNorm that also runs on CPU (gloo), so multi-process training works and is testable
without GPUs. On CUDA it is PyTorch's own ``nn.SyncBatchNorm``."""

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


class SyncBatchNorm(nn.SyncBatchNorm):
    """Batch statistics over all ranks of the process group, on any device.

    The CPU path computes the global mean, then the global centred variance (two small
    all-reduces per layer, numerically stable), and is differentiable end to end.
    """

    def forward(self, x: Tensor) -> Tensor:
        distributed = dist.is_available() and dist.is_initialized() and self.training
        if x.device.type != "cpu" or not distributed:
            return super().forward(x)
        group = self.process_group or dist.group.WORLD
        dims = [0, *range(2, x.dim())]
        work = x.to(torch.promote_types(x.dtype, torch.float32))
        count = torch.tensor([x.numel() // x.shape[1]], dtype=work.dtype)
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
                momentum = (
                    1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                )
                unbiased = var * (n / (n - 1).clamp_min(1))
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        return out.to(x.dtype)
