"""The criss-cross attention implementations people use today, re-expressed for comparison.

Each takes ``query, key: (B, Cq, H, W)`` and ``value: (B, C, H, W)`` and returns the
aggregation ``out`` (no ``gamma``, no residual), like `ccnet.ops.criss_cross_attention`.
They follow the published algorithms step by step, copies and all, because those steps are what
costs time and memory; they are not used by the library itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def official_criss_cross(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """The official CCNet pure-PyTorch algorithm (``cc_attention``, the ``INF`` variant).

    Per-column and per-row batches made with permute + ``.contiguous()`` copies, ``bmm``
    energies, a dense ``(B*W, H, H)`` matrix with -inf on the diagonal added to the column
    energies, concatenation, one softmax, split, two ``bmm`` aggregations, permute back.
    """
    batch, _, height, width = query.shape
    q_cols = query.permute(0, 3, 1, 2).contiguous().view(batch * width, -1, height).permute(0, 2, 1)
    q_rows = query.permute(0, 2, 1, 3).contiguous().view(batch * height, -1, width).permute(0, 2, 1)
    k_cols = key.permute(0, 3, 1, 2).contiguous().view(batch * width, -1, height)
    k_rows = key.permute(0, 2, 1, 3).contiguous().view(batch * height, -1, width)
    v_cols = value.permute(0, 3, 1, 2).contiguous().view(batch * width, -1, height)
    v_rows = value.permute(0, 2, 1, 3).contiguous().view(batch * height, -1, width)
    inf_diagonal = -torch.diag(torch.tensor(float("inf"), device=query.device).repeat(height), 0)
    inf_diagonal = inf_diagonal.unsqueeze(0).repeat(batch * width, 1, 1)
    energy_cols = (torch.bmm(q_cols, k_cols) + inf_diagonal).view(batch, width, height, height).permute(0, 2, 1, 3)
    energy_rows = torch.bmm(q_rows, k_rows).view(batch, height, width, width)
    attention = F.softmax(torch.cat([energy_cols, energy_rows], 3), dim=3)
    att_cols = attention[:, :, :, :height].permute(0, 2, 1, 3).contiguous().view(batch * width, height, height)
    att_rows = attention[:, :, :, height:].contiguous().view(batch * height, width, width)
    out_cols = torch.bmm(v_cols, att_cols.permute(0, 2, 1)).view(batch, width, -1, height).permute(0, 2, 3, 1)
    out_rows = torch.bmm(v_rows, att_rows.permute(0, 2, 1)).view(batch, height, -1, width).permute(0, 2, 1, 3)
    return out_cols + out_rows


def mmcv_criss_cross(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """mmcv's pure-PyTorch ``CrissCrossAttention`` (what mmsegmentation's CCHead runs).

    ``einsum`` column energies plus a -inf diagonal, ``einsum`` row energies, concatenation, one
    softmax, two ``einsum`` aggregations.
    """
    height = query.shape[2]
    inf_diagonal = torch.diag(torch.tensor(float("-inf"), device=query.device).repeat(height), 0)
    energy_cols = torch.einsum("bchw,bciw->bwhi", query, key) + inf_diagonal
    energy_cols = energy_cols.transpose(1, 2)
    energy_rows = torch.einsum("bchw,bchj->bhwj", query, key)
    attention = F.softmax(torch.cat([energy_cols, energy_rows], dim=-1), dim=-1)  # (B, H, W, H + W)
    out = torch.einsum("bciw,bhwi->bchw", value, attention[..., :height])
    out += torch.einsum("bchj,bhwj->bchw", value, attention[..., height:])
    return out
