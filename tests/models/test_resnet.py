"""Tests for the dilated ResNet backbone (ccnet.models.resnet)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ccnet.models.resnet import (
    RESNETS,
    BasicBlock,
    Bottleneck,
    ResNet,
    build_resnet,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
)
from ccnet.nn.norm import FrozenBatchNorm2d
from ccnet.nn.sync_batchnorm import SyncBatchNorm

STAGE_STRIDES = {8: (1, 2, 1, 1), 16: (1, 2, 2, 1), 32: (1, 2, 2, 2)}
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
TORCHVISION_BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3), "resnet50": (3, 4, 6, 3),
                      "resnet101": (3, 4, 23, 3), "resnet152": (3, 8, 36, 3)}


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _pool_out(size: int, ceil_mode: bool) -> int:
    """3x3 / stride 2 / pad 1 max-pool, with PyTorch's rule that the last window must start in bounds."""
    if not ceil_mode:
        return (size + 2 - 3) // 2 + 1
    out = math.ceil((size + 2 - 3) / 2) + 1
    if (out - 1) * 2 >= size + 1:
        out -= 1
    return out


def _expected_sizes(h: int, w: int, stem: str, ceil_mode: bool, output_stride: int) -> list[tuple[int, int]]:
    sizes = []
    for size in (h, w):
        size = _conv_out(size, 7, 2, 3) if stem == "standard" else _conv_out(size, 3, 2, 1)
        size = _pool_out(size, ceil_mode)
        per_stage = []
        for stride in STAGE_STRIDES[output_stride]:
            size = _conv_out(size, 3, stride, 1)  # dilation d with padding d gives the same size
            per_stage.append(size)
        sizes.append(per_stage)
    return list(zip(*sizes, strict=True))


def _randomize(model: nn.Module, seed: int = 0) -> None:
    """Random conv weights and random norm affine parameters / running statistics."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in))
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=gen) * 0.5 + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)


def _torchvision_keys(layers: tuple[int, ...], bottleneck: bool) -> list[str]:
    """torchvision ResNet state-dict keys (in order) without ``fc.*``."""

    def bn(prefix: str) -> list[str]:
        return [f"{prefix}.{k}" for k in BN_KEYS]

    keys = ["conv1.weight", *bn("bn1")]
    convs = 3 if bottleneck else 2
    in_ch = 64
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True), start=1):
        out_ch = planes * (4 if bottleneck else 1)
        for i in range(blocks):
            p = f"layer{stage}.{i}"
            for c in range(1, convs + 1):
                keys += [f"{p}.conv{c}.weight", *bn(f"{p}.bn{c}")]
            if i == 0 and (stage > 1 or in_ch != out_ch):
                keys += [f"{p}.downsample.0.weight", *bn(f"{p}.downsample.1")]
        in_ch = out_ch
    return keys


class _RecordingDict(dict):
    """A dict that remembers which keys were read."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> torch.Tensor:
        self.read.add(key)
        return super().__getitem__(key)


def _ref_bn(x: torch.Tensor, sd: dict, prefix: str) -> torch.Tensor:
    return F.batch_norm(x, sd[f"{prefix}.running_mean"], sd[f"{prefix}.running_var"], sd[f"{prefix}.weight"],
                        sd[f"{prefix}.bias"], training=False, momentum=0.0, eps=1e-5)


def _ref_bottleneck(x: torch.Tensor, sd: dict, p: str, stride: int, dilation: int,
                    downsample: bool) -> torch.Tensor:
    out = F.relu(_ref_bn(F.conv2d(x, sd[f"{p}.conv1.weight"]), sd, f"{p}.bn1"))
    out = F.conv2d(out, sd[f"{p}.conv2.weight"], stride=stride, padding=dilation, dilation=dilation)
    out = F.relu(_ref_bn(out, sd, f"{p}.bn2"))
    out = _ref_bn(F.conv2d(out, sd[f"{p}.conv3.weight"]), sd, f"{p}.bn3")
    if downsample:
        x = _ref_bn(F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride), sd, f"{p}.downsample.1")
    return F.relu(out + x)


def _ref_basicblock(x: torch.Tensor, sd: dict, p: str, stride: int, dilation: int,
                    downsample: bool) -> torch.Tensor:
    assert dilation == 1  # torchvision's BasicBlock has no dilation
    out = F.relu(_ref_bn(F.conv2d(x, sd[f"{p}.conv1.weight"], stride=stride, padding=1), sd, f"{p}.bn1"))
    out = _ref_bn(F.conv2d(out, sd[f"{p}.conv2.weight"], padding=1), sd, f"{p}.bn2")
    if downsample:
        x = _ref_bn(F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride), sd, f"{p}.downsample.1")
    return F.relu(out + x)


def _reference_resnet(x: torch.Tensor, sd: dict,
                      replace_stride_with_dilation: tuple[bool, bool, bool] = (False, False, False),
                      layers: tuple[int, ...] = (3, 4, 6, 3), bottleneck: bool = True) -> list[torch.Tensor]:
    """Functional re-statement of torchvision's ResNet forward (``torchvision.models.resnet``)."""
    block, expansion = (_ref_bottleneck, 4) if bottleneck else (_ref_basicblock, 1)
    x = F.relu(_ref_bn(F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), sd, "bn1"))
    x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
    inplanes, dilation, outs = 64, 1, []
    dilates = (False, *replace_stride_with_dilation)
    for stage, (planes, blocks, stride, dilate) in enumerate(
        zip((64, 128, 256, 512), layers, (1, 2, 2, 2), dilates, strict=True), start=1
    ):
        previous_dilation = dilation
        if dilate:
            dilation *= stride
            stride = 1
        downsample = stride != 1 or inplanes != planes * expansion
        x = block(x, sd, f"layer{stage}.0", stride, previous_dilation, downsample)
        inplanes = planes * expansion
        for i in range(1, blocks):
            x = block(x, sd, f"layer{stage}.{i}", 1, dilation, False)
        outs.append(x)
    return outs


def _dilations(stage: nn.Sequential) -> list[int]:
    return [blk.conv2.dilation[0] for blk in stage]


@pytest.fixture(scope="module", autouse=True)
def _single_thread():
    """Small inputs: one intra-op thread is as fast and immune to OpenMP spin-waits on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tv_resnet50_standard() -> ResNet:
    return resnet50(stem="standard", ceil_mode=False)


# ----------------------------------------------------------------------------------------------------
# shapes and strides
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("stem", ["standard", "deep"])
@pytest.mark.parametrize("ceil_mode", [True, False])
def test_output_shapes(output_stride: int, stem: str, ceil_mode: bool) -> None:
    model = resnet18(output_stride=output_stride, stem=stem, ceil_mode=ceil_mode).eval()
    assert model.output_stride == output_stride
    assert model.out_channels == (64, 128, 256, 512)
    with torch.no_grad():
        for h, w in [(97, 129), (33, 65), (8, 8), (1, 1), (30, 31)]:
            outs = model(torch.randn(1, 3, h, w))
            assert len(outs) == 4
            expected = _expected_sizes(h, w, stem, ceil_mode, output_stride)
            for out, channels, size in zip(outs, model.out_channels, expected, strict=True):
                assert out.shape == (1, channels, *size)


def test_ceil_mode_changes_shape() -> None:
    """Sanity check of the helper: for this size ceil_mode makes the pooled map one larger."""
    assert _expected_sizes(33, 47, "standard", True, 8)[0] == (9, 13)
    assert _expected_sizes(33, 47, "standard", False, 8)[0] == (9, 12)


def test_documented_shapes_bottleneck() -> None:
    with torch.no_grad():
        deep = resnet50(output_stride=8, stem="deep", ceil_mode=True).eval()
        outs = deep(torch.randn(1, 3, 97, 129))
        assert deep.out_channels == (256, 512, 1024, 2048)
        assert [tuple(o.shape) for o in outs] == [(1, 256, 25, 33), (1, 512, 13, 17), (1, 1024, 13, 17),
                                                  (1, 2048, 13, 17)]
        std = resnet50(output_stride=8, stem="standard", ceil_mode=False).eval()
        x = torch.randn(1, 3, 97, 129)
        assert std.relu(std.bn1(std.conv1(x))).shape[-2:] == (49, 65)
        outs = std(x)
        assert outs[0].shape[-2:] == (25, 33)
        assert outs[3].shape == (1, 2048, 13, 17)


def test_batch_and_in_channels() -> None:
    model = resnet18(in_channels=1, output_stride=32).eval()
    assert model.conv1.weight.shape == (64, 1, 3, 3)
    with torch.no_grad():
        outs = model(torch.randn(3, 1, 64, 64))
    assert outs[3].shape == (3, 512, 3, 3)  # 64 -> conv 32 -> ceil pool 17 -> 9 -> 5 -> 3


# ----------------------------------------------------------------------------------------------------
# torchvision compatibility (without torchvision)
# ----------------------------------------------------------------------------------------------------


def test_resnet50_keys_match_torchvision(tv_resnet50_standard: ResNet) -> None:
    assert list(tv_resnet50_standard.state_dict()) == _torchvision_keys((3, 4, 6, 3), bottleneck=True)


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet101", "resnet152"])
def test_other_keys_match_torchvision(name: str) -> None:
    model = build_resnet(name, stem="standard")
    bottleneck = name not in ("resnet18", "resnet34")
    assert list(model.state_dict()) == _torchvision_keys(TORCHVISION_BLOCKS[name], bottleneck)


@pytest.mark.parametrize(
    ("output_stride", "replace_stride_with_dilation"),
    [(32, (False, False, False)), (16, (False, False, True)), (8, (False, True, True))],
)
def test_matches_torchvision_reference(tv_resnet50_standard: ResNet, output_stride: int,
                                       replace_stride_with_dilation: tuple[bool, bool, bool]) -> None:
    model = resnet50(stem="standard", ceil_mode=False, output_stride=output_stride,
                     dilation_schedule="contract")
    _randomize(model, seed=output_stride)
    model = model.double().eval()
    sd = _RecordingDict(model.state_dict())
    # our state dict loads strictly into a fresh torchvision-layout model (same key set and shapes)
    tv_resnet50_standard.load_state_dict(sd, strict=True)
    sd.read.clear()

    x = torch.randn(2, 3, 35, 46, dtype=torch.float64)
    with torch.no_grad():
        ours = model(x)
        ref = _reference_resnet(x, sd, replace_stride_with_dilation)
    # the reference consumed exactly every parameter / statistic (only the BN counters are unused)
    assert sd.read == {k for k in sd if not k.endswith("num_batches_tracked")}
    for a, b in zip(ours, ref, strict=True):
        assert a.shape == b.shape
        assert b.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7 * b.abs().max().item())


@pytest.mark.parametrize("name", ["resnet18", "resnet34"])
def test_basicblock_matches_torchvision_reference(name: str) -> None:
    model = build_resnet(name, stem="standard", ceil_mode=False, output_stride=32)
    _randomize(model, seed=1)
    model = model.double().eval()
    sd = _RecordingDict(model.state_dict())
    x = torch.randn(2, 3, 35, 46, dtype=torch.float64)
    with torch.no_grad():
        ours = model(x)
        ref = _reference_resnet(x, sd, layers=TORCHVISION_BLOCKS[name], bottleneck=False)
    assert sd.read == {k for k in sd if not k.endswith("num_batches_tracked")}
    for a, b in zip(ours, ref, strict=True):
        assert b.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7 * b.abs().max().item())


def test_full_schedule_differs_from_torchvision_dilation() -> None:
    """The comparison above is sensitive to the dilation of the first block of a dilated stage."""
    model = resnet50(stem="standard", ceil_mode=False, output_stride=8, dilation_schedule="full")
    _randomize(model)
    model = model.double().eval()
    x = torch.randn(1, 3, 35, 46, dtype=torch.float64)
    with torch.no_grad():
        ours = model(x)
        ref = _reference_resnet(x, model.state_dict(), (False, True, True))
    torch.testing.assert_close(ours[1], ref[1])
    assert not torch.allclose(ours[2], ref[2], rtol=1e-3)


def test_parameter_counts_match_torchvision_minus_fc() -> None:
    fc_512, fc_2048 = 512 * 1000 + 1000, 2048 * 1000 + 1000
    expected = {
        "resnet18": 11_689_512 - fc_512,
        "resnet34": 21_797_672 - fc_512,
        "resnet50": 25_557_032 - fc_2048,
        "resnet101": 44_549_160 - fc_2048,
        "resnet152": 60_192_808 - fc_2048,
    }
    assert expected["resnet50"] == 23_508_032 and expected["resnet101"] == 42_500_160
    for name, count in expected.items():
        model = build_resnet(name, stem="standard")
        assert sum(p.numel() for p in model.parameters()) == count, name


# ----------------------------------------------------------------------------------------------------
# deep stem
# ----------------------------------------------------------------------------------------------------


def test_deep_stem_keys_and_shapes() -> None:
    model = resnet101(stem="deep")
    sd = model.state_dict()
    assert sd["conv1.weight"].shape == (64, 3, 3, 3)
    assert sd["conv2.weight"].shape == (64, 64, 3, 3)
    assert sd["conv3.weight"].shape == (128, 64, 3, 3)
    for i in (1, 2, 3):
        assert f"bn{i}.running_var" in sd
    assert sd["layer1.0.downsample.0.weight"].shape == (256, 128, 1, 1)
    assert model.conv1.stride == (2, 2) and model.conv2.stride == (1, 1) and model.conv3.stride == (1, 1)
    assert all(c.bias is None for c in (model.conv1, model.conv2, model.conv3))
    assert model.maxpool.ceil_mode is True
    stem_keys = [k for k in sd if not k.startswith("layer")]
    expected = []
    for i in (1, 2, 3):
        expected += [f"conv{i}.weight", *[f"bn{i}.{k}" for k in BN_KEYS]]
    assert stem_keys == expected


def test_deep_stem_v1c_widths() -> None:
    model = resnet50(stem="deep", stem_widths=(32, 32, 64), in_channels=4)
    assert model.conv1.weight.shape == (32, 4, 3, 3)
    assert model.conv2.weight.shape == (32, 32, 3, 3)
    assert model.conv3.weight.shape == (64, 32, 3, 3)
    assert model.layer1[0].conv1.weight.shape == (64, 64, 1, 1)
    assert model.layer1[0].downsample[0].weight.shape == (256, 64, 1, 1)


def test_basicblock_deep_stem_downsample() -> None:
    assert resnet18(stem="deep", stem_widths=(32, 32, 64)).layer1[0].downsample is None
    assert resnet18(stem="standard").layer1[0].downsample is None
    model = resnet18(stem="deep")  # 128 -> 64 channels needs a projection
    assert model.layer1[0].downsample[0].weight.shape == (64, 128, 1, 1)
    assert model.layer1[0].downsample[0].stride == (1, 1)
    assert model.layer1[1].downsample is None


# ----------------------------------------------------------------------------------------------------
# dilations
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output_stride", "schedule", "multi_grid", "layer3", "layer4"),
    [
        (8, "full", None, [2] * 6, [4, 4, 4]),
        (8, "contract", None, [1, 2, 2, 2, 2, 2], [2, 4, 4]),
        (8, "full", (1, 2, 4), [2] * 6, [4, 8, 16]),
        (8, "contract", (1, 2, 4), [1, 2, 2, 2, 2, 2], [4, 8, 16]),
        (16, "full", None, [1] * 6, [2, 2, 2]),
        (16, "contract", None, [1] * 6, [1, 2, 2]),
        (16, "full", (1, 2, 4), [1] * 6, [2, 4, 8]),
        (32, "full", None, [1] * 6, [1, 1, 1]),
        (32, "contract", (1, 2, 1), [1] * 6, [1, 2, 1]),
    ],
)
def test_bottleneck_dilations(output_stride: int, schedule: str, multi_grid, layer3: list[int],
                              layer4: list[int]) -> None:
    model = resnet50(output_stride=output_stride, dilation_schedule=schedule, multi_grid=multi_grid)
    assert _dilations(model.layer1) == [1] * 3
    assert _dilations(model.layer2) == [1] * 4
    assert _dilations(model.layer3) == layer3
    assert _dilations(model.layer4) == layer4
    strides = STAGE_STRIDES[output_stride]
    for stage, stride in zip((model.layer1, model.layer2, model.layer3, model.layer4), strides, strict=True):
        for i, blk in enumerate(stage):
            assert blk.conv2.padding == blk.conv2.dilation
            assert blk.conv2.stride == ((stride, stride) if i == 0 else (1, 1))
            assert blk.conv1.dilation == blk.conv3.dilation == (1, 1)
            assert blk.conv1.stride == blk.conv3.stride == (1, 1)
        assert stage[0].downsample[0].stride == (stride, stride)
        assert all(blk.downsample is None for blk in stage[1:])


def test_basicblock_dilations() -> None:
    model = resnet18(output_stride=8, dilation_schedule="contract")
    cases = [(model.layer2, [1, 1], 2), (model.layer3, [1, 2], 1), (model.layer4, [2, 4], 1)]
    for stage, dilations, stride in cases:
        for blk, d in zip(stage, dilations, strict=True):
            assert blk.conv1.dilation == blk.conv1.padding == (d, d)
            assert blk.conv2.dilation == blk.conv2.padding == (d, d)
        assert stage[0].conv1.stride == (stride, stride)
        assert stage[0].downsample[0].stride == (stride, stride)
        assert stage[1].conv1.stride == (1, 1)


def test_multi_grid_forward() -> None:
    model = resnet18(output_stride=16, multi_grid=(1, 2)).eval()
    assert _dilations(model.layer4) == [2, 4]
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 48))[3]
    assert out.shape == (1, 512, *_expected_sizes(64, 48, "deep", True, 16)[3])


# ----------------------------------------------------------------------------------------------------
# norms, activations, gradients
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("norm", "cls"), [("bn", nn.BatchNorm2d), ("syncbn", SyncBatchNorm),
                                          ("gn", nn.GroupNorm), ("frozenbn", FrozenBatchNorm2d)])
def test_norm_options_construct(norm: str, cls: type[nn.Module]) -> None:
    model = resnet18(norm=norm)
    for name in ("bn1", "bn2", "bn3", "layer1.0.bn1", "layer1.0.downsample.1", "layer4.1.bn2"):
        assert isinstance(model.get_submodule(name), cls), name
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 20, 20))[3].shape == (1, 512, 3, 3)


def test_frozenbn_is_frozen() -> None:
    model = resnet18(norm="frozenbn")
    _randomize(model)
    norms = [m for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert norms and all(not p.requires_grad for m in norms for p in m.parameters())
    assert all(m.weight.requires_grad for m in model.modules() if isinstance(m, nn.Conv2d))
    x = torch.randn(2, 3, 24, 24)
    stats = [m.running_mean.clone() for m in norms]
    with torch.no_grad():
        train_out = model.train()(x)
        eval_out = model.eval()(x)
    for a, b in zip(train_out, eval_out, strict=True):
        torch.testing.assert_close(a, b)
    for m, before in zip(norms, stats, strict=True):
        torch.testing.assert_close(m.running_mean, before)


def test_bn_train_and_eval_differ() -> None:
    """Control for the frozen-BN test: a trainable BN behaves differently in train mode."""
    model = resnet18(norm="bn")
    _randomize(model)
    x = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        train_out = model.train()(x)[3]
        eval_out = model.eval()(x)[3]
    assert not torch.allclose(train_out, eval_out)


def test_groupnorm_forward_and_init() -> None:
    model = resnet18(norm="gn", output_stride=16).train()
    gn = model.layer1[0].bn1
    assert gn.num_groups == 32
    assert torch.all(gn.weight == 1) and torch.all(gn.bias == 0)
    outs = model(torch.randn(2, 3, 32, 32))
    assert outs[3].shape == (2, 512, 3, 3)  # 32 -> conv 16 -> ceil pool 9 -> 5 -> 3
    assert all(torch.isfinite(o).all() for o in outs)


@pytest.mark.parametrize(("act", "cls"),
                         [("relu", nn.ReLU), ("leaky_relu", nn.LeakyReLU), ("identity", nn.Identity)])
def test_activation_option(act: str, cls: type[nn.Module]) -> None:
    model = resnet18(act=act, stem="standard")
    assert isinstance(model.relu, cls)
    assert isinstance(model.layer2[0].relu, cls)
    deep = resnet18(act=act)
    assert all(isinstance(getattr(deep, f"relu{i}"), cls) for i in (1, 2, 3))


def test_init() -> None:
    model = resnet50()
    conv = model.layer3[0].conv2
    # kaiming normal, fan_out: std = sqrt(2 / (out_channels * k * k))
    expected_std = math.sqrt(2.0 / (conv.out_channels * 9))
    assert abs(conv.weight.std().item() - expected_std) / expected_std < 0.05
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


def test_gradients_flow() -> None:
    model = resnet18(output_stride=8).train()
    outs = model(torch.randn(2, 3, 16, 16))
    sum(o.mean() for o in outs).backward()
    for name in ("conv1.weight", "conv3.weight", "layer1.0.conv1.weight", "layer4.1.conv2.weight"):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


# ----------------------------------------------------------------------------------------------------
# builders and argument validation
# ----------------------------------------------------------------------------------------------------


def test_builders() -> None:
    assert RESNETS == ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
    assert isinstance(resnet34().layer1[0], BasicBlock)
    r152 = resnet152()
    assert isinstance(r152.layer1[0], Bottleneck)
    assert [len(s) for s in (r152.layer1, r152.layer2, r152.layer3, r152.layer4)] == [3, 8, 36, 3]
    model = build_resnet("resnet18", output_stride=16, stem="standard")
    assert model.output_stride == 16 and model.stem == "standard"
    with pytest.raises(ValueError, match=r"resnet18.*resnet152"):
        build_resnet("resnet51")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"output_stride": 4}, "output_stride"),
        ({"output_stride": 64}, "output_stride"),
        ({"stem": "wide"}, "stem"),
        ({"stem_widths": (64, 64)}, "stem_widths"),
        ({"stem_widths": (64, 64, 0)}, "stem_widths"),
        ({"stem_widths": (64, 64, 1.5)}, "stem_widths"),
        ({"dilation_schedule": "half"}, "dilation_schedule"),
        ({"multi_grid": (1, 2, 4)}, "multi_grid"),  # resnet18 has 2 blocks in layer4
        ({"multi_grid": (1, 0)}, "multi_grid"),
        ({"norm": "ln"}, "norm"),
        ({"act": "gelu"}, "act"),
        ({"in_channels": 0}, "in_channels"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        resnet18(**kwargs)
    assert repr(next(iter(kwargs.values()))) in str(info.value)


def test_bad_block_and_layers() -> None:
    with pytest.raises(ValueError, match="layers"):
        ResNet(Bottleneck, (3, 4, 6))
    with pytest.raises(ValueError, match="layers"):
        ResNet(Bottleneck, (3, 4, 0, 3))
    with pytest.raises(ValueError, match="block"):
        ResNet(nn.Conv2d, (3, 4, 6, 3))  # type: ignore[arg-type]
