"""Official CCNet checkpoints (InPlace-ABN) and the deep-stem ImageNet ResNet, against a functional
forward written from the description of the original code."""

import collections

import pytest
import torch
import torch.nn.functional as F
from tests.interop.state_dicts import bottleneck_stages, random_conv, random_norm

from ccnet.interop import WeightsMismatchError, convert, load_backbone, load_pretrained
from ccnet.models import CCNet
from ccnet.ops import criss_cross_attention_reference

NUM_CLASSES = 5
BLOCKS = (3, 4, 23, 3)
EPS = 1e-5
BGR_MEAN = (104.00698793, 116.66876762, 122.67891434)


def _official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Every key of the official ResNet-101 CCNet, random values, random norm statistics and
    InPlace-ABN weights of both signs."""
    gen = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = collections.OrderedDict()

    def conv(name, cout, cin, k, bias=False):
        random_conv(sd, gen, name, cout, cin, k, bias)

    def abn(name, c, scale=1.0):
        random_norm(sd, gen, name, c, scale)

    conv("conv1", 64, 3, 3)
    abn("bn1", 64)
    conv("conv2", 64, 64, 3)
    abn("bn2", 64)
    conv("conv3", 128, 64, 3)
    abn("bn3", 128)
    bottleneck_stages(conv, abn, BLOCKS, inplanes=128, last_norm={"scale": 0.25})
    conv("head.conva.0", 512, 2048, 3)
    abn("head.conva.1", 512)
    conv("head.cca.query_conv", 64, 512, 1, bias=True)
    conv("head.cca.key_conv", 64, 512, 1, bias=True)
    conv("head.cca.value_conv", 512, 512, 1, bias=True)
    sd["head.cca.gamma"] = torch.tensor([0.7])
    conv("head.convb.0", 512, 512, 3)
    abn("head.convb.1", 512)
    conv("head.bottleneck.0", 512, 2560, 3)
    abn("head.bottleneck.1", 512)
    conv("head.bottleneck.3", NUM_CLASSES, 512, 1, bias=True)
    conv("dsn.0", 512, 1024, 3, bias=True)
    abn("dsn.1", 512)
    conv("dsn.3", NUM_CLASSES, 512, 1, bias=True)
    return sd


def _norm(sd, name, x, *, inplace_abn=True, leaky=False):
    weight = sd[f"{name}.weight"]
    weight = weight.abs() + EPS if inplace_abn else weight
    y = F.batch_norm(x, sd[f"{name}.running_mean"], sd[f"{name}.running_var"], weight, sd[f"{name}.bias"],
                     training=False, eps=EPS)
    return F.leaky_relu(y, 0.01) if leaky else y


def _backbone(sd, x, *, inplace_abn=True):
    """Deep stem + ceil-mode max-pool, ResNet-101 with stride on the 3x3 conv, layer3 dilation 2
    and layer4 dilation 4 on every block. Returns the layer3 and layer4 outputs."""
    for i in (1, 2, 3):
        x = F.conv2d(x, sd[f"conv{i}.weight"], stride=2 if i == 1 else 1, padding=1)
        x = F.relu(_norm(sd, f"bn{i}", x, inplace_abn=inplace_abn))
    x = F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True)
    outs = []
    for stage, blocks in enumerate(BLOCKS, start=1):
        dilation = {1: 1, 2: 1, 3: 2, 4: 4}[stage]
        for j in range(blocks):
            p = f"layer{stage}.{j}"
            stride = 2 if (stage == 2 and j == 0) else 1
            out = F.relu(_norm(sd, f"{p}.bn1", F.conv2d(x, sd[f"{p}.conv1.weight"]), inplace_abn=inplace_abn))
            out = F.conv2d(out, sd[f"{p}.conv2.weight"], stride=stride, padding=dilation, dilation=dilation)
            out = F.relu(_norm(sd, f"{p}.bn2", out, inplace_abn=inplace_abn))
            out = _norm(sd, f"{p}.bn3", F.conv2d(out, sd[f"{p}.conv3.weight"]), inplace_abn=inplace_abn)
            if f"{p}.downsample.0.weight" in sd:
                x = _norm(sd, f"{p}.downsample.1", F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride),
                          inplace_abn=inplace_abn)
            x = F.relu(out + x)
        outs.append(x)
    return outs


def _official_forward(sd, x_bgr, *, inplace_abn=True, recurrence=2):
    """Logits at 1/8 and the dsn logits, as the official model computes them."""
    _, _, c3, c4 = _backbone(sd, x_bgr, inplace_abn=inplace_abn)
    out = _norm(sd, "head.conva.1", F.conv2d(c4, sd["head.conva.0.weight"], padding=1), inplace_abn=inplace_abn,
                leaky=True)
    for _ in range(recurrence):
        q = F.conv2d(out, sd["head.cca.query_conv.weight"], sd["head.cca.query_conv.bias"])
        k = F.conv2d(out, sd["head.cca.key_conv.weight"], sd["head.cca.key_conv.bias"])
        v = F.conv2d(out, sd["head.cca.value_conv.weight"], sd["head.cca.value_conv.bias"])
        out = sd["head.cca.gamma"] * criss_cross_attention_reference(q, k, v) + out
    out = _norm(sd, "head.convb.1", F.conv2d(out, sd["head.convb.0.weight"], padding=1), inplace_abn=inplace_abn,
                leaky=True)
    out = F.conv2d(torch.cat([c4, out], 1), sd["head.bottleneck.0.weight"], padding=1)
    out = _norm(sd, "head.bottleneck.1", out, inplace_abn=inplace_abn, leaky=True)
    logits = F.conv2d(out, sd["head.bottleneck.3.weight"], sd["head.bottleneck.3.bias"])
    dsn = F.conv2d(c3, sd["dsn.0.weight"], sd["dsn.0.bias"], padding=1)
    dsn = _norm(sd, "dsn.1", dsn, inplace_abn=inplace_abn, leaky=True)
    dsn = F.conv2d(dsn, sd["dsn.3.weight"], sd["dsn.3.bias"])
    return logits, dsn


def _assert_close(actual, expected, rel=1e-4):
    scale = expected.abs().max().item()
    assert scale > 0
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * scale)


@pytest.fixture(scope="module")
def official_sd():
    return _official_state_dict()


@pytest.fixture(scope="module")
def official_file(official_sd, tmp_path_factory):
    """The checkpoint as the official code writes it: DataParallel prefix, a loss buffer along."""
    path = tmp_path_factory.mktemp("official") / "CS_scenes_60000.pth"
    state = collections.OrderedDict((f"module.{k}", v) for k, v in official_sd.items())
    state["module.criterion.criterion1.criterion.weight"] = torch.ones(NUM_CLASSES)
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def official_model(official_file):
    return load_pretrained(official_file)


def test_official_matches_functional_forward(official_model, official_sd):
    model = official_model
    assert isinstance(model, CCNet) and not model.training
    assert model.config["backbone"] == "resnet101" and model.num_classes == NUM_CLASSES
    captured = {}
    hooks = [model.head.register_forward_hook(lambda m, i, o: captured.__setitem__("logits", o[0])),
             model.backbone.register_forward_hook(lambda m, i, o: captured.__setitem__("stages", o))]
    # 95 rows: a max-pool without ceil_mode would give 12 rows of logits, not 13.
    x_bgr = torch.randn(1, 3, 95, 129, generator=torch.Generator().manual_seed(1)) * 50
    try:
        with torch.no_grad():
            expected, expected_dsn = _official_forward(official_sd, x_bgr)
            out = model(x_bgr.flip(1))["out"]  # the converted model takes RGB: the channels reversed
            dsn = model.aux_head(captured["stages"][2])
    finally:
        for hook in hooks:
            hook.remove()
    assert captured["logits"].shape == (1, NUM_CLASSES, 13, 17)
    _assert_close(captured["logits"], expected)
    _assert_close(dsn, expected_dsn)
    _assert_close(out, F.interpolate(expected, size=(95, 129), mode="bilinear", align_corners=True))
    # The converted model records the normalisation the weights expect (BGR mean, reversed; no std).
    assert model.mean == pytest.approx(BGR_MEAN[::-1]) and model.std == (1.0, 1.0, 1.0)
    assert model.pretrained_source["format"] == "official"


def test_official_norm_weights_are_inplace_abn_scales(official_model, official_sd):
    # InPlace-ABN scales by |w| + eps: a BatchNorm with the stored weight would flip these channels.
    stored = official_sd["head.bottleneck.1.weight"]
    assert (stored < 0).any()
    torch.testing.assert_close(official_model.head.bottleneck[1].weight.detach(), stored.abs() + EPS)
    stored = official_sd["layer3.5.bn2.weight"]
    torch.testing.assert_close(official_model.backbone.layer3[5].bn2.weight.detach(), stored.abs() + EPS)
    torch.testing.assert_close(official_model.backbone.conv1.weight.detach(), official_sd["conv1.weight"].flip(1))


def test_official_ceil_mode_feature_size(official_model):
    backbone = official_model.backbone
    with torch.no_grad():
        stride8 = backbone.layer2(backbone.layer1(backbone.forward_stem(torch.zeros(1, 3, 96, 128))))
    assert stride8.shape[-2:] == (13, 17)  # 12x16 without ceil_mode; layer3/4 keep this size


def test_official_convert_round_trip(official_model, official_file, tmp_path):
    out = convert(official_file, tmp_path / "ccnet_official")
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    again = CCNet.from_pretrained(out)
    for (k, a), (k2, b) in zip(official_model.state_dict().items(), again.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b), k
    assert again.mean == official_model.mean and again.std == official_model.std
    assert again.config == official_model.config


def test_official_num_classes_checked(official_file):
    with pytest.raises(WeightsMismatchError, match=r"5 classes .*head\.bottleneck\.3\.weight.*num_classes=19"):
        load_pretrained(official_file, num_classes=19)


def test_official_wrong_shape_reported_by_name(official_sd):
    sd = dict(official_sd)
    sd["head.convb.0.weight"] = torch.zeros(512, 256, 3, 3)
    sd["dsn.7.weight"] = torch.zeros(3)
    del sd["head.cca.gamma"]
    with pytest.raises(WeightsMismatchError) as info:
        load_pretrained(sd, format="official")
    error = info.value
    assert error.missing == ["head.cca.gamma"]
    assert error.unexpected == ["dsn.7.weight"]
    assert error.shape_conflicts == [("head.convb.0.weight", (512, 256, 3, 3), (512, 512, 3, 3))]
    message = str(error)
    assert "1 missing (head.cca.gamma)" in message and "dsn.7.weight" in message
    assert "head.convb.0.weight: file [512, 256, 3, 3] vs model [512, 512, 3, 3]" in message


def test_official_imagenet_backbone(official_sd, tmp_path):
    """resnet101-imagenet.pth: the same deep-stem layout with plain BatchNorm and a classifier."""
    sd = {k: v for k, v in official_sd.items() if not k.startswith(("head.", "dsn."))}
    sd["fc.weight"] = torch.randn(1000, 2048)
    sd["fc.bias"] = torch.randn(1000)
    path = tmp_path / "resnet101-imagenet.pth"
    torch.save(sd, path)
    backbone = load_backbone(path, output_stride=8)
    assert backbone.stem == "deep" and backbone.maxpool.ceil_mode
    x = torch.randn(1, 3, 33, 41, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        _, _, c3, c4 = backbone(x)
        e3, e4 = _backbone(sd, x, inplace_abn=False)[2:]
    _assert_close(c3, e3)
    _assert_close(c4, e4)
    with pytest.raises(WeightsMismatchError, match="resnet50"):
        load_backbone(path, arch="resnet50")
