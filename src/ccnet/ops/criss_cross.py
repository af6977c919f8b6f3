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

Three implementations of one algorithm, each in its own module, chosen here and only here
(``backend``):

* ``"function"``: the memory-lean autograd function of `ccnet.ops.criss_cross_function`
  (channels-last GEMMs on strided line views, saves only the inputs and a per-position
  log-sum-exp); channels-last inputs are its fast path, NCHW inputs are transposed in and out.
* ``"composite"``: `ccnet.ops.composite`, differentiable PyTorch ops only: what tracers and
  exporters see, and what double backward differentiates.
* ``"triton"``: the fused Triton kernels of `ccnet.ops.criss_cross_triton` (CUDA; CPU
  tensors only through Triton's interpreter, ``TRITON_INTERPRET=1``). Opt-in until
  ``make gpu-check`` has measured it faster on a GPU.
* ``"auto"`` (default): the environment variable ``CCNET_CCA_BACKEND`` when set, else
  ``"function"``.

``backend`` picks the eager implementation: under tracers and exporters (``torch.compile``,
``torch.export``, ONNX, TorchScript tracing) every backend runs the composite, the only one they
can read.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from ccnet.ops.composite import criss_cross_composite, criss_cross_softmax, memory_format_of
from ccnet.ops.criss_cross_function import CrissCrossFunction, criss_cross_forward
from ccnet.ops.criss_cross_triton import criss_cross_triton

BACKENDS = ("auto", "composite", "function", "triton")
BACKEND_VARIABLE = "CCNET_CCA_BACKEND"


def check_backend(backend: str) -> str:
    """``backend`` if it names an implementation, else a one-line ValueError."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown criss-cross attention backend {backend!r}; choose from {', '.join(BACKENDS)}")
    return backend


def resolve_backend(backend: str = "auto") -> str:
    """The eager implementation ``backend`` stands for: ``"auto"`` is ``$CCNET_CCA_BACKEND`` when
    set (and not ``auto``), else ``"function"``."""
    if check_backend(backend) != "auto":
        return backend
    chosen = os.environ.get(BACKEND_VARIABLE, "").strip() or "auto"
    if chosen not in BACKENDS:
        raise ValueError(f"{BACKEND_VARIABLE}={chosen!r} is not a criss-cross attention backend; "
                         f"choose from {', '.join(BACKENDS)}")
    return "function" if chosen == "auto" else chosen


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


def _is_tracing() -> bool:
    """Under torch.compile, torch.export / ONNX export or TorchScript tracing."""
    return (torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()
            or torch.onnx.is_in_onnx_export())


def _criss_cross(query: Tensor, key: Tensor, value: Tensor, backend: str) -> Tensor:
    """The composite under tracers, else the implementation ``backend`` stands for."""
    if _is_tracing():
        return criss_cross_composite(query, key, value)
    backend = resolve_backend(backend)
    if backend == "composite":
        return criss_cross_composite(query, key, value)
    if backend == "triton":
        return criss_cross_triton(query, key, value)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value)):
        out = CrissCrossFunction.apply(query, key, value)
    else:
        out, _ = criss_cross_forward(query, key, value)  # inference: nothing to save
    return out.contiguous(memory_format=memory_format_of(value))


def _without_autocast(fn, *args: Tensor | str) -> Tensor:
    """``fn(*args)`` with autocast off on the tensors' device: the op chooses its own precisions."""
    device_type = args[0].device.type
    if device_type in ("cpu", "cuda", "xpu", "mps") and torch.is_autocast_enabled(device_type):
        with torch.autocast(device_type=device_type, enabled=False):
            return fn(*args)
    return fn(*args)


def criss_cross_attention(query: Tensor, key: Tensor, value: Tensor, backend: str = "auto") -> Tensor:
    """Aggregate ``value`` over each pixel's criss-cross path (its row and column).

    Args:
        query: ``(B, Cq, H, W)``.
        key: ``(B, Cq, H, W)``.
        value: ``(B, C, H, W)``.
        backend: ``"auto"`` (``$CCNET_CCA_BACKEND``, else ``"function"``), ``"function"``,
            ``"composite"`` or ``"triton"``; see the module docstring.

    Returns:
        ``(B, C, H, W)``: for every pixel, the softmax-weighted sum of the values on its row and
        column (H + W - 1 positions, the pixel itself once), weights from ``query . key``. No
        ``gamma`` and no residual: those belong to `ccnet.nn.CrissCrossAttention`.
        Same dtype as the inputs; channels-last when ``value`` is.
    """
    check_backend(backend)
    _check_inputs(query, key, value, spatial_dims=2)
    return _without_autocast(_criss_cross, query, key, value, backend)


def criss_cross_attention_3d(query: Tensor, key: Tensor, value: Tensor, backend: str = "auto") -> Tensor:
    """Criss-cross attention for video or volumes: ``(B, C, T, H, W)`` tensors.

    Each voxel attends to the voxels on its T-, H- and W-lines, itself counted exactly once
    (T + H + W - 2 positions, one joint softmax). Note that the widely copied pure-PyTorch 3D
    implementation counts the centre twice (once on two of its lines); this one does not.
    ``backend`` as in `criss_cross_attention`.
    """
    check_backend(backend)
    _check_inputs(query, key, value, spatial_dims=3)
    return _without_autocast(_criss_cross, query, key, value, backend)


def criss_cross_attention_weights(query: Tensor, key: Tensor) -> tuple[Tensor, ...]:
    """The attention weights that `criss_cross_attention` (2D) or
    `criss_cross_attention_3d` (3D) give ``query`` and ``key``: one tensor per spatial axis.

    For ``(B, Cq, H, W)`` inputs: ``(column, row)``, ``column[b, i, j, h]`` the weight pixel
    ``(i, j)`` gives ``(h, j)`` and ``row[b, i, j, w]`` the weight it gives ``(i, w)``; for
    ``(B, Cq, T, H, W)``: ``(time, column, row)``, likewise. The position itself is counted once,
    in the last axis (its entry in the other axes is 0), so each position's weights sum to 1.
    Float32 (float64 for float64 inputs); differentiable.

    The same energies and softmax as the op's composite (one code path, so the maps cannot drift
    from what the op computes); for looking at, not for speed: it materialises
    ``B * N * sum(spatial)`` weights.
    """
    if query.dim() not in (4, 5):
        raise ValueError(f"query must be (B, C, H, W) or (B, C, T, H, W), got shape {tuple(query.shape)}")
    _check_inputs(query, key, key, spatial_dims=query.dim() - 2)
    weights = _without_autocast(criss_cross_softmax, query, key)
    return weights.split(list(query.shape[2:]), dim=-1)
