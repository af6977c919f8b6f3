"""The fused attention block (``criss_cross_block`` / ``CrissCrossBlockFunction``) against the plain
composition of convolutions and the dense reference: values and the gradients of the input and of
every parameter, both layouts, 2D and 3D; when the composition takes over; what it saves."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from ccnet.nn import CrissCrossAttention, CrissCrossAttention3d
from ccnet.ops import attention_block as block_module
from ccnet.ops import criss_cross_attention_3d_reference, criss_cross_attention_reference, criss_cross_block
from ccnet.ops.attention_block import CrissCrossBlockFunction

FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def _block(spatial_dims: int, channels: int = 6, reduction: int = 2, gamma: float = 0.7, dtype=torch.float64):
    torch.manual_seed(0)
    cls = CrissCrossAttention if spatial_dims == 2 else CrissCrossAttention3d
    block = cls(channels, reduction=reduction, gamma_init=gamma).to(dtype)
    with torch.no_grad():
        for name, p in block.named_parameters():  # biases too: no term of the gradient is trivially zero
            if name != "gamma":
                p.add_(torch.randn(p.shape, dtype=dtype) * 0.1)
    return block


def _reference(block, x):
    """The plain composition, spelled out: 1x1 convs, the dense masked-softmax reference, residual."""
    conv = F.conv2d if x.dim() == 4 else F.conv3d
    attend = criss_cross_attention_reference if x.dim() == 4 else criss_cross_attention_3d_reference
    q, k, v = (conv(x, m.weight, m.bias) for m in (block.query_conv, block.key_conv, block.value_conv))
    return block.gamma * attend(q, k, v) + x


def _run(fn, block, x, grad):
    """Output, input gradient and parameter gradients (by name) of ``fn(block, x)``."""
    block.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_()
    out = fn(block, x)
    out.backward(grad)
    return out.detach(), x.grad, {n: p.grad.clone() for n, p in block.named_parameters()}


def _assert_matches_reference(block, x, grad=None, rtol=1e-10, atol=1e-10):
    grad = torch.randn(x.shape, dtype=x.dtype) if grad is None else grad
    out, grad_x, grads = _run(lambda b, t: b(t), block, x, grad)
    ref_out, ref_grad_x, ref_grads = _run(_reference, block, x, grad)
    torch.testing.assert_close(out, ref_out, rtol=rtol, atol=atol)
    torch.testing.assert_close(grad_x, ref_grad_x, rtol=rtol, atol=atol)
    assert set(grads) == {"gamma", "query_conv.weight", "query_conv.bias", "key_conv.weight", "key_conv.bias",
                          "value_conv.weight", "value_conv.bias"}
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], rtol=rtol, atol=atol, msg=name)
    return out


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6), st.sampled_from(list(FORMATS)),
       st.integers(0, 2**31 - 1))
def test_2d_values_and_all_gradients_match_the_composition(batch, height, width, layout, seed):
    block = _block(2)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 6, height, width, generator=gen, dtype=torch.float64).contiguous(
        memory_format=FORMATS[layout])
    grad = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    out = _assert_matches_reference(block, x, grad)
    assert out.is_contiguous(memory_format=FORMATS[layout])  # the input's layout


@pytest.mark.parametrize("layout", ["nchw", "channels_last_3d"])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 1, 3, 4), (1, 4, 1, 3), (2, 2, 3, 1)])
def test_3d_values_and_all_gradients_match_the_composition(shape, layout):
    fmt = torch.channels_last_3d if layout == "channels_last_3d" else torch.contiguous_format
    x = torch.randn(shape[0], 6, *shape[1:], dtype=torch.float64).contiguous(memory_format=fmt)
    out = _assert_matches_reference(_block(3), x)
    assert out.is_contiguous(memory_format=fmt)


def test_eager_runs_the_fused_function_and_starts_as_identity():
    block = _block(2, gamma=0.0)
    x = torch.randn(2, 6, 5, 4, dtype=torch.float64, requires_grad=True)
    out = block(x)
    assert type(out.grad_fn).__name__ == "CrissCrossBlockFunctionBackward"
    torch.testing.assert_close(out, x)
    out.square().sum().backward()
    assert block.gamma.grad.abs().item() > 0  # gamma learns from zero
    assert block.value_conv.weight.grad.abs().sum() == 0  # everything behind gamma = 0 gets zero
    _assert_matches_reference(block, x.detach())


def test_gradients_at_gamma_zero_match_the_composition():
    # dL/dgamma comes from the per-position <grad, out> that backward computes, not from a division.
    _assert_matches_reference(_block(2, gamma=0.0), torch.randn(2, 6, 4, 5, dtype=torch.float64))


@pytest.mark.parametrize("layout", list(FORMATS))
def test_two_loops_with_shared_weights_match_the_composition(layout):
    block = _block(2, channels=8)
    x = torch.randn(2, 8, 5, 6, dtype=torch.float64).contiguous(memory_format=FORMATS[layout])
    grad = torch.randn(x.shape, dtype=torch.float64)
    out, grad_x, grads = _run(lambda b, t: b(b(t)), block, x, grad)
    ref_out, ref_grad_x, ref_grads = _run(lambda b, t: _reference(b, _reference(b, t)), block, x, grad)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(grad_x, ref_grad_x)
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], msg=name)


@pytest.mark.parametrize("layout", list(FORMATS))
@pytest.mark.parametrize("samples_per_group", [1, 2])
def test_batches_split_into_groups_give_the_same_results(samples_per_group, layout, monkeypatch):
    x = torch.randn(5, 6, 4, 3, dtype=torch.float64).contiguous(memory_format=FORMATS[layout])
    monkeypatch.setattr(block_module, "_GROUP_BYTES", samples_per_group * x[0].numel() * x.element_size())
    assert [g.stop - g.start for g in block_module._groups(x)] == ([1] * 5 if samples_per_group == 1 else [2, 2, 1])
    _assert_matches_reference(_block(2), x)


def test_frozen_parameters_input_without_grad_and_expanded_gradient():
    block = _block(2)
    block.query_conv.requires_grad_(False)
    x = torch.randn(1, 6, 4, 4, dtype=torch.float64)
    block(x).sum().backward()  # x needs no gradient; the incoming gradient has zero strides
    assert block.query_conv.weight.grad is None
    got = {n: p.grad.clone() for n, p in block.named_parameters() if p.requires_grad}
    block.zero_grad(set_to_none=True)
    _reference(block, x).sum().backward()
    for name, g in got.items():
        torch.testing.assert_close(g, dict(block.named_parameters())[name].grad, msg=name)


def test_gradcheck_and_double_backward():
    block = _block(2, channels=4)
    x = torch.randn(1, 4, 3, 4, dtype=torch.float64, requires_grad=True)
    params = (block.query_conv.weight, block.query_conv.bias, block.key_conv.weight, block.key_conv.bias,
              block.value_conv.weight, block.value_conv.bias, block.gamma)
    torch.autograd.gradcheck(CrissCrossBlockFunction.apply, (x, *params))
    torch.autograd.gradgradcheck(CrissCrossBlockFunction.apply, (x, *params))


def test_saves_only_input_parameters_qkv_and_log_sum_exp():
    block = _block(2, channels=16, reduction=4, dtype=torch.float32)
    x = torch.randn(2, 16, 6, 7, requires_grad=True)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        block(x)
    params = list(block.parameters())
    extra = [t for t in saved if not any(t is p for p in [x, *params])]
    positions = 2 * 6 * 7
    # The q/k/v projections (4 + 4 + 16 channels per position) and one float per position.
    assert sorted(t.numel() for t in extra) == [positions, positions * 24]


@pytest.mark.parametrize("case", ["autocast", "strided_input", "no_bias", "composite_backend", "environment"])
def test_unsupported_cases_fall_back_to_the_composition(case, monkeypatch):
    block = _block(2, dtype=torch.float32)
    x = torch.randn(2, 6, 5, 8)
    if case == "strided_input":
        x = x[..., ::2]
    if case == "no_bias":
        block.key_conv.bias = None
    if case == "composite_backend":
        block.backend = "composite"
    if case == "environment":
        monkeypatch.setenv("CCNET_CCA_BACKEND", "composite")
    calls, composed = [], block_module._composed_block
    monkeypatch.setattr(block_module, "_composed_block", lambda *a, **k: calls.append(1) or composed(*a, **k))
    if case == "autocast":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = block(x)  # the convs and the attention in bfloat16, the residual added to x in float32
        torch.testing.assert_close(out.float(), _reference(block, x), rtol=0.05, atol=0.05)
    else:
        torch.testing.assert_close(block(x), _reference(block, x), rtol=1e-5, atol=1e-5)
    assert calls == [1]


def test_bfloat16_block_close_to_float32():
    block = _block(2, channels=16, reduction=4, dtype=torch.float32)
    x = torch.randn(2, 16, 9, 11)
    expected = block(x)
    out = block.bfloat16()(x.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, rtol=0.03, atol=0.03)


def test_functional_form_matches_the_module():
    block = _block(2)
    x = torch.randn(1, 6, 3, 5, dtype=torch.float64)
    q, k, v = block.query_conv, block.key_conv, block.value_conv
    out = criss_cross_block(x, q.weight, q.bias, k.weight, k.bias, v.weight, v.bias, block.gamma)
    torch.testing.assert_close(out, block(x))
    with pytest.raises(ValueError, match=r"expects 4D input with 6 channels, got shape \(1, 5, 3, 5\)"):
        block(torch.randn(1, 5, 3, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"value_weight must be \(6, 6, 1, 1\) .* got \(3, 6, 1, 1\)"):
        criss_cross_block(x, q.weight, q.bias, k.weight, k.bias, q.weight, q.bias, block.gamma)
    with pytest.raises(ValueError, match=r"x must be \(B, C, H, W\) or \(B, C, T, H, W\), got shape \(6, 3, 5\)"):
        criss_cross_block(x[0], q.weight, q.bias, k.weight, k.bias, v.weight, v.bias, block.gamma)


def test_tracers_see_the_composition():
    block = _block(2, dtype=torch.float32).eval()
    x = torch.randn(1, 6, 5, 7)
    exported = torch.export.export(block, (x,))
    targets = {str(node.target) for node in exported.graph.nodes}
    assert "aten.conv2d.default" in targets and not any("addmm" in t for t in targets), targets
    torch.testing.assert_close(exported.module()(x), block(x))
    compiled = torch.compile(block, backend="aot_eager", fullgraph=True)
    x_grad = x.clone().requires_grad_()
    compiled(x_grad).square().sum().backward()
    grad = x_grad.grad
    x_grad.grad = None
    block(x_grad).square().sum().backward()
    torch.testing.assert_close(grad, x_grad.grad, rtol=1e-5, atol=1e-5)
