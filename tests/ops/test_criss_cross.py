"""The criss-cross operators against their dense masked-attention references."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ccnet.ops import (
    criss_cross_attention,
    criss_cross_attention_3d,
    criss_cross_attention_3d_reference,
    criss_cross_attention_reference,
    criss_cross_mask,
    non_local_attention,
)


def _inputs(batch, qk_channels, channels, *spatial, dtype=torch.float64, device="cpu", seed=0, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, qk_channels, *spatial, generator=gen, dtype=torch.float64) * scale
    k = torch.randn(batch, qk_channels, *spatial, generator=gen, dtype=torch.float64) * scale
    v = torch.randn(batch, channels, *spatial, generator=gen, dtype=torch.float64)
    return (t.to(device=device, dtype=dtype) for t in (q, k, v))


dims = st.integers(1, 9)


@given(st.integers(1, 3), st.integers(1, 5), st.integers(1, 6), dims, dims, st.integers(0, 2**31 - 1))
def test_2d_matches_dense_reference(batch, qk_channels, channels, height, width, seed):
    q, k, v = _inputs(batch, qk_channels, channels, height, width, seed=seed, scale=2.0)
    out = criss_cross_attention(q, k, v)
    assert out.shape == v.shape and out.dtype == v.dtype
    torch.testing.assert_close(out, criss_cross_attention_reference(q, k, v), rtol=1e-12, atol=1e-12)


@given(st.integers(1, 2), st.integers(1, 4), st.integers(1, 5), st.integers(1, 5), dims, dims,
       st.integers(0, 2**31 - 1))
def test_3d_matches_dense_reference(batch, qk_channels, channels, frames, height, width, seed):
    q, k, v = _inputs(batch, qk_channels, channels, frames, height, width, seed=seed, scale=2.0)
    out = criss_cross_attention_3d(q, k, v)
    assert out.shape == v.shape
    torch.testing.assert_close(out, criss_cross_attention_3d_reference(q, k, v), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(2, 8, 16, 13, 17), (1, 64, 32, 7, 5)])
def test_float32_within_1e5_relative(shape, device):
    batch, qk_channels, channels, height, width = shape
    q, k, v = _inputs(batch, qk_channels, channels, height, width, dtype=torch.float32, device=device)
    out = criss_cross_attention(q, k, v)
    expected = criss_cross_attention_reference(*(t.double() for t in (q, k, v)))
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)


def test_reference_mask_counts_centre_once():
    mask = criss_cross_mask(4, 6)
    assert mask.shape == (24, 24)
    assert (mask.sum(1) == 4 + 6 - 1).all()
    assert mask.diagonal().all()
    mask3 = criss_cross_mask(3, 4, 5)
    assert (mask3.sum(1) == 3 + 4 + 5 - 2).all()


def test_every_position_sees_exactly_its_criss_cross_path():
    # With value = one-hot of position j, out[i] is the attention weight of i on j: it must be
    # positive exactly on the criss-cross path and sum to one over it.
    height, width = 4, 5
    n = height * width
    q, k, _ = _inputs(1, 3, 1, height, width)
    value = torch.eye(n, dtype=torch.float64).reshape(1, n, height, width)
    weights = criss_cross_attention(q, k, value).reshape(n, n).T  # [i, j]
    assert torch.equal(weights > 0, criss_cross_mask(height, width))
    torch.testing.assert_close(weights.sum(1), torch.ones(n, dtype=torch.float64))


def test_single_joint_softmax_not_two():
    # Row and column share one normaliser: a huge energy on the row starves the column.
    q = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    k = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    q[0, 0, 1, 1] = 1.0
    k[0, 0, 1, 0] = 50.0  # on the row of (1, 1)
    v = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    v[0, 0, 1, 0] = 1.0
    v[0, 0, 0, 1] = 1.0  # on the column of (1, 1)
    out = criss_cross_attention(q, k, v)
    assert out[0, 0, 1, 1] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("shape", [(2, 3, 2, 4, 5), (1, 2, 3, 1, 6), (1, 2, 3, 6, 1), (1, 1, 1, 1, 1)])
def test_2d_gradcheck(shape):
    batch, qk_channels, channels, height, width = shape
    q, k, v = (t.requires_grad_() for t in _inputs(batch, qk_channels, channels, height, width))
    assert torch.autograd.gradcheck(criss_cross_attention, (q, k, v))


def test_2d_double_backward():
    q, k, v = (t.requires_grad_() for t in _inputs(1, 2, 2, 2, 3))
    assert torch.autograd.gradgradcheck(criss_cross_attention, (q, k, v))


@pytest.mark.parametrize("shape", [(1, 2, 3, 3, 4, 5), (2, 1, 2, 1, 3, 1)])
def test_3d_gradcheck(shape):
    batch, qk_channels, channels, *spatial = shape
    q, k, v = (t.requires_grad_() for t in _inputs(batch, qk_channels, channels, *spatial))
    assert torch.autograd.gradcheck(criss_cross_attention_3d, (q, k, v))


def test_gradients_match_reference():
    q, k, v = (t.requires_grad_() for t in _inputs(2, 4, 6, 5, 7, seed=3))
    grad_out = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    fast = torch.autograd.grad(criss_cross_attention(q, k, v), (q, k, v), grad_out)
    slow = torch.autograd.grad(criss_cross_attention_reference(q, k, v), (q, k, v), grad_out)
    for a, b in zip(fast, slow, strict=False):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_close_to_float32(dtype, device):
    q, k, v = _inputs(2, 8, 16, 9, 11, dtype=torch.float32, device=device)
    low = [t.to(dtype) for t in (q, k, v)]
    out = criss_cross_attention(*low)
    assert out.dtype == dtype
    # Against the reference on the same (rounded) inputs: only the op's own rounding remains.
    expected = criss_cross_attention_reference(*(t.double() for t in low))
    tol = 2e-2 if dtype == torch.bfloat16 else 2e-3
    torch.testing.assert_close(out.double(), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_stays_finite_where_float32_is(dtype, device):
    # Energies around 1e5 overflow float16 (max 65504) if computed in half precision; the
    # float32 result is finite, so ours must be too, forward and backward.
    q, k, v = _inputs(1, 16, 8, 6, 7, dtype=torch.float32, device=device, scale=80.0)
    assert torch.isfinite(criss_cross_attention_reference(q, k, v)).all()
    q16, k16, v16 = (t.to(dtype).requires_grad_() for t in (q, k, v))
    out = criss_cross_attention(q16, k16, v16)
    assert torch.isfinite(out).all()
    out.float().square().sum().backward()
    for t in (q16, k16, v16):
        assert torch.isfinite(t.grad).all()
    expected = criss_cross_attention_reference(*(t.detach().double() for t in (q16, k16, v16)))
    torch.testing.assert_close(out.double(), expected, rtol=0.05, atol=0.05)


def test_autocast_does_not_change_numerics():
    q, k, v = _inputs(1, 4, 8, 5, 6, dtype=torch.float32)
    expected = criss_cross_attention(q, k, v)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = criss_cross_attention(q, k, v)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected)


def test_channels_last_and_non_contiguous_inputs(device):
    q, k, v = _inputs(2, 4, 8, 7, 9, dtype=torch.float32, device=device)
    expected = criss_cross_attention(q, k, v)
    assert expected.is_contiguous()
    cl = [t.contiguous(memory_format=torch.channels_last) for t in (q, k, v)]
    out = criss_cross_attention(*cl)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, expected)
    # Strided views (every other column of a wider tensor) and a transposed layout.
    wide = [torch.cat([t, torch.randn_like(t)], dim=-1)[..., ::2] for t in (q, k, v)]
    torch.testing.assert_close(criss_cross_attention(*wide), criss_cross_attention(*(w.contiguous() for w in wide)))
    qt, kt, vt = (t.transpose(-1, -2).contiguous().transpose(-1, -2) for t in (q, k, v))
    torch.testing.assert_close(criss_cross_attention(qt, kt, vt), expected)


def test_3d_channels_last():
    q, k, v = _inputs(1, 4, 8, 3, 5, 6, dtype=torch.float32)
    cl = [t.contiguous(memory_format=torch.channels_last_3d) for t in (q, k, v)]
    out = criss_cross_attention_3d(*cl)
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(out, criss_cross_attention_3d(q, k, v))


def test_constant_value_is_a_fixed_point():
    q, k, _ = _inputs(2, 3, 1, 5, 4, scale=5.0)
    v = torch.full((2, 6, 5, 4), 2.5, dtype=torch.float64)
    torch.testing.assert_close(criss_cross_attention(q, k, v), v)


def test_non_local_is_full_attention():
    q, k, v = _inputs(1, 2, 3, 3, 4)
    energy = torch.einsum("cn,cm->nm", q.reshape(2, -1), k.reshape(2, -1))
    expected = (v.reshape(3, -1) @ energy.softmax(-1).T).reshape(v.shape)
    torch.testing.assert_close(non_local_attention(q, k, v), expected)


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        (((1, 4, 5, 6), (1, 4, 5, 7), (1, 8, 5, 6)), r"query and key shapes differ: \(1, 4, 5, 6\) vs \(1, 4, 5, 7\)"),
        (((1, 4, 5, 6), (1, 4, 5, 6), (1, 8, 5, 7)), r"value \(1, 8, 5, 7\) must match query \(1, 4, 5, 6\)"),
        (((2, 4, 5, 6), (2, 4, 5, 6), (1, 8, 5, 6)), r"value \(1, 8, 5, 6\) must match query \(2, 4, 5, 6\)"),
        (((4, 5, 6), (4, 5, 6), (8, 5, 6)), r"query must be \(B, C, H, W\), got shape \(4, 5, 6\)"),
    ],
)
def test_mismatched_shapes_raise_naming_them(shapes, message):
    tensors = [torch.randn(s) for s in shapes]
    with pytest.raises(ValueError, match=message):
        criss_cross_attention(*tensors)


def test_bad_dtypes_raise():
    q = torch.randn(1, 2, 3, 3)
    with pytest.raises(TypeError, match="dtypes differ"):
        criss_cross_attention(q, q, q.double())
    with pytest.raises(TypeError, match="floating-point"):
        criss_cross_attention(q.long(), q.long(), q.long())
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        criss_cross_attention_3d(q, q, q)
