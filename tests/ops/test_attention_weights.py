"""criss_cross_attention_weights: the op's attention weights, against the dense reference matrix."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ccnet.ops import (
    criss_cross_attention,
    criss_cross_attention_3d,
    criss_cross_attention_matrix_reference,
    criss_cross_attention_weights,
)


def dense_from_weights(weights, spatial):
    """Scatter per-axis line weights into the dense ``(B, N, N)`` matrix, one entry at a time."""
    batch = weights[0].shape[0]
    n = torch.Size(spatial).numel()
    dense = torch.zeros(batch, n, n, dtype=weights[0].dtype)
    positions = list(torch.cartesian_prod(*(torch.arange(s) for s in spatial)).reshape(n, len(spatial)))
    flat = {tuple(p.tolist()): i for i, p in enumerate(positions)}
    for i, position in enumerate(positions):
        position = tuple(position.tolist())
        for axis, weight in enumerate(weights):
            for other in range(spatial[axis]):
                target = list(position)
                target[axis] = other
                dense[:, i, flat[tuple(target)]] += weight[(slice(None), *position, other)]
    return dense


@given(st.integers(1, 2), st.integers(1, 4), st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_2d_weights_are_the_dense_reference_matrix(batch, channels, height, width, seed):
    gen = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(batch, channels, height, width, generator=gen, dtype=torch.float64) * 2 for _ in range(2))
    weights = criss_cross_attention_weights(q, k)
    assert [tuple(w.shape) for w in weights] == [(batch, height, width, height), (batch, height, width, width)]
    dense = dense_from_weights(weights, (height, width))
    torch.testing.assert_close(dense, criss_cross_attention_matrix_reference(q, k), rtol=1e-12, atol=1e-12)


@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_3d_weights_are_the_dense_reference_matrix(frames, height, width, seed):
    gen = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(1, 3, frames, height, width, generator=gen, dtype=torch.float64) for _ in range(2))
    weights = criss_cross_attention_weights(q, k)
    assert [w.shape[-1] for w in weights] == [frames, height, width]
    dense = dense_from_weights(weights, (frames, height, width))
    torch.testing.assert_close(dense, criss_cross_attention_matrix_reference(q, k), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spatial", [(5, 7), (3, 4, 6)])
def test_weights_aggregate_to_the_fast_op_output(spatial):
    """The weights are the ones the eager (fast) op applies: summing values with them gives its output."""
    gen = torch.Generator().manual_seed(0)
    q, k = (torch.randn(2, 4, *spatial, generator=gen) for _ in range(2))
    v = torch.randn(2, 6, *spatial, generator=gen)
    op = criss_cross_attention if len(spatial) == 2 else criss_cross_attention_3d
    weights = criss_cross_attention_weights(q, k)
    out = torch.zeros_like(v)
    for axis, weight in enumerate(weights):
        # out[b, c, ..., i_axis, ...] += sum_j weight[b, ..., i_axis, ..., j] * v[b, c, ..., j, ...]
        lines_v = v.movedim(axis + 2, -1).unsqueeze(-2)  # (B, C, *others, 1, L_j)
        lines_w = weight.movedim(axis + 1, -2).unsqueeze(1)  # (B, 1, *others, L_i, L_j)
        out += (lines_v * lines_w).sum(-1).movedim(-1, axis + 2)
    torch.testing.assert_close(out, op(q, k, v), rtol=1e-5, atol=1e-5)


def test_centre_counted_once_and_rows_sum_to_one():
    q, k = torch.randn(1, 3, 4, 5), torch.randn(1, 3, 4, 5)
    column, row = criss_cross_attention_weights(q, k)
    total = column.sum(-1) + row.sum(-1)
    torch.testing.assert_close(total, torch.ones_like(total))
    centre = torch.stack([column[0, i, j, i] for i in range(4) for j in range(5)])
    assert (centre == 0).all()


def test_half_precision_weights_are_float32():
    q, k = torch.randn(1, 2, 3, 3).bfloat16(), torch.randn(1, 2, 3, 3).bfloat16()
    assert all(w.dtype == torch.float32 for w in criss_cross_attention_weights(q, k))


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="query and key shapes differ"):
        criss_cross_attention_weights(torch.randn(1, 2, 3, 3), torch.randn(1, 2, 3, 4))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\) or \(B, C, T, H, W\)"):
        criss_cross_attention_weights(torch.randn(2, 3, 3), torch.randn(2, 3, 3))
