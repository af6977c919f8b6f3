"""The criss-cross operators on CUDA against their dense references: float32, float16 and bfloat16,
values and gradients, 2D and 3D, NCHW and channels-last, odd sizes and lines of length 1."""

import pytest
import torch

from ccnet.ops import (
    criss_cross_attention,
    criss_cross_attention_3d,
    criss_cross_attention_3d_reference,
    criss_cross_attention_reference,
)

pytestmark = pytest.mark.cuda

# Largest |error| allowed, relative to the largest |reference| value: float32 is exact up to
# summation order; half precision rounds the attention weights and the output (float16 keeps 11
# bits, bfloat16 8); gradients go through one more rounded product.
VALUE_TOL = {torch.float32: 1e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}
GRAD_TOL = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 6e-2}
DTYPES = list(VALUE_TOL)
SHAPES_2D = [(2, 8, 16, 13, 11), (1, 5, 7, 1, 9), (1, 3, 6, 9, 1), (3, 64, 96, 17, 23)]
SHAPES_3D = [(2, 4, 6, 3, 5, 7), (1, 3, 5, 1, 4, 6)]


@pytest.fixture(autouse=True)
def full_float32_matmuls():
    """float32 matmuls in full precision (TF32 off), whatever the machine's default."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(before)


def _inputs(shape, dtype, layout="nchw", seed=0):
    batch, qk_channels, channels, *spatial = shape
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, qk_channels, *spatial, generator=gen)
    k = torch.randn(batch, qk_channels, *spatial, generator=gen)
    v = torch.randn(batch, channels, *spatial, generator=gen)
    tensors = [t.to("cuda", dtype) for t in (q, k, v)]
    if layout == "channels_last":
        tensors = [t.contiguous(memory_format=torch.channels_last) for t in tensors]
    return [t.requires_grad_() for t in tensors]


def _assert_close_relative(actual, expected, tol, what):
    assert torch.isfinite(actual).all(), f"{what}: not finite"
    error = (actual.double() - expected).abs().max().item()
    scale = expected.abs().max().item()
    assert error <= tol * scale, f"{what}: max |error| {error:.3g} > {tol} x max |reference| {scale:.3g}"


def _check_against_reference(op, reference, inputs, dtype):
    grad = torch.randn(inputs[2].shape, generator=torch.Generator().manual_seed(1)).to("cuda", dtype)
    out = op(*inputs)
    assert out.dtype == dtype and out.device.type == "cuda" and out.shape == inputs[2].shape
    got = torch.autograd.grad(out, inputs, grad)
    # The reference in float64 on the same (rounded) inputs: only the op's own rounding remains.
    exact = [t.detach().double().requires_grad_() for t in inputs]
    expected = reference(*exact)
    want = torch.autograd.grad(expected, exact, grad.double())
    _assert_close_relative(out, expected.detach(), VALUE_TOL[dtype], "output")
    for name, g, w in zip("qkv", got, want, strict=True):
        assert g.dtype == dtype
        _assert_close_relative(g, w, GRAD_TOL[dtype], f"gradient of {name}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("shape", SHAPES_2D, ids=str)
def test_2d_values_and_gradients_match_the_dense_reference(shape, layout, dtype):
    _check_against_reference(criss_cross_attention, criss_cross_attention_reference, _inputs(shape, dtype, layout),
                             dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES_3D, ids=str)
def test_3d_values_and_gradients_match_the_dense_reference(shape, dtype):
    _check_against_reference(criss_cross_attention_3d, criss_cross_attention_3d_reference, _inputs(shape, dtype),
                             dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_inference_path_matches_the_training_path(dtype):
    # Without autograd the op takes its forward-only path; it must give the same values.
    inputs = _inputs((2, 8, 16, 13, 11), dtype)
    with torch.no_grad():
        inference = criss_cross_attention(*inputs)
    training = criss_cross_attention(*inputs)
    torch.testing.assert_close(inference, training.detach())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_stays_finite_where_float32_is(dtype):
    # Energies around 1e5 overflow float16 (max 65504) if computed in half precision.
    q, k, v = (t.detach() for t in _inputs((1, 16, 8, 6, 7), torch.float32))
    q, k = q * 80, k * 80
    assert torch.isfinite(criss_cross_attention_reference(q, k, v)).all()
    low = [t.to(dtype).requires_grad_() for t in (q, k, v)]
    out = criss_cross_attention(*low)
    out.float().square().sum().backward()
    assert torch.isfinite(out).all()
    for t in low:
        assert torch.isfinite(t.grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_autocast_does_not_change_the_op(dtype):
    q, k, v = (t.detach() for t in _inputs((2, 8, 16, 9, 10), torch.float32))
    expected = criss_cross_attention(q, k, v)
    with torch.autocast("cuda", dtype=dtype):
        out = criss_cross_attention(q, k, v)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected)
