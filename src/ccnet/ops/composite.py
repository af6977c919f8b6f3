"""Criss-cross attention written with differentiable PyTorch ops only.

This is what tracers and exporters (ONNX, ``torch.compile``, ``torch.export``) see, and what
double backward differentiates; the eager fast path is `ccnet.ops.criss_cross_function`.
Both are checked against the dense reference in `ccnet.ops.reference`.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["composite_grads", "criss_cross_composite", "criss_cross_softmax", "energy_dtype", "memory_format_of"]


def energy_dtype(dtype: torch.dtype) -> torch.dtype:
    """Precision of energies and softmax: at least float32."""
    return torch.promote_types(dtype, torch.float32)


def criss_cross_composite(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """Criss-cross attention over every spatial axis of ``(B, C, *spatial)`` tensors, written
    with differentiable PyTorch ops only: what tracers and exporters (ONNX, ``torch.compile``)
    see, and what double backward differentiates.

    Works in the channels-last view ``(B, *spatial, C)``. For spatial axis ``a`` every line along
    ``a`` is one batched ``(L_a, L_a)`` energy matrix; the centre is masked out of every axis but
    the last so that it is counted once. The energies of all axes are concatenated for one joint
    softmax. Each batched matmul gets line-major contiguous operands: strided ones make CPU
    ``bmm`` (and its backward) fall back to copying matrix by matrix.
    """
    spatial = query.shape[2:]
    attention = criss_cross_softmax(query, key).to(value.dtype)
    v = value.movedim(1, -1)
    weights = attention.split(list(spatial), dim=-1)
    # The last axis needs no copies: its lines are rows of the channels-last layout.
    out = weights[-1] @ v.contiguous()
    for axis in range(1, len(spatial)):
        part = _lines(weights[axis - 1], axis) @ _lines(v, axis)  # (..., L_axis, C)
        out = out + part.movedim(-2, axis)
    return out.movedim(-1, 1).contiguous(memory_format=memory_format_of(value))


def criss_cross_softmax(query: Tensor, key: Tensor) -> Tensor:
    """The attention weights of the composite: ``(B, *spatial, sum(spatial))`` in the energy
    precision, for each position the joint softmax over the positions of its line along each
    axis, axes concatenated in order; the centre is masked out of every axis but the last."""
    spatial = query.shape[2:]
    last = len(spatial)
    precision = energy_dtype(query.dtype)
    q = query.movedim(1, -1).to(precision)
    k = key.movedim(1, -1).to(precision)
    energies = []
    for axis in range(1, last + 1):
        # energy[..., i, j] = <q at i, k at j> on each line along this axis.
        energy = _lines(q, axis) @ _lines(k, axis).transpose(-1, -2)
        if axis != last:
            # The product's own output, not needed by its backward: safe to edit in place. A mask on
            # the whole matrix, not fill_ on a diagonal view: torch.export (ONNX) rejects view writes.
            energy.masked_fill_(torch.eye(energy.shape[-1], dtype=torch.bool, device=energy.device), float("-inf"))
        energies.append(energy.movedim(-2, axis))  # (B, *spatial, L_axis)
    return torch.softmax(torch.cat(energies, dim=-1), dim=-1)


def _lines(x: Tensor, axis: int) -> Tensor:
    """``(..., L_axis, C)``: the lines of a channels-last ``(B, *spatial, C)`` tensor along spatial
    ``axis`` (1-based) as contiguous matrices."""
    return x.movedim(axis, -2).contiguous()


def memory_format_of(tensor: Tensor) -> torch.memory_format:
    """The layout to give the output: channels-last when the input is (and not also contiguous)."""
    if tensor.is_contiguous():
        return torch.contiguous_format
    if tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    if tensor.dim() == 5 and tensor.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.channels_last_3d
    return torch.contiguous_format


def composite_grads(needs: tuple[bool, ...], grad_out: Tensor, query: Tensor, key: Tensor,
                    value: Tensor) -> tuple[Tensor | None, ...]:
    """Gradients of the composite with ``create_graph=True`` (None where ``needs`` is False): how
    the custom autograd functions run a backward that is itself differentiable."""
    inputs = [t for t, needed in zip((query, key, value), needs, strict=True) if needed]
    grads = iter(torch.autograd.grad(criss_cross_composite(query, key, value), inputs, grad_out, create_graph=True))
    return tuple(next(grads) if needed else None for needed in needs)
