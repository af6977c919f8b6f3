"""CCNet: forward contract, shapes, presets' layouts, and a full training-step backward."""

import pytest
import torch

from ccnet.losses import SegmentationCriterion
from ccnet.models import PRESETS, CCNet, create_model


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return CCNet(7, backbone="resnet18", head_channels=32, aux_channels=16, consistency=True)


def test_training_outputs_at_input_resolution_for_odd_sizes(small_model):
    small_model.train()
    outputs = small_model(torch.randn(2, 3, 97, 129))
    assert set(outputs) == {"out", "aux", "embedding"}
    assert outputs["out"].shape == (2, 7, 97, 129)
    assert outputs["aux"].shape == (2, 7, 97, 129)
    assert outputs["embedding"].shape == (2, 16, 13, 17)


def test_feature_resolution_outputs(small_model):
    small_model.train()
    outputs = small_model(torch.randn(1, 3, 97, 129), upsample=False)
    assert {k: tuple(v.shape[-2:]) for k, v in outputs.items()} == {
        "out": (13, 17), "aux": (13, 17), "embedding": (13, 17),
    }


def test_eval_returns_only_main_logits(small_model):
    small_model.eval()
    with torch.no_grad():
        outputs = small_model(torch.randn(1, 3, 65, 48))
    assert set(outputs) == {"out"} and outputs["out"].shape == (1, 7, 65, 48)


def test_upsampling_honours_align_corners():
    torch.manual_seed(0)
    model = CCNet(3, backbone="resnet18", head_channels=16, aux=False, align_corners=False).eval()
    x = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        low = model(x, upsample=False)["out"]
        high = model(x)["out"]
    expected = torch.nn.functional.interpolate(low, size=(40, 56), mode="bilinear", align_corners=False)
    torch.testing.assert_close(high, expected)


def test_no_aux_no_embedding_by_choice():
    model = CCNet(3, backbone="resnet18", head_channels=16, aux=False)
    assert set(model(torch.randn(1, 3, 33, 33))) == {"out"}
    assert model.aux_head is None and model.head.embedding is None


@pytest.mark.parametrize("recurrence", [0, 1, 2, 3])
def test_recurrence_is_configurable(recurrence):
    model = CCNet(3, backbone="resnet18", recurrence=recurrence, head_channels=16)
    assert model.recurrence == recurrence
    assert model(torch.randn(1, 3, 32, 32))["out"].shape == (1, 3, 32, 32)


def test_training_step_backward_reaches_every_trainable_parameter(small_model):
    small_model.train()
    criterion = SegmentationCriterion(ohem=True, ohem_min_kept=100, consistency=True)
    images = torch.randn(2, 3, 65, 81)
    target = torch.randint(0, 7, (2, 65, 81))
    target[:, :5] = 255
    with torch.no_grad():
        small_model.head.cca.gamma.fill_(0.1)  # gamma=0 blocks gradients to q/k/v, by design
    loss, logs = criterion(small_model(images), target)
    small_model.zero_grad()
    loss.backward()
    assert torch.isfinite(loss) and {"main", "aux", "consistency"} <= set(logs)
    missing = [n for n, p in small_model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing


def test_official_preset_layout():
    model = create_model("ccnet_official_cityscapes", 19)
    state = model.state_dict()
    assert state["backbone.conv1.weight"].shape == (64, 3, 3, 3)
    assert state["backbone.conv3.weight"].shape == (128, 64, 3, 3)
    assert state["backbone.layer1.0.downsample.0.weight"].shape == (256, 128, 1, 1)
    assert sum(1 for k in state if k.startswith("backbone.layer3.") and k.endswith("conv1.weight")) == 23
    assert state["head.cca.gamma"].shape == (1,)
    assert state["head.bottleneck.0.weight"].shape == (512, 2560, 3, 3)
    assert state["aux_head.0.bias"].shape == (512,)
    assert state["aux_head.0.weight"].shape == (512, 1024, 3, 3)
    assert model.backbone.layer3[0].conv2.dilation == (2, 2)
    assert model.backbone.layer4[0].conv2.dilation == (4, 4)
    assert model.backbone.maxpool.ceil_mode
    assert model.align_corners
    assert isinstance(model.head.conva[1].act, torch.nn.LeakyReLU)


@pytest.mark.parametrize("name", ["ccnet_mmseg_r50_d8", "ccnet_mmseg_r101_d8"])
def test_mmseg_preset_layout(name):
    model = create_model(name, 150)
    state = model.state_dict()
    assert state["backbone.conv1.weight"].shape == (32, 3, 3, 3)
    assert state["backbone.conv3.weight"].shape == (64, 32, 3, 3)
    assert state["aux_head.0.weight"].shape == (256, 1024, 3, 3)
    assert "aux_head.0.bias" not in state
    assert state["head.bottleneck.3.weight"].shape == (150, 512, 1, 1)
    assert model.backbone.layer3[0].conv2.dilation == (1, 1)
    assert model.backbone.layer4[0].conv2.dilation == (2, 2)
    assert model.backbone.layer4[1].conv2.dilation == (4, 4)
    assert not model.backbone.maxpool.ceil_mode
    assert not model.align_corners
    assert isinstance(model.head.conva[1].act, torch.nn.ReLU)


def test_presets_accept_overrides_and_reject_unknown_names():
    model = create_model("ccnet_official_cityscapes", 5, backbone="resnet18", norm="gn", recurrence=1)
    assert model.recurrence == 1 and model.num_classes == 5
    assert set(PRESETS) >= {"ccnet_official_cityscapes", "ccnet_mmseg_r50_d8", "ccnet_mmseg_r101_d8"}
    with pytest.raises(ValueError, match="unknown model preset 'ccnet_foo'"):
        create_model("ccnet_foo", 19)


def test_config_records_constructor_arguments():
    model = CCNet(4, backbone="resnet34", recurrence=1, head_channels=64, stem_widths=(32, 32, 64))
    assert model.config["backbone"] == "resnet34"
    assert model.config["recurrence"] == 1 and model.config["num_classes"] == 4
    assert model.config["stem_widths"] == [32, 32, 64]
    rebuilt = CCNet(**model.config)
    assert rebuilt.state_dict().keys() == model.state_dict().keys()


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="num_classes"):
        CCNet(0, backbone="resnet18")
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        CCNet(3, backbone="resnet18", head_channels=16)(torch.randn(3, 32, 32))


def test_tiny_inputs_down_to_one_feature_pixel():
    model = CCNet(3, backbone="resnet18", head_channels=16).eval()
    with torch.no_grad():
        for size in [(8, 8), (1, 1), (9, 40)]:
            assert model(torch.randn(1, 3, *size))["out"].shape == (1, 3, *size)


def test_channels_last_model_matches_contiguous():
    torch.manual_seed(0)
    model = CCNet(4, backbone="resnet18", head_channels=16).eval()
    with torch.no_grad():
        model.head.cca.gamma.fill_(0.5)
        x = torch.randn(2, 3, 45, 61)
        expected = model(x)["out"]
        model = model.to(memory_format=torch.channels_last)
        out = model(x.contiguous(memory_format=torch.channels_last))["out"]
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


def test_bfloat16_autocast_training_step_is_finite():
    torch.manual_seed(0)
    model = CCNet(4, backbone="resnet18", head_channels=16, consistency=True).train()
    with torch.no_grad():
        model.head.cca.gamma.fill_(0.5)
    criterion = SegmentationCriterion(consistency=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(torch.randn(2, 3, 33, 47))
        loss, _ = criterion(outputs, torch.randint(0, 4, (2, 33, 47)))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
