"""mmsegmentation CCNet checkpoints against a functional forward of mmseg's ResNetV1c + CCHead."""

import pytest
import torch
import torch.nn.functional as F
from tests.interop.state_dicts import bottleneck_stages

from ccnet.interop import WeightsMismatchError, detect_format, load_backbone, load_pretrained
from ccnet.interop.mmseg import convert_mmseg
from ccnet.ops import criss_cross_attention_reference

NUM_CLASSES = 4
R50 = (3, 4, 6, 3)
R101 = (3, 4, 23, 3)
CLASSES = ("road", "car", "sky", "tree")
PALETTE = [[128, 64, 128], [0, 0, 142], [70, 130, 180], [107, 142, 35]]


def _mmseg_shapes(blocks=R50, num_classes=NUM_CLASSES) -> dict[str, tuple[tuple[int, ...], str]]:
    """key -> (shape, kind) for every tensor of an mmseg ccnet_r50-d8 / r101-d8 checkpoint."""
    shapes: dict[str, tuple[tuple[int, ...], str]] = {}

    def conv(name, cout, cin, k, bias=False):
        shapes[f"{name}.weight"] = ((cout, cin, k, k), "conv")
        if bias:
            shapes[f"{name}.bias"] = ((cout,), "bias")

    def bn(name, c, kind="bn"):
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.{leaf}"] = ((c,), f"{kind}_{leaf}")
        shapes[f"{name}.num_batches_tracked"] = ((), "count")

    conv("backbone.stem.0", 32, 3, 3)
    bn("backbone.stem.1", 32)
    conv("backbone.stem.3", 32, 32, 3)
    bn("backbone.stem.4", 32)
    conv("backbone.stem.6", 64, 32, 3)
    bn("backbone.stem.7", 64)
    bottleneck_stages(conv, bn, blocks, inplanes=64, prefix="backbone.", last_norm={"kind": "bnlast"})
    conv("decode_head.convs.0.conv", 512, 2048, 3)
    bn("decode_head.convs.0.bn", 512)
    conv("decode_head.cca.query_conv", 64, 512, 1, bias=True)
    conv("decode_head.cca.key_conv", 64, 512, 1, bias=True)
    conv("decode_head.cca.value_conv", 512, 512, 1, bias=True)
    shapes["decode_head.cca.gamma.scale"] = ((), "gamma")
    conv("decode_head.convs.1.conv", 512, 512, 3)
    bn("decode_head.convs.1.bn", 512)
    conv("decode_head.conv_cat.conv", 512, 2560, 3)
    bn("decode_head.conv_cat.bn", 512)
    conv("decode_head.conv_seg", num_classes, 512, 1, bias=True)
    conv("auxiliary_head.convs.0.conv", 256, 1024, 3)
    bn("auxiliary_head.convs.0.bn", 256)
    conv("auxiliary_head.conv_seg", num_classes, 256, 1, bias=True)
    return shapes


def _random_state(shapes, seed=0):
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, (shape, kind) in shapes.items():
        if kind == "conv":
            fan_in = shape[1] * shape[2] * shape[3]
            value = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
        elif kind in ("bn_weight", "bnlast_weight"):
            sign = torch.where(torch.rand(shape, generator=gen) < 0.3, -1.0, 1.0)
            value = sign * (0.3 + 0.5 * torch.rand(shape, generator=gen)) * (0.25 if kind == "bnlast_weight" else 1)
        elif kind.endswith("running_var"):
            value = 0.5 + torch.rand(shape, generator=gen)
        elif kind == "gamma":
            value = torch.tensor(0.6)
        elif kind == "count":
            value = torch.tensor(80000)
        else:
            value = torch.randn(shape, generator=gen) * 0.1
        state[key] = value
    return state


def _bn(sd, name, x, relu=True):
    y = F.batch_norm(x, sd[f"{name}.running_mean"], sd[f"{name}.running_var"], sd[f"{name}.weight"],
                     sd[f"{name}.bias"], training=False, eps=1e-5)
    return F.relu(y) if relu else y


def _mmseg_forward(sd, x, blocks=R50, recurrence=2):
    """ResNetV1c-D8 (pytorch style, contract dilation, no ceil mode) + CCHead + FCN aux head."""
    for conv, norm, stride in (("0", "1", 2), ("3", "4", 1), ("6", "7", 1)):
        x = _bn(sd, f"backbone.stem.{norm}", F.conv2d(x, sd[f"backbone.stem.{conv}.weight"], stride=stride, padding=1))
    x = F.max_pool2d(x, 3, 2, 1)
    stages = []
    for stage, n in enumerate(blocks, start=1):
        dilation = {1: 1, 2: 1, 3: 2, 4: 4}[stage]
        for j in range(n):
            p = f"backbone.layer{stage}.{j}"
            stride = 2 if (stage == 2 and j == 0) else 1
            d = dilation // 2 if (j == 0 and dilation > 1) else dilation
            out = _bn(sd, f"{p}.bn1", F.conv2d(x, sd[f"{p}.conv1.weight"]))
            out = _bn(sd, f"{p}.bn2", F.conv2d(out, sd[f"{p}.conv2.weight"], stride=stride, padding=d, dilation=d))
            out = _bn(sd, f"{p}.bn3", F.conv2d(out, sd[f"{p}.conv3.weight"]), relu=False)
            if j == 0:
                x = _bn(sd, f"{p}.downsample.1", F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride),
                        relu=False)
            x = F.relu(out + x)
        stages.append(x)
    c3, c4 = stages[2:]
    h = "decode_head"
    out = _bn(sd, f"{h}.convs.0.bn", F.conv2d(c4, sd[f"{h}.convs.0.conv.weight"], padding=1))
    for _ in range(recurrence):
        q = F.conv2d(out, sd[f"{h}.cca.query_conv.weight"], sd[f"{h}.cca.query_conv.bias"])
        k = F.conv2d(out, sd[f"{h}.cca.key_conv.weight"], sd[f"{h}.cca.key_conv.bias"])
        v = F.conv2d(out, sd[f"{h}.cca.value_conv.weight"], sd[f"{h}.cca.value_conv.bias"])
        out = sd[f"{h}.cca.gamma.scale"] * criss_cross_attention_reference(q, k, v) + out
    out = _bn(sd, f"{h}.convs.1.bn", F.conv2d(out, sd[f"{h}.convs.1.conv.weight"], padding=1))
    out = _bn(sd, f"{h}.conv_cat.bn", F.conv2d(torch.cat([c4, out], 1), sd[f"{h}.conv_cat.conv.weight"], padding=1))
    logits = F.conv2d(out, sd[f"{h}.conv_seg.weight"], sd[f"{h}.conv_seg.bias"])
    aux = _bn(sd, "auxiliary_head.convs.0.bn", F.conv2d(c3, sd["auxiliary_head.convs.0.conv.weight"], padding=1))
    aux = F.conv2d(aux, sd["auxiliary_head.conv_seg.weight"], sd["auxiliary_head.conv_seg.bias"])
    return logits, aux


def _assert_close(actual, expected, rel=1e-4):
    scale = expected.abs().max().item()
    assert scale > 0
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * scale)


@pytest.fixture(scope="module")
def mmseg_sd():
    return _random_state(_mmseg_shapes())


def test_mmseg_r50_matches_functional_forward(mmseg_sd, tmp_path):
    path = tmp_path / "ccnet_r50-d8_512x1024_40k_cityscapes.pth"
    torch.save({"meta": {"CLASSES": CLASSES, "PALETTE": PALETTE, "mmcv_version": "1.1.5"},
                "state_dict": mmseg_sd}, path)
    model = load_pretrained(path)
    assert model.config["backbone"] == "resnet50" and model.config["stem_widths"] == [32, 32, 64]
    assert not model.config["ceil_mode"] and model.config["dilation_schedule"] == "contract"
    assert model.class_names == CLASSES and model.palette == tuple(map(tuple, PALETTE))
    captured = {}
    hooks = [model.head.register_forward_hook(lambda m, i, o: captured.__setitem__("logits", o[0])),
             model.backbone.register_forward_hook(lambda m, i, o: captured.__setitem__("stages", o))]
    x = torch.randn(2, 3, 63, 97, generator=torch.Generator().manual_seed(3)) * 2  # 63: ceil_mode matters
    try:
        with torch.no_grad():
            expected, expected_aux = _mmseg_forward(mmseg_sd, x)
            out = model(x)["out"]
            aux = model.aux_head(captured["stages"][2])
    finally:
        for hook in hooks:
            hook.remove()
    assert expected.shape[-2:] == (8, 13)
    _assert_close(captured["logits"], expected)
    _assert_close(aux, expected_aux)
    _assert_close(out, F.interpolate(expected, size=(63, 97), mode="bilinear", align_corners=False))
    assert model.head.cca.gamma.shape == (1,) and model.head.cca.gamma.item() == pytest.approx(0.6)


def test_mmseg_1x_meta_and_old_gamma_key(mmseg_sd):
    sd = {k: v for k, v in mmseg_sd.items() if not k.endswith("num_batches_tracked")}
    sd["decode_head.cca.gamma"] = sd.pop("decode_head.cca.gamma.scale").reshape(1)
    wrapped = {"meta": {"dataset_meta": {"classes": list(CLASSES), "palette": PALETTE}}, "state_dict": sd}
    model = load_pretrained(wrapped)
    assert model.class_names == CLASSES and model.palette[1] == (0, 0, 142)
    assert model.head.cca.gamma.item() == pytest.approx(0.6)
    assert model.mean == pytest.approx((123.675, 116.28, 103.53))
    backbone = load_backbone(wrapped)  # the backbone alone, heads ignored
    assert backbone.stem == "deep" and not backbone.maxpool.ceil_mode and backbone.dilation_schedule == "contract"
    torch.testing.assert_close(backbone.conv2.weight, sd["backbone.stem.3.weight"])


def test_mmseg_r101_detected_from_layer3_blocks():
    shapes = _mmseg_shapes(R101)
    state = {k: torch.empty(0) for k in shapes}
    assert detect_format(state) == "mmseg"
    converted = convert_mmseg(state, None, "r101.pth")
    assert converted.arch == "resnet101" and converted.preset == "ccnet_mmseg_r101_d8"
    assert converted.origin["backbone.conv3.weight"] == "backbone.stem.6.weight"
    assert converted.origin["head.bottleneck.3.weight"] == "decode_head.conv_seg.weight"
    assert converted.origin["aux_head.1.running_var"] == "auxiliary_head.convs.0.bn.running_var"
    assert convert_mmseg({k: torch.empty(0) for k in _mmseg_shapes(R50)}, None, "x").arch == "resnet50"


def test_mmseg_foreign_head_reported(mmseg_sd):
    sd = dict(mmseg_sd)
    sd["decode_head.psp_modules.0.1.conv.weight"] = torch.zeros(512, 2048, 1, 1)
    del sd["decode_head.conv_cat.bn.running_var"]
    with pytest.raises(WeightsMismatchError) as info:
        load_pretrained(sd)
    assert info.value.unexpected == ["decode_head.psp_modules.0.1.conv.weight"]
    assert info.value.missing == ["decode_head.conv_cat.bn.running_var (model: head.bottleneck.1.running_var)"]
