"""The fused Triton kernels (``backend="triton"``) against the dense reference.

On the CPU they run through Triton's interpreter, which must be switched on before triton is
imported: ``test_kernels_under_the_interpreter`` runs this file again in a subprocess with
``TRITON_INTERPRET=1`` (so nothing in this process changes); there the ``interpreted`` tests
run, here they are skipped. Run them directly with
``TRITON_INTERPRET=1 pytest tests/ops/test_criss_cross_triton.py``. The shapes are small and
odd because the interpreter is slow; ``small_blocks`` lowers the block sizes to 16 so that lines
and channels still span several blocks. The ``cuda`` tests run the compiled kernels on a GPU.

Tolerances are relative to the largest reference magnitude (at least 1): float32 1e-5; half precision the
dtype's epsilon for values (the output's own rounding is half of it) and 4 epsilons for
gradients, whose ``delta = sum(dO * O)`` comes from the rounded output as in
FlashAttention-2 (measured: up to 2.1 eps for bfloat16 ``dq``, against 0.6 for the autograd
function; a wrong mask or softmax is off by far more).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ccnet.nn import CrissCrossAttention
from ccnet.ops import (
    criss_cross_attention,
    criss_cross_attention_3d,
    criss_cross_attention_3d_reference,
    criss_cross_attention_reference,
    criss_cross_triton,
)

pytest.importorskip("triton", reason="the triton package is not installed (pip install 'ccnet-pytorch[triton]')")

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
interpreted = pytest.mark.skipif(not INTERPRETING, reason="runs under TRITON_INTERPRET=1, in the subprocess of "
                                                           "test_kernels_under_the_interpreter")


def needs_cuda(test):
    """The ``cuda`` marker, and a skip with the reason on machines without a GPU."""
    return pytest.mark.cuda(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")(test))


@pytest.mark.skipif(INTERPRETING, reason="already under the interpreter")
def test_kernels_under_the_interpreter():
    root = Path(__file__).parents[2]
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not cuda",
                             "-k", "not (under_the_interpreter or need_the_interpreter)",
                             str(Path(__file__).relative_to(root))],
                            cwd=root, env=env, capture_output=True, text=True, timeout=900)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in summary and "skipped" not in summary, summary


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(criss_cross_triton, "MAX_BLOCKS", {"m": 16, "n": 16, "c": 16, "cq": 16})


def _inputs(batch, qk, channels, *spatial, dtype=torch.float32, device="cpu", seed=0):
    """q, k, v (``requires_grad``) and an output gradient, drawn in float64 and rounded to ``dtype``."""
    gen = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(batch, qk, *spatial, generator=gen, dtype=torch.float64) for _ in range(2))
    v, grad = (torch.randn(batch, channels, *spatial, generator=gen, dtype=torch.float64) for _ in range(2))
    return [t.to(device, dtype).requires_grad_() for t in (q, k, v)], grad.to(device, dtype)


def _run(op, inputs, grad, **kwargs):
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    out = op(*inputs, **kwargs)
    out.backward(grad)
    return out.detach(), [t.grad for t in inputs]


def _tolerance(dtype: torch.dtype) -> tuple[float, float]:
    """(values, gradients) tolerance relative to the reference's largest magnitude."""
    if dtype == torch.float32:
        return 1e-5, 1e-5
    eps = torch.finfo(dtype).eps
    return eps, 4 * eps


def _check_against_reference(inputs, grad, three_d=False):
    op = criss_cross_attention_3d if three_d else criss_cross_attention
    reference = criss_cross_attention_3d_reference if three_d else criss_cross_attention_reference
    out, grads = _run(op, inputs, grad, backend="triton")
    ref_out, ref_grads = _run(reference, [t.double() for t in inputs], grad.double())
    values_tol, grads_tol = _tolerance(inputs[0].dtype)
    assert out.dtype == inputs[2].dtype and all(g.dtype == t.dtype for g, t in zip(grads, inputs, strict=True))
    for name, got, want, tol in [("output", out, ref_out, values_tol)] + [
            (f"d{n}", g, r, grads_tol) for n, g, r in zip("qkv", grads, ref_grads, strict=True)]:
        # Relative to the largest magnitude, at least 1 (a single pixel's dq and dk are exactly 0).
        error = (got.double() - want).abs().max().item() / max(want.abs().max().item(), 1.0)
        assert error <= tol, f"{name}: relative error {error:.2e} > {tol:.1e}"


@interpreted
@pytest.mark.parametrize("shape", [
    (2, 3, 7, 5, 6),  # batch 2, odd sizes, channels not powers of two
    (1, 4, 5, 1, 7),  # 1 x N: the column lines hold only the pixel itself
    (1, 4, 5, 7, 1),  # N x 1
    (1, 2, 3, 1, 1),  # a single pixel
])
def test_values_and_gradients_match_the_dense_reference(shape):
    _check_against_reference(*_inputs(*shape))


@interpreted
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_matches_the_dense_reference(dtype):
    _check_against_reference(*_inputs(2, 3, 7, 5, 6, dtype=dtype))


@interpreted
def test_lines_and_channels_spanning_several_blocks(small_blocks):
    # Rows of 37 (three query and key blocks), 20 query/key channels (two forward chunks, padded to
    # 32 in the backward), 24 value channels (two forward blocks, two backward chunks).
    _check_against_reference(*_inputs(1, 20, 24, 3, 37))


@interpreted
@pytest.mark.parametrize("shape", [(1, 3, 5, 2, 3, 4), (2, 2, 3, 3, 1, 2)])
def test_3d_matches_the_dense_reference(shape):
    _check_against_reference(*_inputs(*shape), three_d=True)


@interpreted
def test_layouts_follow_the_inputs():
    inputs, grad = _inputs(2, 3, 6, 4, 5)
    want_out, want_grads = _run(criss_cross_attention, inputs, grad, backend="function")
    channels_last = [t.detach().to(memory_format=torch.channels_last).requires_grad_() for t in inputs]
    out, grads = _run(criss_cross_attention, channels_last, grad, backend="triton")
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    assert all(g.is_contiguous(memory_format=torch.channels_last) for g in grads)
    # Spatial dimensions that do not flatten (a transposed view) are copied; a zero-stride
    # gradient (from a sum) is read in place.
    transposed = [t.detach().transpose(2, 3).contiguous().transpose(2, 3).requires_grad_() for t in inputs]
    out_t, grads_t = _run(criss_cross_attention, transposed, grad, backend="triton")
    for got in (out, out_t):
        torch.testing.assert_close(got, want_out, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads + grads_t, want_grads + want_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    summed = [t.detach().clone().requires_grad_() for t in inputs]
    criss_cross_attention(*summed, backend="triton").sum().backward()
    _, want_summed = _run(criss_cross_attention, inputs, torch.ones_like(grad), backend="function")
    for got, want in zip(summed, want_summed, strict=True):
        torch.testing.assert_close(got.grad, want, rtol=1e-5, atol=1e-5)


@interpreted
def test_inference_saves_nothing_and_double_backward_uses_the_composite():
    inputs, grad = _inputs(1, 2, 3, 3, 4)
    with torch.no_grad():
        out = criss_cross_attention(*inputs, backend="triton")
    assert out.grad_fn is None
    torch.testing.assert_close(out, criss_cross_attention(*inputs, backend="function"), rtol=1e-5, atol=1e-5)

    def second_order(backend):
        q, k, v = (t.detach().double().float().requires_grad_() for t in inputs)
        (dq,) = torch.autograd.grad(criss_cross_attention(q, k, v, backend=backend), q, grad, create_graph=True)
        return torch.autograd.grad(dq.square().sum(), (q, k, v))

    for got, want in zip(second_order("triton"), second_order("function"), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@interpreted
def test_attention_block_opts_in():
    torch.manual_seed(0)
    ours = CrissCrossAttention(8, reduction=4, gamma_init=0.5, backend="triton")
    default = CrissCrossAttention(8, reduction=4, gamma_init=0.5)
    default.load_state_dict(ours.state_dict())
    assert "backend='triton'" in repr(ours)
    x = torch.randn(2, 8, 3, 5)
    outputs = []
    for block in (ours, default):
        inp = x.clone().requires_grad_()
        out = block(inp)
        out.square().sum().backward()
        outputs.append((out, inp.grad, block.gamma.grad))
    for got, want in zip(*outputs, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@interpreted
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_split_backward_tiles_both_axes_and_channel_blocks(small_blocks, dtype):
    # Blocks of 16: lines of 17 and 20 (two tiles of keys and of queries on each axis), 17 query/key
    # channels (two dK/dQ channel blocks, each recomputing the energies in two chunks), 18 value
    # channels (two dV blocks, dA in two chunks).
    _check_against_reference(*_inputs(1, 17, 18, 17, 20, dtype=dtype))


@interpreted
def test_split_backward_3d_spanning_several_blocks(small_blocks):
    _check_against_reference(*_inputs(1, 17, 18, 3, 18, 5), three_d=True)


@interpreted
def test_long_lines_and_many_channels_are_differentiated(small_blocks):
    # No line-length or channel limit: a line of 70 (five tiles) with 65 query/key channels.
    _check_against_reference(*_inputs(1, 65, 3, 1, 70))


@interpreted
def test_grids_beyond_cuda_limit_are_refused(monkeypatch):
    monkeypatch.setattr(criss_cross_triton, "MAX_PROGRAMS", 3)  # (1, C, 3, 4): 4 columns, one program each
    inputs, _ = _inputs(1, 2, 3, 3, 4)
    refused = r"at most 3 programs, input of shape \(1, 3, 3, 4\) needs 4;"
    with torch.no_grad(), pytest.raises(ValueError, match=refused):
        criss_cross_attention(*inputs, backend="triton")


@pytest.mark.parametrize("tiles", sorted(criss_cross_triton.TILES))
@pytest.mark.parametrize(("length", "qk", "channels"), [(1, 5, 7), (97, 64, 512), (256, 64, 40), (1000, 300, 2048)])
def test_backward_blocks_are_bounded_powers_of_two(tiles, length, qk, channels):
    row = criss_cross_triton.TILES[tiles]
    blocks = criss_cross_triton.backward_blocks(row, length, qk, channels)
    for sizes in blocks.values():
        assert all(size >= 16 and size & (size - 1) == 0 for size in sizes.values()), sizes
    # Each program's tile is bounded whatever the input: rows x loop, channel widths from the table.
    assert blocks["dv"]["BLOCK_N"] == blocks["dk"]["BLOCK_N"] == blocks["dq"]["BLOCK_M"] <= row["backward_rows"]
    assert blocks["dv"]["BLOCK_M"] == blocks["dk"]["BLOCK_M"] == blocks["dq"]["BLOCK_N"] <= row["backward_loop"]
    assert blocks["dv"]["BLOCK_C"] <= row["backward_c"] and blocks["dk"]["BLOCK_KV"] <= row["backward_k"]
    assert blocks["dq"]["BLOCK_CQ"] <= criss_cross_triton.MAX_BLOCKS["cq"]


@pytest.mark.skipif(INTERPRETING, reason="the interpreter runs CPU tensors")
def test_cpu_tensors_need_the_interpreter():
    inputs, _ = _inputs(1, 2, 3, 3, 4)
    with pytest.raises(ValueError, match=r"CUDA tensors.*TRITON_INTERPRET=1"):
        criss_cross_attention(*inputs, backend="triton")


def test_unsupported_dtype_is_refused():
    inputs, _ = _inputs(1, 2, 3, 3, 4, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"float32, float16 and bfloat16.*float64"):
        criss_cross_attention(*inputs, backend="triton")


F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16


@needs_cuda
@pytest.mark.parametrize(("shape", "dtype", "layout"), [
    *[((2, 16, 48, 33, 47), dtype, "nchw") for dtype in (F32, F16, BF16)],
    ((2, 16, 48, 33, 47), BF16, "channels_last"),
    *[((1, 64, 512, 97, 97), dtype, layout) for dtype in (F32, BF16) for layout in ("nchw", "channels_last")],
    ((1, 64, 40, 256, 3), F32, "nchw"),  # lines of 256: eight tiles of 32
    ((1, 64, 40, 256, 3), BF16, "channels_last"),
    ((2, 5, 7, 1, 30), F16, "nchw"),  # 1 x N
    ((1, 80, 24, 300, 2), F32, "channels_last"),  # long lines, two query/key channel blocks
    ((2, 8, 24, 5, 9, 11), F16, "nchw"),  # 3D
], ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v).removeprefix("torch."))
def test_compiled_kernels_match_the_dense_reference(shape, dtype, layout):
    inputs, grad = _inputs(*shape, dtype=dtype, device="cuda")
    if layout == "channels_last":
        inputs = [t.detach().to(memory_format=torch.channels_last).requires_grad_() for t in inputs]
    _check_against_reference(inputs, grad, three_d=len(shape) == 6)
