"""Criss-cross attention, 2D and 3D, as functional operators.

Every position attends to all positions that differ from it in at most one spatial coordinate:
its row and its column in 2D (H + W - 1 positions), its T-, H- and W-lines in 3D
(T + H + W - 2 positions). The position itself is counted exactly once, and one joint softmax
runs over the whole criss-cross path. Energies are plain dot products (no 1/sqrt(d) scaling),
as in the paper.

Numerics: energies are computed and normalised in float32 (float64 stays float64), so
float16/bfloat16 inputs never overflow in the softmax; the attention is cast back to the value
dtype for the aggregation, a convex combination that cannot leave the value's range. Autocast
is disabled inside: the op chooses its own precisions.

Two implementations, one algorithm: in eager mode the memory-lean autograd function of
:mod:`ccnet.ops.criss_cross_function` (channels-last GEMMs on strided line views, saves only the
inputs and a per-position log-sum-exp); under tracers and exporters, and for double backward,
the composite below, written with differentiable ops only. Channels-last inputs are the fast
path; NCHW inputs are transposed in and out.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ccnet.ops.criss_cross_function import CrissCrossFunction, criss_cross_forward


def _check_inputs(query: Tensor, key: Tensor, value: Tensor, spatial_dims: int) -> None:
    ndim = spatial_dims + 2
    layout = "(B, C, H, W)" if spatial_dims == 2 else "(B, C, T, H, W)"
    for name, tensor in (("query", query), ("key", key), ("value", value)):
        if tensor.dim() != ndim:
            raise ValueError(f"{name} must be {layout}, got shape {tuple(tensor.shape)}")
        if not tensor.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {tensor.dtype}")
    if query.shape != key.shape:
        raise ValueError(f"query and key shapes differ: {tuple(query.shape)} vs {tuple(key.shape)}")
    if value.shape[0] != query.shape[0] or value.shape[2:] != query.shape[2:]:
        raise ValueError(
            f"value {tuple(value.shape)} must match query {tuple(query.shape)} in batch and spatial size"
        )
    if not (query.dtype == key.dtype == value.dtype):
        raise TypeError(f"query, key and value dtypes differ: {query.dtype}, {key.dtype}, {value.dtype}")
    if not (query.device == key.device == value.device):
        raise ValueError(f"query, key and value devices differ: {query.device}, {key.device}, {value.device}")


def _energy_dtype(dtype: torch.dtype) -> torch.dtype:
    """Precision of energies and softmax: at least float32."""
    return torch.promote_types(dtype, torch.float32)


def _criss_cross_composite(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
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
    last = len(spatial)
    attention = _criss_cross_softmax(query, key).to(value.dtype)
    v = value.movedim(1, -1)
    weights = attention.split(list(spatial), dim=-1)
    # The last axis needs no copies: its lines are rows of the channels-last layout.
    out = weights[-1] @ v.contiguous()
    for axis in range(1, last):
        part = _lines(weights[axis - 1], axis) @ _lines(v, axis)  # (..., L_axis, C)
        out = out + part.movedim(-2, axis)
    return out.movedim(-1, 1).contiguous(memory_format=_memory_format_of(value))


def _lines(x: Tensor, axis: int) -> Tensor:
    """``(..., L_axis, C)``: the lines of a channels-last ``(B, *spatial, C)`` tensor along spatial
    ``axis`` (1-based) as contiguous matrices."""
    return x.movedim(axis, -2).contiguous()


def _criss_cross_softmax(query: Tensor, key: Tensor) -> Tensor:
    """The attention weights of the composite: ``(B, *spatial, sum(spatial))`` in the energy dtype,
    for each position the softmax over the positions of its line along each axis, axes
    concatenated in order; the centre is masked out of every axis but the last."""
    spatial = query.shape[2:]
    last = len(spatial)
    energy_dtype = _energy_dtype(query.dtype)
    q = query.movedim(1, -1).to(energy_dtype)
    k = key.movedim(1, -1).to(energy_dtype)
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


def _memory_format_of(tensor: Tensor) -> torch.memory_format:
    """The layout to give the output: channels-last when the input is (and not also contiguous)."""
    if tensor.is_contiguous():
        return torch.contiguous_format
    if tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    if tensor.dim() == 5 and tensor.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.channels_last_3d
    return torch.contiguous_format


def _is_tracing() -> bool:
    """Under torch.compile, torch.export / ONNX export or TorchScript tracing."""
    return (torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()
            or torch.onnx.is_in_onnx_export())


def _criss_cross(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """The memory-lean autograd function in eager mode, the composite under tracers."""
    if _is_tracing():
        return _criss_cross_composite(query, key, value)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value)):
        out = CrissCrossFunction.apply(query, key, value)
    else:
        out, _ = criss_cross_forward(query, key, value)  # inference: nothing to save
    return out.contiguous(memory_format=_memory_format_of(value))


def _without_autocast(fn, *tensors: Tensor) -> Tensor:
    device_type = tensors[0].device.type
    if device_type in ("cpu", "cuda", "xpu", "mps") and torch.is_autocast_enabled(device_type):
        with torch.autocast(device_type=device_type, enabled=False):
            return fn(*tensors)
    return fn(*tensors)


def criss_cross_attention(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """Aggregate ``value`` over each pixel's criss-cross path (its row and column).

    Args:
        query: ``(B, Cq, H, W)``.
        key: ``(B, Cq, H, W)``.
        value: ``(B, C, H, W)``.

    Returns:
        ``(B, C, H, W)``: for every pixel, the softmax-weighted sum of the values on its row and
        column (H + W - 1 positions, the pixel itself once), weights from ``query . key``. No
        ``gamma`` and no residual: those belong to :class:`ccnet.nn.CrissCrossAttention`.
        Same dtype as the inputs; channels-last when ``value`` is.
    """
    _check_inputs(query, key, value, spatial_dims=2)
    return _without_autocast(_criss_cross, query, key, value)


def criss_cross_attention_3d(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """Criss-cross attention for video or volumes: ``(B, C, T, H, W)`` tensors.

    Each voxel attends to the voxels on its T-, H- and W-lines, itself counted exactly once
    (T + H + W - 2 positions, one joint softmax). Note that the widely copied pure-PyTorch 3D
    implementation counts the centre twice (once on two of its lines); this one does not.
    """
    _check_inputs(query, key, value, spatial_dims=3)
    return _without_autocast(_criss_cross, query, key, value)


def criss_cross_attention_weights(query: Tensor, key: Tensor) -> tuple[Tensor, ...]:
    """The attention weights that :func:`criss_cross_attention` (2D) or
    :func:`criss_cross_attention_3d` (3D) give ``query`` and ``key``: one tensor per spatial axis.

    For ``(B, Cq, H, W)`` inputs: ``(column, row)``, ``column[b, i, j, h]`` the weight pixel
    ``(i, j)`` gives ``(h, j)`` and ``row[b, i, j, w]`` the weight it gives ``(i, w)``; for
    ``(B, Cq, T, H, W)``: ``(time, column, row)``, likewise. The position itself is counted once,
    in the last axis (its entry in the other axes is 0), so each position's weights sum to 1.
    Float32 (float64 for float64 inputs); differentiable.

    The same energies and softmax as the op's composite path (one code path, so the maps cannot
    drift from what the op computes); for visualisation, not for speed: it materialises
    ``B * N * sum(spatial)`` weights.
    """
    if query.dim() not in (4, 5):
        raise ValueError(f"query must be (B, C, H, W) or (B, C, T, H, W), got shape {tuple(query.shape)}")
    _check_inputs(query, key, key, spatial_dims=query.dim() - 2)
    weights = _without_autocast(_criss_cross_softmax, query, key)
    return weights.split(list(query.shape[2:]), dim=-1)
