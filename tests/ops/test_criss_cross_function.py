"""The memory-lean autograd path (``CrissCrossFunction``) against the eager composite and the
dense reference: values, gradients, layouts, chunked accumulation, what it saves."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ccnet.ops import criss_cross_attention, criss_cross_attention_3d, criss_cross_attention_reference
from ccnet.ops import criss_cross_function as fn
from ccnet.ops.composite import criss_cross_composite


def _inputs(*shape, channels=5, qk=3, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    batch, *spatial = shape
    q = torch.randn(batch, qk, *spatial, generator=gen, dtype=torch.float64) * 2
    k = torch.randn(batch, qk, *spatial, generator=gen, dtype=torch.float64) * 2
    v = torch.randn(batch, channels, *spatial, generator=gen, dtype=torch.float64)
    return [t.to(dtype).requires_grad_() for t in (q, k, v)]


def _grads(op, inputs, grad):
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    out = op(*inputs)
    out.backward(grad)
    return out.detach(), [t.grad for t in inputs]


@given(st.integers(1, 3), st.integers(1, 7), st.integers(1, 7), st.integers(0, 2**31 - 1))
def test_values_and_gradients_match_the_composite_2d(batch, height, width, seed):
    inputs = _inputs(batch, height, width, seed=seed)
    grad = torch.randn(batch, 5, height, width, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    out, grads = _grads(fn.CrissCrossFunction.apply, inputs, grad)
    ref_out, ref_grads = _grads(criss_cross_composite, inputs, grad)
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 1, 3, 4), (1, 4, 1, 3), (2, 2, 3, 1)])
def test_values_and_gradients_match_the_composite_3d(shape):
    inputs = _inputs(*shape)
    grad = torch.randn(shape[0], 5, *shape[1:], dtype=torch.float64)
    out, grads = _grads(fn.CrissCrossFunction.apply, inputs, grad)
    ref_out, ref_grads = _grads(criss_cross_composite, inputs, grad)
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10)


def test_chunked_accumulation_is_exact(monkeypatch):
    # A chunk smaller than one line matrix: every strided accumulation runs one matrix at a time.
    monkeypatch.setattr(fn, "_CHUNK_BYTES", 1)
    inputs = _inputs(2, 6, 5, channels=4)
    grad = torch.randn(2, 4, 6, 5, dtype=torch.float64)
    out, grads = _grads(criss_cross_attention, inputs, grad)
    ref_out, ref_grads = _grads(criss_cross_attention_reference, inputs, grad)
    torch.testing.assert_close(out, ref_out)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r)


@pytest.mark.parametrize("layout", ["channels_last", "nchw"])
def test_layouts_give_the_same_results_and_keep_the_value_layout(layout):
    inputs = _inputs(2, 5, 6, channels=4)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    moved = [t.detach().contiguous(memory_format=fmt).requires_grad_() for t in inputs]
    out = criss_cross_attention(*moved)
    assert out.is_contiguous(memory_format=fmt)
    grad = torch.randn_like(out)
    out.backward(grad)
    ref_out, ref_grads = _grads(criss_cross_attention_reference, inputs, grad)
    torch.testing.assert_close(out, ref_out)
    for t, r in zip(moved, ref_grads, strict=True):
        torch.testing.assert_close(t.grad, r)


def test_expanded_gradient_and_partial_requires_grad():
    q, k, v = _inputs(1, 4, 4)
    q.requires_grad_(False)
    criss_cross_attention(q, k, v).sum().backward()  # a zero-stride gradient
    k2, v2 = k.detach().clone().requires_grad_(), v.detach().clone().requires_grad_()
    criss_cross_attention_reference(q, k2, v2).sum().backward()
    assert q.grad is None
    torch.testing.assert_close(k.grad, k2.grad)
    torch.testing.assert_close(v.grad, v2.grad)


def test_saves_only_inputs_and_log_sum_exp():
    q, k, v = _inputs(1, 6, 7, channels=4, dtype=torch.float32)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        criss_cross_attention(q, k, v)
    extra = [t for t in saved if not any(t is x for x in (q, k, v))]
    assert sum(t.numel() for t in extra) == 6 * 7  # one float per position: the log-sum-exp


def test_bfloat16_path_close_to_float32():
    # Energies and softmax run in float32; only the aggregation is bfloat16 (~3 significant digits).
    q, k, v = (t.detach().bfloat16() for t in _inputs(1, 9, 11, channels=8, qk=4))
    out = criss_cross_attention(q, k, v)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), criss_cross_attention(q.float(), k.float(), v.float()),
                               rtol=0.016, atol=0.016)


def test_exporters_see_the_composite():
    class Attend(torch.nn.Module):
        def forward(self, q, k, v):
            return criss_cross_attention(q, k, v)

    q, k, v = (t.detach().float() for t in _inputs(1, 4, 5))
    exported = torch.export.export(Attend(), (q, k, v))
    targets = {str(node.target) for node in exported.graph.nodes}
    # The composite concatenates the energies for one softmax; the fast path writes with bmm(out=).
    assert "aten.cat.default" in targets and "aten.bmm.out" not in targets, targets
    torch.testing.assert_close(exported.module()(q, k, v), criss_cross_attention(q, k, v))


def test_3d_public_op_uses_the_same_function():
    inputs = _inputs(1, 3, 4, 5)
    grad = torch.randn(1, 5, 3, 4, 5, dtype=torch.float64)
    out, grads = _grads(criss_cross_attention_3d, inputs, grad)
    ref_out, ref_grads = _grads(criss_cross_composite, inputs, grad)
    torch.testing.assert_close(out, ref_out)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r)
