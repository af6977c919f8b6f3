"""Dense masked-attention references for the criss-cross operators.

Full attention over all positions, with every pair off the criss-cross path masked out. Slow
(quadratic in the number of positions) and obviously correct: the oracle for tests and
benchmarks.
"""

from __future__ import annotations

import torch
from torch import Tensor


def criss_cross_mask(*spatial: int, device: torch.device | str | None = None) -> Tensor:
    """Boolean ``(N, N)`` mask, ``N = prod(spatial)``: True where two positions differ in at most
    one coordinate, i.e. lie on a common row/column (2D) or T/H/W-line (3D)."""
    grids = torch.meshgrid(*(torch.arange(n, device=device) for n in spatial), indexing="ij")
    coords = torch.stack([g.reshape(-1) for g in grids], dim=1)  # (N, D)
    differing = (coords[:, None, :] != coords[None, :, :]).sum(-1)
    return differing <= 1


def criss_cross_attention_matrix_reference(query: Tensor, key: Tensor) -> Tensor:
    """Dense ``(B, N, N)`` criss-cross attention matrix of ``(B, Cq, *spatial)`` query and key
    (2D or 3D), positions flattened in row-major order: ``a[b, i, j]`` is the weight position ``i``
    gives position ``j``, 0 off the criss-cross path; each row sums to 1. At least float32."""
    batch = query.shape[0]
    spatial = query.shape[2:]
    dtype = torch.promote_types(query.dtype, torch.float32)
    q = query.reshape(batch, query.shape[1], -1).to(dtype)  # (B, Cq, N)
    k = key.reshape(batch, key.shape[1], -1).to(dtype)
    energy = q.transpose(1, 2) @ k  # (B, N, N): energy[b, i, j] = <q_i, k_j>
    energy = energy.masked_fill(~criss_cross_mask(*spatial, device=query.device), float("-inf"))
    return torch.softmax(energy, dim=-1)


def _dense_masked_attention(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    batch, channels = value.shape[:2]
    attention = criss_cross_attention_matrix_reference(query, key)
    v = value.reshape(batch, channels, -1).to(attention.dtype)  # (B, C, N)
    out = v @ attention.transpose(1, 2)  # (B, C, N): out[:, :, i] = sum_j a[i, j] v_j
    return out.reshape(value.shape).to(value.dtype)


def criss_cross_attention_reference(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """Dense reference of `ccnet.ops.criss_cross_attention` (``(B, C, H, W)`` tensors)."""
    return _dense_masked_attention(query, key, value)


def criss_cross_attention_3d_reference(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """Dense reference of `ccnet.ops.criss_cross_attention_3d` (``(B, C, T, H, W)`` tensors)."""
    return _dense_masked_attention(query, key, value)


def non_local_attention(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """Dense embedded-Gaussian (non-local) attention over all positions, same shapes as the
    criss-cross operators: the baseline criss-cross attention is compared against."""
    batch, channels = value.shape[:2]
    q = query.reshape(batch, query.shape[1], -1)
    k = key.reshape(batch, key.shape[1], -1)
    v = value.reshape(batch, channels, -1)
    attention = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # (B, N, N)
    return (v @ attention.transpose(1, 2)).reshape(value.shape)
