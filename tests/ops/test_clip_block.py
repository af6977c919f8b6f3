"""The fused block on clips stored frame by frame (``criss_cross_block(..., frames=T)``, what
``CrissCrossAttention(x, frames=T)`` runs) against the dense 3D reference and the composition:
values and the gradients of the input and of every parameter, both layouts, T = 1 (the 2D block),
lines of length 1, shared weights, higher derivatives, what it saves, when the composition takes
over."""

import pytest
import torch
import torch.nn.functional as F

from ccnet.nn import CrissCrossAttention
from ccnet.ops import attention_block as block_module
from ccnet.ops import (
    clip_criss_cross_attention,
    clips_to_frames,
    criss_cross_attention_3d_reference,
    criss_cross_block,
    frames_to_clips,
)
from ccnet.ops.attention_block import CrissCrossBlockFunction

FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
PARAMETERS = {"gamma", "query_conv.weight", "query_conv.bias", "key_conv.weight", "key_conv.bias",
              "value_conv.weight", "value_conv.bias"}


def _block(channels: int = 6, reduction: int = 2, gamma: float = 0.7, dtype=torch.float64) -> CrissCrossAttention:
    torch.manual_seed(0)
    block = CrissCrossAttention(channels, reduction=reduction, gamma_init=gamma).to(dtype)
    with torch.no_grad():
        for name, p in block.named_parameters():  # biases too: no term of the gradient is trivially zero
            if name != "gamma":
                p.add_(torch.randn(p.shape, dtype=dtype) * 0.1)
    return block


def _projections(block, x):
    return [F.conv2d(x, m.weight, m.bias) for m in (block.query_conv, block.key_conv, block.value_conv)]


def _dense(block, x, frames):
    """1x1 convs per frame, the dense masked-softmax 3D reference on the clips, residual."""
    q, k, v = (frames_to_clips(t, frames) for t in _projections(block, x))
    return block.gamma * clips_to_frames(criss_cross_attention_3d_reference(q, k, v)) + x


def _composition(block, x, frames):
    """The composition the block replaces: convs, the 3D operator's composite on clip views, residual."""
    return torch.addcmul(x, block.gamma, clip_criss_cross_attention(*_projections(block, x), frames,
                                                                    backend="composite"))


def _run(fn, block, x, grad):
    """Output, input gradient and parameter gradients (by name) of ``fn(block, x)``."""
    block.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_()
    out = fn(block, x)
    out.backward(grad)
    return out.detach(), x.grad, {n: p.grad.clone() for n, p in block.named_parameters()}


def _assert_same(got, expected, rtol=1e-10, atol=1e-10):
    (out, grad_x, grads), (ref_out, ref_grad_x, ref_grads) = got, expected
    torch.testing.assert_close(out, ref_out, rtol=rtol, atol=atol)
    torch.testing.assert_close(grad_x, ref_grad_x, rtol=rtol, atol=atol)
    assert set(grads) == PARAMETERS
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], rtol=rtol, atol=atol, msg=name)


def _frames(clips, frames, height, width, layout, channels=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(clips * frames, channels, height, width, generator=gen, dtype=torch.float64)
    return x.contiguous(memory_format=FORMATS[layout]), torch.randn(x.shape, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("layout", list(FORMATS))
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 4, 3, 3), (3, 2, 1, 4), (2, 3, 4, 1), (1, 2, 1, 1),
                                   (2, 1, 3, 4)])
def test_values_and_all_gradients_match_the_dense_reference_and_the_composition(shape, layout):
    clips, frames, height, width = shape  # lines of length 1 in T, H or W among them
    block = _block()
    x, grad = _frames(clips, frames, height, width, layout)
    fused = _run(lambda b, t: b(t, frames=frames), block, x, grad)
    assert fused[0].is_contiguous(memory_format=FORMATS[layout])  # the input's layout
    _assert_same(fused, _run(lambda b, t: _dense(b, t, frames), block, x, grad))
    _assert_same(fused, _run(lambda b, t: _composition(b, t, frames), block, x, grad))


@pytest.mark.parametrize("layout", list(FORMATS))
def test_one_frame_clips_equal_the_2d_block(layout):
    block = _block()
    x, grad = _frames(3, 1, 4, 5, layout)
    _assert_same(_run(lambda b, t: b(t, frames=1), block, x, grad), _run(lambda b, t: b(t), block, x, grad))


def test_frames_attend_within_their_clip_only():
    block = _block()
    x = torch.randn(6, 6, 3, 4, dtype=torch.float64, requires_grad=True)  # two clips of 3 frames
    (grad,) = torch.autograd.grad(block(x, frames=3)[1, :, 2, 1].sum(), x)
    reach = grad.abs().sum(1) > 0
    assert reach[3:].sum() == 0  # the other clip never
    assert reach[0, 2, 1] and reach[2, 2, 1] and reach[1, 0, 1] and reach[1, 2, 3]  # its T-, H- and W-lines
    assert not reach[0, 0, 0] and not reach[2, 1, 3]  # nothing off them


@pytest.mark.parametrize("layout", list(FORMATS))
def test_two_loops_with_shared_weights_match_the_dense_reference(layout):
    block = _block(channels=8)
    x, grad = _frames(2, 3, 4, 5, layout, channels=8)
    fused = _run(lambda b, t: b(b(t, frames=3), frames=3), block, x, grad)
    _assert_same(fused, _run(lambda b, t: _dense(b, _dense(b, t, 3), 3), block, x, grad))


@pytest.mark.parametrize("layout", list(FORMATS))
@pytest.mark.parametrize("clips_per_group", [1, 2])
def test_groups_hold_whole_clips_and_give_the_same_results(clips_per_group, layout, monkeypatch):
    x, grad = _frames(3, 2, 4, 3, layout)
    monkeypatch.setattr(block_module, "_GROUP_BYTES", clips_per_group * 2 * x[0].numel() * x.element_size())
    groups = block_module._groups(x, frames=2)
    assert [(g.start, g.stop) for g in groups] == ([(0, 2), (2, 4), (4, 6)] if clips_per_group == 1
                                                   else [(0, 4), (4, 6)])
    block = _block()
    _assert_same(_run(lambda b, t: b(t, frames=2), block, x, grad), _run(lambda b, t: _dense(b, t, 2), block, x, grad))


@pytest.mark.parametrize("layout", list(FORMATS))
def test_gradcheck_and_gradgradcheck(layout):
    block = _block(channels=3, reduction=3)
    x = torch.randn(4, 3, 2, 2, dtype=torch.float64).contiguous(memory_format=FORMATS[layout]).requires_grad_()
    params = tuple(p for _, p in sorted(block.named_parameters(), key=lambda item: _ORDER.index(item[0])))

    def fused(x, *params):
        return CrissCrossBlockFunction.apply(x, *params, 2)

    torch.autograd.gradcheck(fused, (x, *params))
    # Fast mode (random directions): the full second-order Jacobian takes a minute here.
    torch.autograd.gradgradcheck(fused, (x, *params), fast_mode=True)


_ORDER = ["query_conv.weight", "query_conv.bias", "key_conv.weight", "key_conv.bias", "value_conv.weight",
          "value_conv.bias", "gamma"]


@pytest.mark.parametrize("layout", list(FORMATS))
def test_saves_only_input_parameters_qkv_and_log_sum_exp(layout):
    block = _block(channels=16, reduction=4, dtype=torch.float32)
    x = torch.randn(6, 16, 5, 7).contiguous(memory_format=FORMATS[layout]).requires_grad_()
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = block(x, frames=3)
    assert type(out.grad_fn).__name__ == "CrissCrossBlockFunctionBackward"
    params = list(block.parameters())
    extra = [t for t in saved if not any(t is p for p in [x, *params])]
    positions = 6 * 5 * 7
    # The q/k/v projections (4 + 4 + 16 channels per position) and one float per position.
    assert sorted(t.numel() for t in extra) == [positions, positions * 24]


def test_inference_matches_and_keeps_no_graph():
    block = _block()
    x = torch.randn(4, 6, 3, 5, dtype=torch.float64)
    with torch.no_grad():
        out = block(x, frames=2)
    assert out.grad_fn is None
    torch.testing.assert_close(out, _dense(block, x, 2).detach(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", ["composite_backend", "strided_input", "no_bias"])
def test_unsupported_cases_fall_back_to_the_composition(case, monkeypatch):
    block = _block(dtype=torch.float32)
    x = torch.randn(4, 6, 5, 8)
    if case == "strided_input":
        x = x[..., ::2]
    if case == "no_bias":
        block.key_conv.bias = None
    if case == "composite_backend":
        block.backend = "composite"
    calls, composed = [], block_module._composed_block
    monkeypatch.setattr(block_module, "_composed_block", lambda *a, **k: calls.append(1) or composed(*a, **k))
    torch.testing.assert_close(block(x, frames=2), _dense(block, x, 2), rtol=1e-5, atol=1e-5)
    assert calls == [1]


def test_tracers_see_the_composition():
    class Clip(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = _block(dtype=torch.float32)

        def forward(self, x):
            return self.block(x, frames=2)

    module = Clip().eval()
    x = torch.randn(4, 6, 3, 5)
    exported = torch.export.export(module, (x,))
    targets = {str(node.target) for node in exported.graph.nodes}
    assert "aten.conv2d.default" in targets and not any("addmm" in t for t in targets), targets
    torch.testing.assert_close(exported.module()(x), module(x))


def test_bad_frames_fail_in_one_line():
    block = _block()
    q, k, v = block.query_conv, block.key_conv, block.value_conv
    x = torch.randn(5, 6, 3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^a batch of 5 frames does not split into clips of 2 frames$"):
        block(x, frames=2)
    with pytest.raises(ValueError, match=r"^a batch of 5 frames does not split into clips of 0 frames$"):
        block(x, frames=0)
    with pytest.raises(ValueError, match=r"with frames=T, x must be clips stored frame by frame.*\(1, 6, 5, 3, 4\)"):
        criss_cross_block(x[None].transpose(1, 2), q.weight[..., None], q.bias, k.weight[..., None], k.bias,
                          v.weight[..., None], v.bias, block.gamma, frames=5)
