"""The attention block as one op (``ccnet.ops.criss_cross_block``) on CUDA: float32 values and the
gradients of the input and of every parameter against the plain composition in float64, NCHW and
channels-last, several samples per group and one; float32 blocks under bfloat16 autocast."""

import pytest
import torch
import torch.nn.functional as F

from ccnet.nn import CrissCrossAttention
from ccnet.ops import attention_block, criss_cross_attention_reference

pytestmark = [pytest.mark.cuda, pytest.mark.usefixtures("full_float32_matmuls")]  # TF32 off


def _composition(block, x):
    q, k, v = (F.conv2d(x, m.weight, m.bias) for m in (block.query_conv, block.key_conv, block.value_conv))
    return block.gamma * criss_cross_attention_reference(q, k, v) + x


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("group_bytes", [None, 1])
@pytest.mark.parametrize("shape", [(3, 32, 13, 11), (1, 16, 1, 9), (2, 64, 24, 17)])
def test_block_matches_the_composition_in_float64(shape, group_bytes, layout, monkeypatch):
    if group_bytes is not None:
        monkeypatch.setattr(attention_block, "_GROUP_BYTES", group_bytes)  # one sample per group
    torch.manual_seed(0)
    block = CrissCrossAttention(shape[1], gamma_init=0.7).cuda()
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(shape, device="cuda").contiguous(memory_format=fmt).requires_grad_()
    grad = torch.randn(shape, device="cuda")
    out = block(x)
    assert type(out.grad_fn).__name__ == "CrissCrossBlockFunctionBackward"
    params = list(block.parameters())
    got = torch.autograd.grad(out, [x, *params], grad)
    exact = block.double()
    x64 = x.detach().double().requires_grad_()
    expected_out = _composition(exact, x64)
    expected = torch.autograd.grad(expected_out, [x64, *exact.parameters()], grad.double())
    scale = expected_out.abs().max()
    assert (out.double() - expected_out).abs().max() <= 1e-5 * scale
    floor = 1e-5 * expected[0].abs().max()  # the key bias's gradient is 0 (a softmax shift): rounding only
    for name, g, e in zip(["x", *(n for n, _ in block.named_parameters())], got, expected, strict=True):
        assert (g.double() - e).abs().max() <= 1e-4 * e.abs().max() + floor, name


def test_block_under_bfloat16_autocast_is_finite_and_close():
    torch.manual_seed(0)
    block = CrissCrossAttention(64, gamma_init=0.7).cuda()
    x = torch.randn(2, 64, 33, 29, device="cuda", requires_grad=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = block(x)
    out.square().mean().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    with torch.no_grad():
        expected = block(x)
    assert (out.float() - expected).abs().max() <= 5e-2 * expected.abs().max()
