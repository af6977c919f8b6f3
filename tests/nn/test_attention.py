"""Criss-cross attention blocks: parameter layout, identity start, receptive field."""

import pytest
import torch

from ccnet.nn import CrissCrossAttention, CrissCrossAttention3d, NonLocal2d
from ccnet.ops import criss_cross_attention, criss_cross_mask


def test_parameter_names_and_shapes_match_the_original():
    block = CrissCrossAttention(64)
    shapes = {name: tuple(t.shape) for name, t in block.state_dict().items()}
    assert shapes == {
        "query_conv.weight": (8, 64, 1, 1),
        "query_conv.bias": (8,),
        "key_conv.weight": (8, 64, 1, 1),
        "key_conv.bias": (8,),
        "value_conv.weight": (64, 64, 1, 1),
        "value_conv.bias": (64,),
        "gamma": (1,),
    }
    assert block.gamma.item() == 0.0
    block3d = CrissCrossAttention3d(32, reduction=4)
    assert block3d.query_conv.weight.shape == (8, 32, 1, 1, 1)
    assert block3d.gamma.shape == (1,)


def test_starts_as_identity_and_computes_gamma_residual():
    torch.manual_seed(0)
    block = CrissCrossAttention(16).double()
    x = torch.randn(2, 16, 5, 7, dtype=torch.float64)
    torch.testing.assert_close(block(x), x)
    with torch.no_grad():
        block.gamma.fill_(0.7)
    expected = 0.7 * criss_cross_attention(block.query_conv(x), block.key_conv(x), block.value_conv(x)) + x
    torch.testing.assert_close(block(x), expected)


def test_gamma_receives_gradient_at_zero():
    block = CrissCrossAttention(8)
    block(torch.randn(1, 8, 4, 4)).square().sum().backward()
    assert block.gamma.grad is not None and block.gamma.grad.abs().item() > 0


def test_wrong_channels_raise_naming_shape():
    with pytest.raises(ValueError, match=r"expects 4D input with 16 channels, got shape \(1, 8, 4, 4\)"):
        CrissCrossAttention(16)(torch.randn(1, 8, 4, 4))


def _dependence(block, x, loops, centre):
    """Which input positions influence the output at ``centre`` after ``loops`` passes."""
    x = x.clone().requires_grad_()
    y = x
    for _ in range(loops):
        y = block(y)
    y[(0, slice(None), *centre)].sum().backward()
    return x.grad[0].abs().sum(0) > 0


@pytest.fixture
def active_block():
    torch.manual_seed(0)
    block = CrissCrossAttention(8, reduction=2).double()
    with torch.no_grad():
        block.gamma.fill_(1.0)
    return block


def test_one_loop_sees_only_row_and_column(active_block):
    height, width, centre = 6, 7, (2, 4)
    seen = _dependence(active_block, torch.randn(1, 8, height, width, dtype=torch.float64), 1, centre)
    expected = criss_cross_mask(height, width)[centre[0] * width + centre[1]].reshape(height, width)
    assert torch.equal(seen, expected)
    assert seen.sum() == height + width - 1


def test_two_loops_see_every_pixel(active_block):
    for centre in [(0, 0), (2, 4), (5, 6)]:
        seen = _dependence(active_block, torch.randn(1, 8, 6, 7, dtype=torch.float64), 2, centre)
        assert seen.all(), centre


def test_3d_receptive_field_grows_line_plane_volume():
    torch.manual_seed(0)
    block = CrissCrossAttention3d(8, reduction=2).double()
    with torch.no_grad():
        block.gamma.fill_(1.0)
    shape, centre = (4, 5, 6), (1, 2, 3)
    x = torch.randn(1, 8, *shape, dtype=torch.float64)
    grids = torch.meshgrid(*(torch.arange(n) for n in shape), indexing="ij")
    differing = sum((g != c).long() for g, c in zip(grids, centre, strict=False))
    for loops in (1, 2, 3):
        seen = _dependence(block, x, loops, centre)
        assert torch.equal(seen, differing <= loops), loops


def test_non_local_sees_every_pixel_in_one_pass():
    torch.manual_seed(0)
    block = NonLocal2d(8, reduction=2).double()
    with torch.no_grad():
        block.gamma.fill_(1.0)
    assert _dependence(block, torch.randn(1, 8, 5, 6, dtype=torch.float64), 1, (1, 1)).all()
