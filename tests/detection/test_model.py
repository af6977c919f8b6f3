"""The Mask R-CNN model: equal to torchvision's without the block, the block's place and reach,
weights through the interop loaders."""

import pytest

pytest.importorskip("ccnet.detection", reason="needs the [detection] extra (make test runs it in .venv-detection)",
                    exc_type=ImportError)

import torch
import torchvision
from torch import nn

from ccnet.detection.model import (
    ContextStage,
    build_mask_rcnn,
    init_backbone_from,
    load_mask_rcnn_weights,
    resnet_fpn,
)
from ccnet.interop import WeightsMismatchError
from ccnet.nn import CrissCrossAttention, NonLocal2d

# Few proposals and detections: the mask head runs once per detection (about 1 GFLOP each).
SMALL = dict(min_size=64, max_size=64, box_score_thresh=0.0, box_detections_per_img=8, rpn_pre_nms_top_n_test=200,
             rpn_post_nms_top_n_test=50)


def _randomize(model: nn.Module, seed: int = 0) -> None:
    """Random weights and norm statistics everywhere, so that equal outputs mean equal networks."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                values = torch.randn(tensor.shape, generator=generator) * 0.05
                if name.endswith(("running_var", "bn1.weight", "bn2.weight", "bn3.weight")):
                    values = values.abs() + 0.5
                tensor.copy_(values)


def _images(seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(3, 64, 56, generator=generator), torch.rand(3, 48, 64, generator=generator)]


def _assert_same_outputs(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys() and len(x["boxes"]) > 0
        for key in x:
            torch.testing.assert_close(x[key], y[key], rtol=0, atol=0)


def test_without_block_equals_torchvision_mask_rcnn():
    # A torchvision Mask R-CNN state dict (maskrcnn_resnet50_fpn's keys and shapes), random.
    reference = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                                                   num_classes=4)
    _randomize(reference)
    state = reference.state_dict()
    # The plain Mask R-CNN as torchvision assembles it for pretrained weights (maskrcnn_resnet50_fpn
    # with weights: frozen BatchNorm, layer2-4 trained), from torchvision's public parts.
    backbone = torchvision.models.detection.backbone_utils.resnet_fpn_backbone(backbone_name="resnet50", weights=None)
    plain = torchvision.models.detection.MaskRCNN(backbone, num_classes=4, **SMALL)
    plain.load_state_dict(state)
    plain.eval()
    with torch.inference_mode():
        expected = plain(_images())

    ours = load_mask_rcnn_weights(build_mask_rcnn(3, backbone="resnet50", context="none", **SMALL), state).eval()
    with torch.inference_mode():
        _assert_same_outputs(ours(_images()), expected)

    assert [n for n, p in ours.named_parameters() if p.requires_grad] == \
        [n for n, p in plain.named_parameters() if p.requires_grad]

    # With the RCCA block at gamma = 0 (its start), the network is still the plain one.
    rcca = load_mask_rcnn_weights(build_mask_rcnn(3, backbone="resnet50", context="rcca", **SMALL), state).eval()
    with torch.inference_mode():
        _assert_same_outputs(rcca(_images()), expected)

    # torchvision's builder without weights (trainable BatchNorm) in eval mode: ours with norm="bn".
    reference.eval()
    for name, value in SMALL.items():  # the same inference settings
        target = reference.transform if name in ("min_size", "max_size") else None
        if target is not None:
            setattr(target, name, (value,) if name == "min_size" else value)
    reference.roi_heads.score_thresh, reference.roi_heads.detections_per_img = 0.0, 8
    reference.rpn._pre_nms_top_n["testing"], reference.rpn._post_nms_top_n["testing"] = 200, 50
    bn = build_mask_rcnn(3, backbone="resnet50", context="none", norm="bn", trainable_layers=5, **SMALL)
    bn.load_state_dict(state)
    with torch.inference_mode():
        _assert_same_outputs(bn.eval()(_images()), reference(_images()))


def test_training_losses_equal_torchvision_with_batchnorm():
    # Without weights torchvision's builders use trainable BatchNorm and train every layer
    # (maskrcnn_resnet50_fpn: resnet_fpn_backbone(norm_layer=BatchNorm2d, trainable_layers=5)); so do
    # we with norm="bn", trainable_layers=5: same weights and RNG give the same losses. ResNet-18 for speed.
    backbone = torchvision.models.detection.backbone_utils.resnet_fpn_backbone(
        backbone_name="resnet18", weights=None, norm_layer=nn.BatchNorm2d, trainable_layers=5)
    plain = torchvision.models.detection.MaskRCNN(backbone, num_classes=3, min_size=64, max_size=64)
    ours = build_mask_rcnn(2, backbone="resnet18", context="none", norm="bn", trainable_layers=5, min_size=64,
                           max_size=64)
    _randomize(plain, seed=1)
    ours.load_state_dict(plain.state_dict())
    assert [n for n, p in ours.named_parameters() if p.requires_grad] == \
        [n for n, p in plain.named_parameters() if p.requires_grad]
    masks = torch.zeros(2, 64, 64, dtype=torch.uint8)
    masks[0, 5:30, 8:40], masks[1, 35:60, 20:50] = 1, 1
    targets = [{"boxes": torch.tensor([[8.0, 5.0, 40.0, 30.0], [20.0, 35.0, 50.0, 60.0]]),
                "labels": torch.tensor([1, 2]), "masks": masks}]
    losses = []
    for model in (plain, ours):
        torch.manual_seed(0)
        losses.append(model([torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(2))], targets))
    assert losses[0].keys() == losses[1].keys()
    for key in losses[0]:
        torch.testing.assert_close(losses[0][key], losses[1][key], rtol=0, atol=0)


@pytest.mark.parametrize(("backbone", "blocks"), [("resnet18", 2), ("resnet50", 6)])
def test_block_runs_right_before_the_last_block_of_layer3(backbone, blocks):
    model = build_mask_rcnn(2, backbone=backbone, context="rcca")
    layer3 = model.backbone.body.layer3
    assert isinstance(layer3, ContextStage) and layer3.num_blocks == blocks
    calls = []
    for name, module in layer3.named_children():
        module.register_forward_hook(lambda *_, name=name: calls.append(name))
    x = torch.randn(1, 512 if backbone == "resnet50" else 128, 8, 8)
    with torch.no_grad():
        layer3(x)
    assert calls == [*map(str, range(blocks - 1)), "context", str(blocks - 1)]
    assert isinstance(layer3.context.cca, CrissCrossAttention) and layer3.context.recurrence == 2
    nonlocal_model = build_mask_rcnn(2, backbone=backbone, context="nonlocal")
    assert isinstance(nonlocal_model.backbone.body.layer3.context, NonLocal2d)
    channels = 1024 if backbone == "resnet50" else 256
    assert layer3.context.cca.in_channels == channels and layer3.context.cca.query_conv.out_channels == channels // 8


def _stage_reach(context: str, recurrence: int = 2) -> torch.Tensor:
    """Which input positions of layer3 (ResNet-18, 40x40 -> 20x20) the output at (0, 0) depends on."""
    torch.manual_seed(0)
    layer3 = resnet_fpn("resnet18", context=context, recurrence=recurrence, gamma_init=1.0).body.layer3.eval()
    x = torch.randn(1, 128, 40, 40, requires_grad=True)
    layer3(x)[0, :, 0, 0].sum().backward()
    return x.grad.abs().sum(1)[0] > 0


def test_block_output_reaches_every_position_of_its_stage():
    assert _stage_reach("rcca", recurrence=2).all()  # R=2: every position
    assert _stage_reach("nonlocal").all()
    one_loop = _stage_reach("rcca", recurrence=1)  # R=1: only near the output's row and column
    assert one_loop[:, :4].all() and one_loop[:4, :].all() and not one_loop[20:, 20:].any()
    plain = _stage_reach("none")  # convolutions alone: a local neighbourhood
    assert plain[:4, :4].all() and not plain[20:, :].any() and not plain[:, 20:].any()


def test_imagenet_weights_through_the_interop_loaders(tmp_path):
    resnet = torchvision.models.resnet18(weights=None)
    _randomize(resnet, seed=3)
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(resnet.state_dict(), path)  # a torchvision ImageNet file: fc.* included, num_batches_tracked too
    model = build_mask_rcnn(2, backbone="resnet18", context="rcca")
    context_before = {k: v.clone() for k, v in model.backbone.body.layer3.context.state_dict().items()}
    init_backbone_from(model, path)
    body = model.backbone.body.state_dict()
    for key, value in resnet.state_dict().items():
        if not key.startswith("fc.") and not key.endswith("num_batches_tracked"):
            torch.testing.assert_close(body[key], value, rtol=0, atol=0)
    for key, value in model.backbone.body.layer3.context.state_dict().items():
        torch.testing.assert_close(value, context_before[key])  # the block keeps its initialisation

    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "resnet34.pth")
    with pytest.raises(WeightsMismatchError, match=r"resnet34\.pth: weights do not fit the Mask R-CNN's ResNet.*"
                                                   r"unexpected \(layer1\.2\."):
        init_backbone_from(build_mask_rcnn(2, backbone="resnet18"), tmp_path / "resnet34.pth")


def test_mask_rcnn_weights_with_other_classes_are_reported(tmp_path):
    plain = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    torch.save(plain.state_dict(), tmp_path / "maskrcnn.pth")
    with pytest.raises(WeightsMismatchError, match=r"maskrcnn\.pth: .* shape conflicts \(roi_heads\.box_predictor"):
        load_mask_rcnn_weights(build_mask_rcnn(3, backbone="resnet50", context="rcca"), tmp_path / "maskrcnn.pth")
    load_mask_rcnn_weights(build_mask_rcnn(90, backbone="resnet50", context="rcca"), tmp_path / "maskrcnn.pth")
