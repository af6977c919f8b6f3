"""Criss-cross attention as fused Triton kernels (CUDA; on CPU tensors through Triton's
interpreter, ``TRITON_INTERPRET=1`` set before triton is imported, for tests). Opt-in:
``backend="triton"``. ``triton`` is imported on first use, so the package imports without it.

Algorithm (2D and 3D alike; an axis is a spatial dimension, a line the positions along it):

* Forward, one launch per axis, the last spatial axis (W) last. A program takes ``BLOCK_M``
  positions of one line and ``BLOCK_C`` value channels and runs an online softmax
  (flash-attention style) over the line's keys in blocks of ``BLOCK_N``: energies
  ``q . k`` (``tl.dot``, float32 accumulation), the position itself masked on every axis but the
  last so that it is counted once, and ``P @ V``. The result of each axis is merged with the
  axes before through the log-sum-exp (``lse = logaddexp(lse_prev, lse_axis)``, both partial
  outputs rescaled to it), so after the last axis the output is the joint softmax over the
  whole criss-cross path and ``lse`` its per-position log-sum-exp. No energies are ever
  written to memory: per position only one float32 log-sum-exp (per axis while merging).
* Backward, one ``delta = sum_c dO * O`` launch (flash-attention's ``D``, which equals
  ``sum_j A_ij dA_ij`` over the whole path), then one launch per axis with a program per line:
  the energies are recomputed from q and k and turned into attention with the saved
  log-sum-exp, ``dA = dO V^T`` and ``dV = A^T dO`` in one pass over the value channels,
  ``dE = A (dA - delta)``, ``dK = dE^T Q``, ``dQ = dE K``. Each program owns its line, so every
  gradient is written without atomics (deterministic), and the energies are computed once.
* Memory kept between forward and backward: q, k, v, the output (which the caller holds
  anyway: no extra memory) and the float32 log-sum-exp, the contract of
  `ccnet.ops.criss_cross_function.CrissCrossFunction` plus a reference to the output.
  Temporaries: half-precision inputs accumulate the axes in float32 buffers of the output's and
  gradients' sizes (float32 inputs accumulate in place).

Precision: energies, softmax, log-sum-exp, ``dA``, ``dE`` and every accumulation in float32.
``P`` is rounded to the value dtype for ``P @ V`` and ``A^T dO`` (as the autograd function
does); the energy gradient stays float32 and its products with q and k run in TF32 for
half-precision inputs (a small share of the work; rounding ``dE`` to bfloat16 tripled the error
of ``dq``). float32 inputs follow ``torch.get_float32_matmul_precision()``: "highest" (the
default) multiplies in full float32, otherwise in TF32, as PyTorch's own matmuls do.

Layout and memory traffic: tensors are read in place as ``(B, positions, channels)`` with their
own strides (contiguous NCHW or channels-last; anything else is copied once). Channels-last is
the fast layout: every tile row is one position's contiguous channel vector, so loads are
coalesced for lines of any axis; NCHW tiles are coalesced along the W lines only. Per axis and
line the forward reads q once per value-channel block, k once per query block and channel block,
v once per query block, and writes the output once (after the first axis it also reads the
partial result). With lines of at most ``BLOCK_M = 64`` positions and ``C <= BLOCK_C = 256``
that is every tensor once per axis; longer lines re-read their keys and values from L2 (a line
of 97 positions x 512 bfloat16 channels is 100 KB). A 2D forward therefore moves about twice the
bytes of q, k, v and the output, plus a float32 partial for half-precision inputs. The backward
per axis and line reads q, k, v, the log-sum-exp and delta once and dO once per key block
(``ceil(L / BLOCK_N)`` times, from L2), and writes each gradient once (read-modify-write after
the first axis). The unfused algorithms instead write and read the ``(B, H, W, H + W - 1)``
energies and attention maps several times, plus line-major copies of q, k and v.

Block sizes are chosen from the line length and channel counts (every ``tl.dot`` operand at
least 16 wide, as GPUs require; smaller lines, channels and odd sizes are padded and masked),
not autotuned: they are untested for speed until ``make gpu-check`` measures them.
"""

from __future__ import annotations

import contextlib
import importlib
import math
from types import ModuleType

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from ccnet.ops.composite import composite_grads, memory_format_of

__all__ = ["TritonCrissCrossFunction", "criss_cross_triton", "interpreted", "triton_available"]

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_INSTALL_HINT = "pip install 'ccnet-pytorch[triton]' (Linux)"


def triton_available() -> bool:
    """Whether the ``triton`` package can be imported."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _kernels() -> ModuleType:
    """The kernel module (imported on first use: it imports triton)."""
    return importlib.import_module("ccnet.ops.criss_cross_triton_kernels")


def interpreted() -> bool:
    """Whether the kernels run through Triton's interpreter. Triton fixes the mode of every
    ``@triton.jit`` function, its own library's included, when it is decorated: so
    ``TRITON_INTERPRET=1`` must be set before triton is first imported."""
    import triton.language as tl
    from triton.runtime.jit import JITFunction

    kernels_interpreted = not isinstance(_kernels()._forward_kernel, JITFunction)
    if kernels_interpreted and isinstance(tl.cdiv, JITFunction):  # triton's own library compiled
        raise RuntimeError("TRITON_INTERPRET=1 was set after triton was imported; set it before the first import")
    return kernels_interpreted


def _check_usable(tensor: Tensor) -> bool:
    """Raise a one-line error when the Triton backend cannot run on ``tensor``; return whether
    it runs through the interpreter."""
    try:
        import triton  # noqa: F401
    except ImportError:
        raise ImportError(f"backend='triton' needs the triton package: {_INSTALL_HINT}") from None
    if tensor.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"backend='triton' supports float32, float16 and bfloat16 inputs, got {tensor.dtype}")
    interpret = interpreted()
    if tensor.device.type == "cuda" or (tensor.device.type == "cpu" and interpret):
        return interpret
    raise ValueError(f"backend='triton' runs on CUDA tensors, got {tensor.device.type} tensors (CPU tensors run "
                     "through Triton's interpreter when TRITON_INTERPRET=1 is set before triton is imported: slow, "
                     "for tests)")


def _flat_strides(x: Tensor) -> tuple[int, int, int] | None:
    """``(batch, position, channel)`` strides of a ``(B, C, *spatial)`` tensor whose spatial
    dimensions flatten into one position index, or None (NCHW and channels-last qualify)."""
    spatial, strides = x.shape[2:], x.stride()[2:]
    step = strides[-1]
    expected = step
    for size, stride in zip(reversed(spatial), reversed(strides), strict=True):
        if size != 1 and stride != expected:
            return None
        expected *= size
    return x.stride(0), step, x.stride(1)


def _strided(x: Tensor) -> tuple[Tensor, tuple[int, int, int]]:
    """``x`` (copied to contiguous when its spatial dimensions do not flatten) and its strides."""
    strides = _flat_strides(x)
    if strides is None:
        x = x.contiguous()
        strides = _flat_strides(x)
    return x, strides


def _dot_options(dtype: torch.dtype, interpret: bool, grads: bool = False) -> dict[str, object]:
    """The kernels' matmul settings for inputs of ``dtype``: ``DOT``, the operand dtype of the
    products of inputs (their own, but float32 for bfloat16 under the interpreter, which cannot
    multiply bfloat16), and ``PRECISION`` for float32 operands: full float32 when PyTorch's
    matmul precision is "highest" (its default), else TF32, as PyTorch's own matmuls. With
    ``grads``: ``GRAD_PRECISION`` of the products with the float32 energy gradient ``dE``, TF32
    for half-precision inputs (more digits than they have, and float32's range)."""
    import triton.language as tl

    own = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}[dtype]
    precision = "ieee" if dtype == torch.float32 and torch.get_float32_matmul_precision() == "highest" else "tf32"
    options: dict[str, object] = {"PRECISION": precision,
                                  "DOT": tl.float32 if interpret and dtype == torch.bfloat16 else own}
    if grads:
        options["GRAD_PRECISION"] = precision if dtype == torch.float32 else "tf32"
    return options


def _pow2(n: int, least: int = 16) -> int:
    return max(least, 1 << max(0, n - 1).bit_length())


def _axes(spatial: torch.Size) -> list[int]:
    """Axes to process, the last one last. Other axes of length 1 hold only the position itself,
    which the last axis counts: they contribute nothing and are skipped."""
    last = len(spatial) - 1
    return [axis for axis in range(last) if spatial[axis] > 1] + [last]


def _line(spatial: torch.Size, axis: int) -> tuple[int, int]:
    """Length of the lines along ``axis`` and the flat-position step between their elements."""
    return spatial[axis], math.prod(spatial[axis + 1:])


def _launch_scope(x: Tensor) -> contextlib.AbstractContextManager:
    """Triton launches on the current CUDA device: make it ``x``'s."""
    return torch.cuda.device(x.device) if x.device.type == "cuda" else contextlib.nullcontext()


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _buffer(like: Tensor, dtype: torch.dtype) -> Tensor:
    """An empty tensor of ``like``'s shape and strides."""
    return torch.empty_strided(like.shape, like.stride(), dtype=dtype, device=like.device)


# CUDA's limit on the first grid dimension (every launch is a one-dimensional grid).
MAX_PROGRAMS = 2**31 - 1
# Largest blocks (powers of two, at least 16). Forward: BLOCK_M queries x BLOCK_C value channels
# per program, keys BLOCK_N at a time, query/key channels BLOCK_CQ at a time. Backward: tiles of
# BLOCK_N keys (dV, dK) or BLOCK_M queries (dQ) per program, the other side of the line BLOCK_M or
# BLOCK_N at a time, channels BLOCK_C / BLOCK_CQ at a time, within these and the table below. Tests
# lower them to 16 to run several blocks per line on small inputs.
MAX_BLOCKS = {"m": 64, "n": 32, "c": 256, "cq": 64}
# Per (dtype, precision): the forward's largest BLOCK_M x BLOCK_C and its warps; the backward's
# tile per program ("backward_rows": keys for dV and dK, queries for dQ), the block of the other
# side of the line it loops over ("backward_loop", the depth of its gradient product), the chunk
# of channels of the recomputed energies and dA ("backward_k"), dV's value-channel width
# ("backward_c") and warps. Chosen so that every kernel compiles without register spills and
# within the shared memory of sm_80 and sm_90 (scripts/triton_compile_check.py compiles every
# configuration the model and the benchmarks launch and reports them). "ieee": float32 products in
# full precision (FMA, no tensor cores: every thread holds its rows of both operands over the
# product's depth, so the depths are small).
TILES = {
    "ieee": {"forward_mc": 64 * 64, "forward_warps": 8, "forward_stages": 2, "backward_rows": 32, "backward_loop": 16,
             "backward_k": 16, "backward_c": 32, "backward_warps": 8, "backward_stages": 2},
    "tf32": {"forward_mc": 64 * 128, "forward_warps": 8, "forward_stages": 3, "backward_rows": 32, "backward_loop": 32,
             "backward_k": 32, "backward_c": 32, "backward_warps": 8, "backward_stages": 2},
    "half": {"forward_mc": 64 * 128, "forward_warps": 8, "forward_stages": 3, "backward_rows": 32, "backward_loop": 32,
             "backward_k": 32, "backward_c": 32, "backward_warps": 8, "backward_stages": 2},
}


def _tiles(dtype: torch.dtype) -> dict[str, int]:
    """The row of `TILES` for inputs of ``dtype`` under PyTorch's matmul precision."""
    if dtype != torch.float32:
        return TILES["half"]
    return TILES["ieee" if torch.get_float32_matmul_precision() == "highest" else "tf32"]


def backward_blocks(tiles: dict[str, int], length: int, qk_channels: int, channels: int) -> dict[str, dict[str, int]]:
    """Block sizes of the three backward kernels ("dv", "dk", "dq") for lines of ``length``, from a
    `TILES` row (within `MAX_BLOCKS`)."""
    rows = min(MAX_BLOCKS["m"], tiles["backward_rows"], _pow2(length))
    loop = min(MAX_BLOCKS["n"], tiles["backward_loop"], _pow2(length))
    block_kq = min(MAX_BLOCKS["cq"], tiles["backward_k"], _pow2(qk_channels))
    block_cq = min(MAX_BLOCKS["cq"], _pow2(qk_channels))
    block_kv = min(MAX_BLOCKS["c"], tiles["backward_k"], _pow2(channels))
    block_c = min(MAX_BLOCKS["c"], tiles["backward_c"], _pow2(channels))
    return {"dv": {"BLOCK_M": loop, "BLOCK_N": rows, "BLOCK_C": block_c, "BLOCK_KQ": block_kq},
            "dk": {"BLOCK_M": loop, "BLOCK_N": rows, "BLOCK_CQ": block_cq, "BLOCK_KQ": block_kq, "BLOCK_KV": block_kv},
            "dq": {"BLOCK_M": rows, "BLOCK_N": loop, "BLOCK_CQ": block_cq, "BLOCK_KQ": block_kq, "BLOCK_KV": block_kv}}


def _max_registers(num_warps: int) -> int:
    """Registers per thread that ``num_warps`` warps may use in one program (an SM's 64K, at most
    255): the backward passes it as ``maxnreg`` since ptxas otherwise stops at 128 and spills."""
    return min(255, 65536 // (32 * num_warps) - 1)


def _check_programs(programs: int, shape: torch.Size) -> int:
    if programs > MAX_PROGRAMS:
        raise ValueError(f"backend='triton' launches at most {MAX_PROGRAMS} programs, input of shape {tuple(shape)} "
                         f"needs {programs}; use backend='function' for this input")
    return programs


def _launch(kernel, grid: tuple[int, ...], *args: object, **options: object) -> None:
    """Launch ``kernel``; if the GPU lacks the shared memory for Triton's default software
    pipelining, launch it again without (one stage)."""
    from triton.runtime.errors import OutOfResources

    try:
        kernel[grid](*args, **options)
    except OutOfResources:
        kernel[grid](*args, **{**options, "num_stages": 1})


def triton_forward(query: Tensor, key: Tensor, value: Tensor, interpret: bool) -> tuple[Tensor, Tensor]:
    """Forward on ``(B, C, *spatial)`` tensors: the output (channels-last when ``value`` is) and
    the float32 log-sum-exp ``(B, *spatial)`` of every position over its criss-cross path."""
    kernels = _kernels()
    (q, q_s), (k, k_s), (v, v_s) = _strided(query), _strided(key), _strided(value)
    batch, channels, *spatial = v.shape
    qk_channels, positions, axes = q.shape[1], math.prod(spatial), _axes(torch.Size(spatial))
    out = torch.empty_like(v, memory_format=memory_format_of(v))
    # Half-precision outputs: the axes are merged in a float32 buffer, the last axis writes `out`.
    partial = out if out.dtype == torch.float32 or len(axes) == 1 else _buffer(out, torch.float32)
    # The log-sum-exp of the axes so far: read from one buffer, written to the other (programs of
    # other channel blocks may still be reading the old value).
    lse = [torch.empty((batch, *spatial), dtype=torch.float32, device=v.device) for _ in range(2)]
    block_cq = min(MAX_BLOCKS["cq"], _pow2(qk_channels))
    tiles = _tiles(v.dtype)
    with _launch_scope(v):
        for n, axis in enumerate(axes):
            length, step = _line(torch.Size(spatial), axis)
            block_m = min(MAX_BLOCKS["m"], _pow2(length))
            block_n = min(MAX_BLOCKS["n"], _pow2(length))
            block_c = min(MAX_BLOCKS["c"], _pow2(channels), max(16, tiles["forward_mc"] // block_m))
            last = n == len(axes) - 1
            programs = _check_programs(batch * positions // length * _cdiv(length, block_m) * _cdiv(channels, block_c),
                                       v.shape)
            _launch(kernels._forward_kernel, (programs,),
                    q, k, v, partial, out if last else partial, lse[(n + 1) % 2], lse[n % 2],
                    *q_s, *k_s, *v_s, *_flat_strides(out),
                    positions, length, step, qk_channels, channels,
                    MASK_CENTRE=axis != len(spatial) - 1, HAS_PREV=n > 0,
                    BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_CQ=block_cq, BLOCK_C=block_c,
                    CQ_CHUNKS=_cdiv(qk_channels, block_cq),
                    num_warps=4 if block_m * block_c < tiles["forward_mc"] else tiles["forward_warps"],
                    num_stages=tiles["forward_stages"],
                    **_dot_options(v.dtype, interpret))
    return out, lse[(len(axes) - 1) % 2]


def triton_backward(grad_out: Tensor, query: Tensor, key: Tensor, value: Tensor, out: Tensor, lse: Tensor,
                    interpret: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients with respect to query, key and value (in their dtypes and layouts)."""
    kernels = _kernels()
    (q, q_s), (k, k_s), (v, v_s), (o, o_s), (g, g_s) = (_strided(t) for t in (query, key, value, out, grad_out))
    batch, channels, *spatial = v.shape
    qk_channels, positions, axes = q.shape[1], math.prod(spatial), _axes(torch.Size(spatial))
    grads = [torch.empty_like(t) for t in (q, k, v)]  # the input's layout (contiguous if it has gaps)
    # Half precision: the axes are summed in float32 buffers, the last axis writes the gradients.
    partials = [t if t.dtype == torch.float32 or len(axes) == 1 else _buffer(t, torch.float32) for t in grads]
    grad_s = [s for t in grads for s in _flat_strides(t)]
    delta = torch.empty((batch, *spatial), dtype=torch.float32, device=v.device)
    tiles = _tiles(v.dtype)
    with _launch_scope(v):
        block_p, block_c = 64, min(32, _pow2(channels))
        _launch(kernels._delta_kernel, (_check_programs(_cdiv(batch * positions, block_p), v.shape),),
                o, g, delta, *o_s, *g_s, positions, batch * positions, channels, BLOCK_P=block_p, BLOCK_C=block_c)
        for n, axis in enumerate(axes):
            length, step = _line(torch.Size(spatial), axis)
            blocks = backward_blocks(tiles, length, qk_channels, channels)
            lines = batch * positions // length
            targets = grads if n == len(axes) - 1 else partials
            common = {"MASK_CENTRE": axis != len(spatial) - 1, "HAS_PREV": n > 0,
                      "num_warps": tiles["backward_warps"], "num_stages": tiles["backward_stages"],
                      "maxnreg": _max_registers(tiles["backward_warps"])}
            sizes = (positions, length, step, qk_channels, channels)
            dv, dk, dq = blocks["dv"], blocks["dk"], blocks["dq"]
            programs = lines * _cdiv(length, dv["BLOCK_N"]) * _cdiv(channels, dv["BLOCK_C"])
            _launch(kernels._backward_dv_kernel, (_check_programs(programs, v.shape),),
                    q, k, g, lse, partials[2], targets[2], *q_s, *k_s, *g_s, *grad_s[6:], *sizes,
                    **common, **dv, **_dot_options(v.dtype, interpret))
            programs = lines * _cdiv(length, dk["BLOCK_N"]) * _cdiv(qk_channels, dk["BLOCK_CQ"])
            _launch(kernels._backward_dk_kernel, (_check_programs(programs, v.shape),),
                    q, k, v, g, lse, delta, partials[1], targets[1], *q_s, *k_s, *v_s, *g_s, *grad_s[3:6], *sizes,
                    **common, **dk, **_dot_options(v.dtype, interpret, grads=True))
            programs = lines * _cdiv(length, dq["BLOCK_M"]) * _cdiv(qk_channels, dq["BLOCK_CQ"])
            _launch(kernels._backward_dq_kernel, (_check_programs(programs, v.shape),),
                    q, k, v, g, lse, delta, partials[0], targets[0], *q_s, *k_s, *v_s, *g_s, *grad_s[:3], *sizes,
                    **common, **dq, **_dot_options(v.dtype, interpret, grads=True))
    return tuple(grads)


class TritonCrissCrossFunction(torch.autograd.Function):
    """Criss-cross attention over every spatial axis with the Triton kernels. Saves q, k, v,
    the output and the log-sum-exp; double backward (``create_graph=True``) differentiates the
    composite, as `ccnet.ops.criss_cross_function.CrissCrossFunction` does."""

    @staticmethod
    def forward(ctx: FunctionCtx, query: Tensor, key: Tensor, value: Tensor, interpret: bool) -> Tensor:
        out, lse = triton_forward(query, key, value, interpret)
        ctx.save_for_backward(query, key, value, out, lse)
        ctx.interpret = interpret
        return out

    @staticmethod
    def backward(ctx: FunctionCtx, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        query, key, value, out, lse = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: differentiate the composite instead
            return (*composite_grads(ctx.needs_input_grad[:3], grad_out, query, key, value), None)
        return (*triton_backward(grad_out, query, key, value, out, lse, ctx.interpret), None)


def criss_cross_triton(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """Criss-cross attention over every spatial axis of ``(B, C, *spatial)`` tensors with the
    Triton kernels (inputs already checked by `ccnet.ops.criss_cross`). Raises a one-line
    error when Triton is missing, for other dtypes, for CPU tensors without the interpreter, for
    gradients at sizes `backward_limit` refuses and for grids beyond CUDA's limit."""
    interpret = _check_usable(value)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value)):
        return TritonCrissCrossFunction.apply(query, key, value, interpret)
    out, _ = triton_forward(query, key, value, interpret)
    return out
