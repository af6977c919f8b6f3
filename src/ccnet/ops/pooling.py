"""Adaptive average pooling that stays correct for every input size in traced and exported graphs.

``F.adaptive_avg_pool2d`` is exported to ONNX as an ``AveragePool`` whose kernel and stride are
worked out from the example's size, so a graph with a dynamic height and width pools the wrong
regions at any other size (PSPNet's pyramid pooling is then wrong everywhere but the example
size). Here the pooling is two small matrix products whose averaging matrices are computed from
the input's size with PyTorch's own bin edges: bin ``i`` of ``b`` over ``n`` cells covers
``[floor(i n / b), ceil((i + 1) n / b))``. Eager code keeps PyTorch's kernel; under tracers
and exporters the matrix form is used, and the two agree to rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ccnet.ops.criss_cross import _is_tracing


def _bin_matrix(size: int, bins: int, like: Tensor) -> Tensor:
    """``(bins, size)``: row ``i`` averages the cells of bin ``i`` (PyTorch's edges)."""
    index = torch.arange(bins, device=like.device)
    start = torch.div(index * size, bins, rounding_mode="floor")
    end = torch.div((index + 1) * size + (bins - 1), bins, rounding_mode="floor")
    cells = torch.arange(size, device=like.device)
    inside = (cells >= start[:, None]) & (cells < end[:, None])
    return inside.to(like.dtype) / (end - start).to(like.dtype)[:, None]


def adaptive_avg_pool2d_dynamic(x: Tensor, output_size: int | tuple[int, int]) -> Tensor:
    """``F.adaptive_avg_pool2d(x, output_size)`` for ``(..., H, W)`` maps, as ``P_h @ x @ P_w^T``
    with averaging matrices computed from ``H`` and ``W``: a graph traced at one size pools
    correctly at every other."""
    bins_h, bins_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    if bins_h < 1 or bins_w < 1:
        raise ValueError(f"output_size must be positive, got {output_size}")
    rows = _bin_matrix(x.shape[-2], bins_h, x)
    cols = _bin_matrix(x.shape[-1], bins_w, x)
    return torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))


def adaptive_avg_pool2d(x: Tensor, output_size: int | tuple[int, int]) -> Tensor:
    """PyTorch's kernel in eager mode; `adaptive_avg_pool2d_dynamic` under tracers and exporters."""
    if _is_tracing():
        return adaptive_avg_pool2d_dynamic(x, output_size)
    return F.adaptive_avg_pool2d(x, output_size)
