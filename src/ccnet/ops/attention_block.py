"""The whole criss-cross attention block as one op: ``gamma * CCA(q(x), k(x), v(x)) + x``.

Why an op of its own: the attention runs on channels-last matrices, while models train in NCHW.
Composed from ``Conv2d`` and :func:`ccnet.ops.criss_cross_attention`, an NCHW block pays layout
transposes of q, k, v into the op and of the output out of it, again in backward, plus the CPU
convolutions' own reorders. Here the layouts meet inside GEMMs instead:

* q, k and v come from one GEMM per sample, ``x_b^T @ [Wq; Wk; Wv]^T``: an NCHW sample is a
  ``(C, S)`` matrix (``S`` positions), its transpose a valid BLAS operand, and the product is
  ``(S, Cq + Cq + C)``, channels-last, with no copy. The attention reads q, k and v as channel
  slices of that buffer.
* The residual ``x + gamma * out`` with ``out`` channels-last and ``x`` NCHW is one blocked 2D
  transpose per sample (PyTorch's fastest copy) and one fused multiply-add.
* Backward: ``grad_x = grad_y + (gamma W)^T @ grad_qkv^T`` is a GEMM writing NCHW directly; the
  weight gradient ``grad_qkv^T @ x_b^T`` reads x in place. Only the incoming gradient is
  transposed once, for the column lines.

Memory: forward keeps x (the caller's), the q/k/v buffer and one float32 log-sum-exp per position;
attention weights are recomputed in backward. Samples are processed in small groups (one at a
time for large maps), so energies, the channels-last output and every gradient temporary exist
for a group at a time. ``gamma``
never multiplies a map-sized tensor in backward: the attention gradients are taken for the
unscaled output and ``gamma`` is folded into the small weight matrices, and ``dL/dgamma`` is
the sum of the per-position ``<grad, out>`` that backward computes anyway.

Clips stored frame by frame (``frames=T``: ``(clips * T, C, H, W)``, a video model's layout) run
the same way: the projections are per frame, and their channels-last ``(clips * T, H, W, C')``
buffer *is* the channels-last ``(clips, T, H, W, C')`` clip tensor the 3D attention reads, so the
3D block costs the 2D block's layout work and memory (whole clips per group).

Eager only, and the ``"function"`` backend's (the default): with another backend, under tracers
and exporters, under autocast, for double backward and for inputs the fused path does not cover
(mixed dtypes, missing biases, other layouts), the block is the plain composition of
convolutions and :func:`ccnet.ops.criss_cross_attention`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import FunctionCtx

from ccnet.ops.clips import check_frames, clip_criss_cross_attention
from ccnet.ops.composite import criss_cross_composite, energy_dtype
from ccnet.ops.criss_cross import _is_tracing, criss_cross_attention, criss_cross_attention_3d, resolve_backend
from ccnet.ops.criss_cross_function import backward_channels_last, forward_channels_last

_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


def criss_cross_block(x: Tensor, query_weight: Tensor, query_bias: Tensor | None, key_weight: Tensor,
                      key_bias: Tensor | None, value_weight: Tensor, value_bias: Tensor | None,
                      gamma: Tensor, backend: str = "auto", frames: int | None = None) -> Tensor:
    """``gamma * criss_cross_attention(q, k, v) + x`` with 1x1 (1x1x1) projections ``q = conv(x, Wq, bq)`` etc.

    Args:
        x: ``(B, C, H, W)`` or ``(B, C, T, H, W)``, NCHW or channels-last.
        query_weight, key_weight: ``(Cq, C, 1, 1[, 1])``; value_weight: ``(C, C, 1, 1[, 1])``; biases
            of matching length (or None).
        gamma: the residual weight, shape ``(1,)``.
        backend: the attention's implementation, as in :func:`criss_cross_attention`; the block runs as
            one op when it resolves to ``"function"`` (the default), as the composition otherwise.
        frames: ``T`` for clips stored frame by frame: ``x`` is ``(clips * T, C, H, W)``, consecutive
            ``T`` entries one clip, and the attention is 3D within each clip
            (:func:`ccnet.ops.clips.clip_criss_cross_attention`); None (the default) for 2D or 3D
            attention on ``x`` as it is.

    Returns:
        Same shape, dtype and layout as ``x``. Same values and gradients as the composition of
        convolutions and :func:`criss_cross_attention` (the fused path is used in eager mode; see
        the module docstring).
    """
    params = (query_weight, query_bias, key_weight, key_bias, value_weight, value_bias, gamma)
    _check_shapes(x, params, frames)
    if _fused_path_applies(x, params, backend):
        if torch.is_grad_enabled() and any(t.requires_grad for t in (x, *params)):
            return CrissCrossBlockFunction.apply(x, *params, frames)
        return _fused_forward(x, params, for_backward=False, frames=frames)[0]  # inference: nothing to keep
    return _composed_block(x, *params, attend=_attention_of(x, frames, backend))


def _attention_of(x: Tensor, frames: int | None, backend: str) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """The composition's attention: 2D or 3D on ``x`` as it is, or 3D on its clips (``frames``)."""
    if frames is not None:
        return functools.partial(clip_criss_cross_attention, frames=frames, backend=backend)
    return functools.partial(criss_cross_attention if x.dim() == 4 else criss_cross_attention_3d, backend=backend)


def _check_shapes(x: Tensor, params: tuple[Tensor | None, ...], frames: int | None) -> None:
    query_weight, query_bias, key_weight, key_bias, value_weight, value_bias, gamma = params
    if x.dim() not in _CHANNELS_LAST:
        raise ValueError(f"x must be (B, C, H, W) or (B, C, T, H, W), got shape {tuple(x.shape)}")
    if frames is not None:
        if x.dim() != 4:
            raise ValueError(f"with frames=T, x must be clips stored frame by frame, (clips * T, C, H, W), "
                             f"got shape {tuple(x.shape)}")
        check_frames(x.shape[0], frames)
    channels, kernel = x.shape[1], (1,) * (x.dim() - 2)
    expected = {"query_weight": (query_weight.shape[0], channels, *kernel),
                "key_weight": (query_weight.shape[0], channels, *kernel),
                "value_weight": (channels, channels, *kernel)}
    for (name, shape), weight, bias in zip(expected.items(), (query_weight, key_weight, value_weight),
                                           (query_bias, key_bias, value_bias), strict=True):
        if tuple(weight.shape) != shape or (bias is not None and tuple(bias.shape) != shape[:1]):
            raise ValueError(f"{name} must be {shape} with a bias of ({shape[0]},) for x of shape {tuple(x.shape)}, "
                             f"got {tuple(weight.shape)}" + (f" and {tuple(bias.shape)}" if bias is not None else ""))
    if gamma.numel() != 1:
        raise ValueError(f"gamma must hold one value, got shape {tuple(gamma.shape)}")


def inference_in_place(out: Tensor, x: Tensor, gamma: Tensor) -> bool:
    """Whether ``gamma * out + x`` may overwrite ``out``: eager inference with matching dtypes.
    Under tracers the out-of-place form is kept (the dtype test would break the graph)."""
    return (not torch.is_grad_enabled() and not _is_tracing()
            and out.dtype == x.dtype == torch.result_type(out, gamma))


def _composed_block(x: Tensor, query_weight: Tensor, query_bias: Tensor | None, key_weight: Tensor,
                    key_bias: Tensor | None, value_weight: Tensor, value_bias: Tensor | None, gamma: Tensor,
                    attend: Callable[[Tensor, Tensor, Tensor], Tensor]) -> Tensor:
    """The plain composition: convolutions, the attention ``attend``, ``gamma * out + x``."""
    conv = F.conv2d if x.dim() == 4 else F.conv3d
    out = attend(conv(x, query_weight, query_bias), conv(x, key_weight, key_bias), conv(x, value_weight, value_bias))
    if inference_in_place(out, x, gamma):
        return out.mul_(gamma).add_(x)  # inference: in place, no map-sized temporaries
    return torch.addcmul(x, gamma, out)  # gamma * out + x in one op


def _layout(x: Tensor) -> str | None:
    """``"nchw"`` or ``"channels_last"`` for the dense layouts the fused path reads, else None."""
    if x.is_contiguous():
        return "nchw"
    if x.dim() in _CHANNELS_LAST and x.is_contiguous(memory_format=_CHANNELS_LAST[x.dim()]):
        return "channels_last"
    return None


def _fused_path_applies(x: Tensor, params: tuple[Tensor | None, ...], backend: str) -> bool:
    if _is_tracing() or resolve_backend(backend) != "function" or _layout(x) is None or not x.is_floating_point():
        return False
    if any(p is None or p.dtype != x.dtype or p.device != x.device for p in params):
        return False
    device_type = x.device.type
    return not (device_type in ("cpu", "cuda", "xpu", "mps") and torch.is_autocast_enabled(device_type))


# Samples are processed in groups whose channels-last value-sized temporaries (the output, the
# incoming gradient, the value gradient) stay under this many bytes each: one sample at a time for
# large maps, several at once for small ones (fewer, larger kernels: on a GPU, fewer launches).
_GROUP_BYTES = 64 * 2**20


def _groups(x: Tensor, frames: int | None = None) -> list[slice]:
    """Consecutive batch slices of about equal size, each within :data:`_GROUP_BYTES` per temporary;
    with ``frames``, slices of whole clips (the attention's samples)."""
    unit = frames or 1
    batch = x.shape[0] // unit
    per_sample = max(1, unit * x[0].numel() * x.element_size())
    count = min(batch, -(-batch * per_sample // _GROUP_BYTES))
    size = -(-batch // max(count, 1))
    return [slice(start * unit, min(start + size, batch) * unit) for start in range(0, batch, size)]


def _clips(t: Tensor, frames: int | None) -> Tensor:
    """A per-frame ``(G * T, ...)`` tensor as the attention's ``(G, T, ...)`` samples (a view); as it is
    without ``frames``. Channels-last ``(G * T, H, W, C)`` becomes channels-last ``(G, T, H, W, C)``."""
    return t if frames is None else t.unflatten(0, (t.shape[0] // frames, frames))


def _rows(x: Tensor) -> Tensor:
    """``(B, C, *spatial)`` as ``(B, S, C)`` views (S positions): per sample the transpose of a
    ``(C, S)`` matrix for NCHW, a contiguous matrix for channels-last; valid BLAS operands both."""
    batch, channels = x.shape[:2]
    if _layout(x) == "nchw":
        return x.view(batch, channels, -1).transpose(1, 2)
    return x.movedim(1, -1).reshape(batch, -1, channels)


def _fused_weights(query_weight: Tensor, key_weight: Tensor, value_weight: Tensor) -> Tensor:
    """``[Wq; Wk; Wv]`` as one ``(Cq + Cq + C, C)`` matrix."""
    return torch.cat([w.reshape(w.shape[0], -1) for w in (query_weight, key_weight, value_weight)])


def _project(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``(B, *spatial, Cq + Cq + C)``: q, k and v channels-last, one GEMM per sample."""
    batch, _, *spatial = x.shape
    qkv = x.new_empty((batch, *spatial, weight.shape[0]))
    for rows, out in zip(_rows(x), qkv.view(batch, -1, weight.shape[0]), strict=True):
        torch.addmm(bias, rows, weight.t(), out=out)
    return qkv


def _split(qkv: Tensor, qk_channels: int) -> tuple[Tensor, Tensor, Tensor]:
    """Channel slices q, k (in the energy dtype; a copy only if that differs) and v."""
    precision = energy_dtype(qkv.dtype)
    q, k, v = qkv.split([qk_channels, qk_channels, qkv.shape[-1] - 2 * qk_channels], dim=-1)
    return q.to(precision), k.to(precision), v


def _to_channels_last(x: Tensor) -> Tensor:
    """``(G, C, *spatial)`` as a contiguous ``(G, *spatial, C)`` tensor: one blocked 2D transpose per
    sample for NCHW (PyTorch's fast path for transposing copies), a view for channels-last."""
    if _layout(x) == "channels_last":
        return x.movedim(1, -1)
    out = x.new_empty((x.shape[0], *x.shape[2:], x.shape[1]))
    for dst, src in zip(out.view(x.shape[0], -1, x.shape[1]), _rows(x), strict=True):
        dst.copy_(src)
    return out


def _store(rows: Tensor, out: Tensor) -> None:
    """Channels-last ``(G, *spatial, C)`` ``rows`` into ``out`` ``(G, C, *spatial)`` of either layout
    (for NCHW, one blocked 2D transpose per sample)."""
    if _layout(out) == "channels_last":
        out.movedim(1, -1).copy_(rows)
        return
    channels = out.shape[1]
    for dst, src in zip(out.view(out.shape[0], channels, -1), rows.view(rows.shape[0], -1, channels), strict=True):
        dst.copy_(src.t())


def _fused_forward(x: Tensor, params: tuple[Tensor, ...], for_backward: bool,
                   frames: int | None = None) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """The block's output and, ``for_backward``, the q/k/v buffer and the log-sum-exp to save (both
    per frame with ``frames``: ``(B, H, W, C')`` and ``(B, H, W)``).

    Group by group (:func:`_groups`), so the energies and the channels-last output exist for a few
    samples (clips) at a time; without backward the projections too, freed before the output is
    allocated."""
    query_weight, query_bias, key_weight, key_bias, value_weight, value_bias, gamma = params
    weight = _fused_weights(query_weight, key_weight, value_weight)
    bias = torch.cat([query_bias, key_bias, value_bias])
    qkv = _project(x, weight, bias) if for_backward else None
    lse = x.new_empty((x.shape[0], *x.shape[2:]), dtype=energy_dtype(x.dtype)) if for_backward else None
    y = None
    for group in _groups(x, frames):
        q, k, v = _split(qkv[group] if for_backward else _project(x[group], weight, bias), query_weight.shape[0])
        out, group_lse = forward_channels_last(*(_clips(t, frames) for t in (q, k, v)))
        out = out.view(v.shape)  # per frame again (a view: out is contiguous)
        del q, k, v  # without backward, this group's projections go before y arrives
        if for_backward:
            lse[group] = group_lse.view(lse[group].shape)
        y = torch.empty_like(x) if y is None else y
        _store(out, y[group])  # y = x + gamma * out, in y's layout
        torch.addcmul(x[group], gamma, y[group], out=y[group])
    return y, qkv, lse


class CrissCrossBlockFunction(torch.autograd.Function):
    """The fused block (see the module docstring). Saves x, the fused weight, ``gamma``, the q/k/v
    buffer and the log-sum-exp; double backward differentiates the composition instead. ``frames``
    (not a tensor; None for the 2D or plain 3D block) as in :func:`criss_cross_block`."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, query_weight: Tensor, query_bias: Tensor, key_weight: Tensor,
                key_bias: Tensor, value_weight: Tensor, value_bias: Tensor, gamma: Tensor,
                frames: int | None = None) -> Tensor:
        y, qkv, lse = _fused_forward(x, (query_weight, query_bias, key_weight, key_bias, value_weight, value_bias,
                                         gamma), for_backward=True, frames=frames)
        ctx.qk_channels = query_weight.shape[0]
        ctx.frames = frames
        ctx.save_for_backward(x, query_weight, query_bias, key_weight, key_bias, value_weight, value_bias, gamma,
                              qkv, lse)
        return y

    @staticmethod
    def backward(ctx: FunctionCtx, grad_y: Tensor) -> tuple[Tensor | None, ...]:
        x, *params, qkv, lse = ctx.saved_tensors
        frames = ctx.frames
        if torch.is_grad_enabled():  # create_graph=True: differentiate the composition instead
            return _composition_grads(ctx, grad_y, x, params)
        gamma = params[-1]
        weight = _fused_weights(params[0], params[2], params[4])
        scaled_weight = weight * gamma  # gamma folded into the small matrix, not into map-sized tensors
        grad_y = grad_y.contiguous(memory_format=torch.contiguous_format if _layout(x) == "nchw"
                                   else _CHANNELS_LAST[x.dim()])
        q, k, v = _split(qkv, ctx.qk_channels)
        splits = [ctx.qk_channels, ctx.qk_channels, v.shape[-1]]
        need_x, need_params = ctx.needs_input_grad[0], any(ctx.needs_input_grad[1:])
        grad_x = None  # allocated once the first group's temporaries are freed
        grad_weight = weight.new_zeros(weight.shape)
        grad_bias = weight.new_zeros(weight.shape[0])
        grad_gamma = gamma.new_zeros(gamma.shape, dtype=lse.dtype)
        x_rows = _rows(x)
        for group in _groups(x, frames):
            grad = _to_channels_last(grad_y[group])
            *grads, delta = backward_channels_last(_clips(grad, frames),
                                                   *(_clips(t[group], frames) for t in (q, k, v, lse)))
            grad_gamma += delta.sum()
            grads = [g.to(weight.dtype).view(grad.shape[0], -1, g.shape[-1]) for g in grads]  # (G, S, C_i) per frame
            if need_params:
                for g, gw, gb in zip(grads, grad_weight.split(splits), grad_bias.split(splits), strict=True):
                    gw.add_(torch.bmm(g.transpose(1, 2), x_rows[group]).sum(0))
                    gb.add_(g.sum((0, 1)))
            if not need_x:
                continue
            # grad_x = grad_y + sum over q, k, v of grad @ (gamma W), accumulated channels-last: MKL
            # runs (S, C) outputs faster than (C, S) ones (`ccnet bench block` times both layouts).
            if _layout(x) == "nchw":
                rows = grad.view(-1, grad.shape[-1])  # our own transposed copy of grad_y: accumulate into it
            else:
                grad_x = torch.empty_like(x) if grad_x is None else grad_x
                rows = grad_x[group].movedim(1, -1).view(-1, grad.shape[-1])
                rows.copy_(grad.reshape(rows.shape))
            for g, w in zip(grads, scaled_weight.split(splits), strict=True):
                rows.addmm_(g.flatten(0, 1), w)
            grads.clear()  # the value gradient goes before grad_x arrives
            if _layout(x) == "nchw":
                grad_x = torch.empty_like(x) if grad_x is None else grad_x
                _store(grad, grad_x[group])
        grad_weight.mul_(gamma)
        grad_bias.mul_(gamma)
        weights = [g.view_as(w) for g, w in zip(grad_weight.split(splits), params[0:6:2], strict=True)]
        biases = grad_bias.split(splits)
        grads = (grad_x, weights[0], biases[0], weights[1], biases[1], weights[2], biases[2],
                 grad_gamma.to(gamma.dtype), None)[:len(ctx.needs_input_grad)]  # frames may be left out
        return tuple(g if needed else None for g, needed in zip(grads, ctx.needs_input_grad, strict=True))


def _composition_grads(ctx: FunctionCtx, grad_y: Tensor, x: Tensor, params: list[Tensor]) -> tuple[Tensor | None, ...]:
    """Gradients with a graph (double backward), through the differentiable composition."""
    needs = ctx.needs_input_grad[:8]  # x and the parameters; frames (if passed) is not a tensor
    inputs = [t for t, needed in zip((x, *params), needs, strict=True) if needed]
    attend = (criss_cross_composite if ctx.frames is None
              else functools.partial(clip_criss_cross_attention, frames=ctx.frames, backend="composite"))
    out = _composed_block(x, *params, attend=attend)
    grads = iter(torch.autograd.grad(out, inputs, grad_y, create_graph=True))
    return (*(next(grads) if needed else None for needed in needs), *[None] * (len(ctx.needs_input_grad) - 8))
