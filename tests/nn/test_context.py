"""The context modules the paper compares RCCA with (PPM, ASPP, non-local), the head frame that
holds them, and CCNet's ``context=`` switch."""

from __future__ import annotations

import pytest
import torch

from ccnet.models import CCNet
from ccnet.nn import ASPP, CONTEXTS, ContextHead, NonLocal2d, PyramidPooling, RCCAHead, build_context_module

SMALL = dict(backbone="resnet18", output_stride=16, stem_widths=(8, 8, 16), head_channels=16, aux=False)


@pytest.mark.parametrize("module", [PyramidPooling(16), PyramidPooling(16, bins=(1, 3)), ASPP(16, rates=(1, 2, 3))],
                         ids=["ppm", "ppm-1-3", "aspp"])
@pytest.mark.parametrize("size", [(7, 5), (1, 1), (12, 12)])
def test_pyramid_modules_keep_the_shape_and_train(module, size):
    x = torch.randn(2, 16, *size, requires_grad=True)
    out = module.train()(x)
    assert out.shape == x.shape
    out.square().mean().backward()
    assert x.grad is not None and all(p.grad is not None for p in module.parameters())


@pytest.mark.parametrize("module", [PyramidPooling(8, bins=(1, 2)), ASPP(8, rates=(1,))], ids=["ppm", "aspp"])
def test_pyramid_modules_see_the_whole_map_through_their_image_pooling(module):
    # The 1x1 bin (PPM) and the image-level branch (ASPP) give every pixel the map's average:
    # changing one far corner changes the output at the opposite corner (a 3x3 conv alone would not).
    module.eval()
    x = torch.randn(1, 8, 12, 12)
    moved = x.clone()
    moved[..., 11, 11] += 5.0
    with torch.no_grad():
        assert not torch.allclose(module(x)[..., 0, 0], module(moved)[..., 0, 0])


def test_pyramid_pooling_matches_its_definition():
    torch.manual_seed(0)
    ppm = PyramidPooling(4, bins=(1,)).eval()
    x = torch.randn(1, 4, 5, 6)
    branch = ppm.stages[0](x.mean((2, 3), keepdim=True)).expand(-1, -1, 5, 6)
    expected = ppm.bottleneck(torch.cat([x, branch], 1))
    torch.testing.assert_close(ppm(x), expected)


def test_aspp_rates_and_bins_are_checked():
    with pytest.raises(ValueError, match="rates must be positive"):
        ASPP(8, rates=(0, 2))
    with pytest.raises(ValueError, match="bins must be positive"):
        PyramidPooling(8, bins=())
    with pytest.raises(ValueError, match="unknown context module 'psp'"):
        build_context_module("psp", 8)


def test_context_head_without_a_module_is_the_rcca_head_without_loops():
    torch.manual_seed(0)
    rcca = RCCAHead(32, 5, channels=16, recurrence=0).eval()
    plain = ContextHead(32, 5, None, channels=16).eval()
    missing, unexpected = plain.load_state_dict(rcca.state_dict(), strict=False)
    assert not missing and all(k.startswith("cca.") for k in unexpected)
    x = torch.randn(2, 32, 6, 7)
    with torch.no_grad():
        torch.testing.assert_close(plain(x)[0], rcca(x)[0])


@pytest.mark.parametrize("context", CONTEXTS)
def test_ccnet_takes_every_context_module_at_the_same_place(context):
    model = CCNet(7, context=context, consistency=True, aspp_rates=(1, 2, 3), **SMALL)
    head_type = RCCAHead if context == "rcca" else ContextHead
    assert type(model.head) is head_type
    if context == "nonlocal":
        assert isinstance(model.head.context, NonLocal2d)
    outputs = model.train()(torch.randn(2, 3, 64, 48))
    assert outputs["out"].shape == (2, 7, 64, 48) and outputs["embedding"].shape[1] == 16
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 65, 49))["out"].shape == (1, 7, 65, 49)
    assert model.recurrence == (2 if context == "rcca" else 0)


def test_rcca_keys_are_unchanged_by_the_context_switch():
    keys = set(CCNet(7, **SMALL).state_dict())
    head = {k for k in keys if k.startswith("head.")}
    assert {"head.cca.gamma", "head.cca.query_conv.weight", "head.conva.0.weight", "head.convb.1.running_var",
            "head.bottleneck.0.weight", "head.bottleneck.3.bias"} <= head
    assert not any(k.startswith("head.context") for k in head)


def test_unknown_context_in_the_config_names_the_key():
    from ccnet.config import Config, ConfigError, apply_overrides

    with pytest.raises(ConfigError, match=r"model\.context: 'psp' is not one of 'rcca', 'nonlocal', 'ppm'"):
        apply_overrides(Config(), ["model.context=psp"])
