"""torchvision ImageNet ResNets as backbones: stage outputs equal to a functional forward that
follows torchvision's ResNet (plain and with ``replace_stride_with_dilation``)."""

import pytest
import torch
import torch.nn.functional as F
from tests.interop.state_dicts import bottleneck_stages, random_conv, random_norm

from ccnet.interop import WeightsMismatchError, detect_format, init_backbone_from, load_backbone
from ccnet.models import CCNet, ResNet

LAYERS = (3, 4, 6, 3)


def _torchvision_resnet50_state(seed=0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    sd = {}

    def conv(name, cout, cin, k):
        random_conv(sd, gen, name, cout, cin, k)

    def bn(name, c, scale=1.0):
        random_norm(sd, gen, name, c, scale, count=True)

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    bottleneck_stages(conv, bn, LAYERS, inplanes=64, last_norm={"scale": 0.3})
    sd["fc.weight"] = torch.randn(1000, 2048, generator=gen) * 0.01
    sd["fc.bias"] = torch.zeros(1000)
    return sd


def _bn(sd, name, x):
    return F.batch_norm(x, sd[f"{name}.running_mean"], sd[f"{name}.running_var"], sd[f"{name}.weight"],
                        sd[f"{name}.bias"], training=False, eps=1e-5)


def _torchvision_forward(sd, x, replace_stride_with_dilation=(False, False, False)):
    """torchvision.models.resnet50(replace_stride_with_dilation=...) up to layer4, functionally."""
    x = F.relu(_bn(sd, "bn1", F.conv2d(x, sd["conv1.weight"], stride=2, padding=3)))
    x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
    dilation = 1
    outs = []
    for stage, (n, stride, dilate) in enumerate(zip(LAYERS, (1, 2, 2, 2), (False, *replace_stride_with_dilation),
                                                    strict=True), start=1):
        previous_dilation = dilation
        if dilate:
            dilation *= stride
            stride = 1
        for j in range(n):
            p = f"layer{stage}.{j}"
            s, d = (stride, previous_dilation) if j == 0 else (1, dilation)
            out = F.relu(_bn(sd, f"{p}.bn1", F.conv2d(x, sd[f"{p}.conv1.weight"])))
            out = F.relu(_bn(sd, f"{p}.bn2", F.conv2d(out, sd[f"{p}.conv2.weight"], stride=s, padding=d, dilation=d)))
            out = _bn(sd, f"{p}.bn3", F.conv2d(out, sd[f"{p}.conv3.weight"]))
            identity = x
            if f"{p}.downsample.0.weight" in sd:
                identity = _bn(sd, f"{p}.downsample.1", F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=s))
            x = F.relu(out + identity)
        outs.append(x)
    return outs


@pytest.fixture(scope="module")
def tv_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tv") / "resnet50-11ad3fa6.pth"
    torch.save(_torchvision_resnet50_state(), path)
    return path


@pytest.mark.parametrize(("output_stride", "dilation"), [(32, (False, False, False)), (16, (False, False, True)),
                                                         (8, (False, True, True))])
def test_torchvision_stage_outputs_equal(tv_file, output_stride, dilation):
    sd = torch.load(tv_file, weights_only=True)
    backbone = load_backbone(tv_file, output_stride=output_stride)
    assert isinstance(backbone, ResNet) and backbone.stem == "standard" and not backbone.maxpool.ceil_mode
    x = torch.randn(1, 3, 63, 79, generator=torch.Generator().manual_seed(output_stride))  # 63: ceil_mode matters
    with torch.no_grad():
        got = backbone(x)
        expected = _torchvision_forward(sd, x, dilation)
    for a, b in zip(got, expected, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())


def test_torchvision_init_backbone_from(tv_file):
    sd = torch.load(tv_file, weights_only=True)
    assert detect_format(sd) == "torchvision"
    model = CCNet(3, backbone="resnet50", stem="standard", ceil_mode=False, head_channels=16, aux_channels=16)
    assert init_backbone_from(model, tv_file) is model
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, sd[key]), key


def test_torchvision_into_deep_stem_reports_keys(tv_file):
    model = CCNet(3, backbone="resnet50", head_channels=16, aux_channels=16)  # deep stem
    with pytest.raises(WeightsMismatchError) as info:
        init_backbone_from(model, tv_file, format="torchvision")
    error = info.value
    assert {"conv2.weight", "conv3.weight", "bn2.weight", "bn3.running_var"} <= set(error.missing)
    assert ("conv1.weight", (64, 3, 7, 7), (64, 3, 3, 3)) in error.shape_conflicts
    assert str(tv_file) in str(error) and "conv1.weight: file [64, 3, 7, 7] vs model [64, 3, 3, 3]" in str(error)


def test_torchvision_arch_checked(tv_file):
    with pytest.raises(WeightsMismatchError, match="arch='resnet101' was asked for but the file holds a resnet50"):
        load_backbone(tv_file, arch="resnet101")
