import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ccnet.engine.inference import infer, slide_logits, slide_windows, whole_logits
from ccnet.models import CCNet


class Pointwise(nn.Module):
    """A 1x1 conv: every output pixel depends on its input pixel only, so tiling cannot change it."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, num_classes, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.linspace(-1, 1, num_classes * 3).view(num_classes, 3, 1, 1))
            self.conv.bias.copy_(torch.linspace(-0.5, 0.5, num_classes))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.conv(x)}


class PositionDependent(nn.Module):
    """Logits that depend on the pixel's position inside the input it is given: tiling changes them."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = x.shape[-2:]
        ramp = torch.arange(h * w, dtype=x.dtype).view(1, 1, h, w) / (h * w)
        return {"out": torch.cat([x[:, :1] * ramp, x[:, 1:2] - ramp], dim=1)}


class MirrorSwap(nn.Module):
    """Class 0 = "left" (rising horizontal gradient), 1 = its mirror "right" (falling gradient), 2 = symmetric.

    Mirroring the input mirrors the logits and swaps classes 0 and 1, so with flip_lut (1, 0, 2)
    flip-averaged inference equals plain inference.
    """

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        padded = F.pad(x[:, :1], (1, 1))
        grad = padded[..., 2:] - padded[..., :-2]  # centred difference: negated by a mirror
        return {"out": torch.cat([grad + x[:, 1:2], -grad + x[:, 1:2], x[:, 2:3]], dim=1)}


def _images(b: int = 2, h: int = 12, w: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_whole_returns_softmax_of_logits():
    model, x = Pointwise(), _images()
    probs = infer(model, x, num_classes=4)
    assert probs.shape == (2, 4, 12, 12)
    torch.testing.assert_close(probs, model(x)["out"].softmax(1))
    torch.testing.assert_close(probs.sum(1), torch.ones(2, 12, 12))


def test_model_mode_restored_and_no_grad():
    model = Pointwise().train()
    probs = infer(model, _images(), num_classes=4)
    assert model.training and not probs.requires_grad
    model.eval()
    infer(model, _images(), num_classes=4)
    assert not model.training


def test_slide_with_one_tile_equals_whole():
    model, x = PositionDependent(), _images(h=10, w=14)
    whole = infer(model, x, num_classes=2)
    assert torch.equal(infer(model, x, num_classes=2, mode="slide", crop_size=(10, 14), stride=(5, 7)), whole)
    # A crop larger than the image: one zero-padded tile; the pad does not leak into a pointwise model.
    model = Pointwise()
    torch.testing.assert_close(
        infer(model, x, num_classes=4, mode="slide", crop_size=16, stride=8), infer(model, x, num_classes=4)
    )


def test_slide_with_overlapping_tiles_equals_whole_for_a_pointwise_model():
    model = Pointwise()
    # 12x12, crop 8, stride 4: tiles at 0 and 4 per axis, every pixel covered 1, 2 or 4 times (exact averages).
    x = _images(h=12, w=12)
    slide = infer(model, x, num_classes=4, mode="slide", crop_size=8, stride=4)
    assert torch.equal(slide, infer(model, x, num_classes=4))
    # Odd sizes, uneven overlaps (counts of 3): equal up to float rounding of the average.
    x = _images(h=13, w=11)
    slide = infer(model, x, num_classes=4, mode="slide", crop_size=(6, 5), stride=(4, 3))
    torch.testing.assert_close(slide, infer(model, x, num_classes=4), rtol=1e-6, atol=1e-7)


def test_slide_tiling_changes_position_dependent_model():
    model, x = PositionDependent(), _images(h=12, w=12)
    slide = infer(model, x, num_classes=2, mode="slide", crop_size=8, stride=4)
    assert not torch.allclose(slide, infer(model, x, num_classes=2))


def test_slide_logits_average_overlapping_tiles():
    # Rebuild the average by hand for a position-dependent model.
    model, x = PositionDependent(), _images(b=1, h=7, w=9)
    windows = slide_windows(7, 9, (5, 5), (3, 3))
    total, count = torch.zeros(1, 2, 7, 9), torch.zeros(1, 1, 7, 9)
    for y0, y1, x0, x1 in windows:
        total[..., y0:y1, x0:x1] += model(x[..., y0:y1, x0:x1])["out"]
        count[..., y0:y1, x0:x1] += 1
    torch.testing.assert_close(slide_logits(model, x, 2, (5, 5), (3, 3)), total / count)


@pytest.mark.parametrize(
    ("size", "crop", "stride"),
    [((13, 11), (6, 5), (4, 3)), ((7, 9), (5, 5), (3, 3)), ((31, 17), (8, 8), (5, 5)), ((5, 3), (8, 8), (4, 4))],
)
def test_slide_windows_cover_every_pixel(size, crop, stride):
    height, width = size
    windows = slide_windows(height, width, crop, stride)
    count = torch.zeros(height, width, dtype=torch.int64)
    for y0, y1, x0, x1 in windows:
        assert 0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width
        assert (y1 - y0, x1 - x0) == (min(crop[0], height), min(crop[1], width))
        count[y0:y1, x0:x1] += 1
    assert (count > 0).all()
    h_grids = max(height - crop[0] + stride[0] - 1, 0) // stride[0] + 1
    w_grids = max(width - crop[1] + stride[1] - 1, 0) // stride[1] + 1
    assert len(windows) == h_grids * w_grids
    assert windows[-1][1] == height and windows[-1][3] == width  # last tile aligned to the border


def test_slide_pads_small_images_to_the_crop():
    seen = []

    class Recorder(Pointwise):
        def forward(self, x):
            seen.append(tuple(x.shape[-2:]))
            return super().forward(x)

    x = _images(h=5, w=3)
    probs = infer(Recorder(), x, num_classes=4, mode="slide", crop_size=8, stride=4)
    assert seen == [(8, 8)] and probs.shape == (2, 4, 5, 3)


def test_flip_with_lut_on_mirror_equivariant_model():
    model, x = MirrorSwap(), _images()
    # The model is mirror-equivariant up to swapping classes 0 <-> 1.
    torch.testing.assert_close(model(x.flip(-1))["out"].flip(-1)[:, [1, 0, 2]], model(x)["out"])
    plain = infer(model, x, num_classes=3)
    flipped = infer(model, x, num_classes=3, flip=True, flip_lut=[1, 0, 2, 3, 4])  # extra entries (ignore) unused
    torch.testing.assert_close(flipped, plain)
    # Without the class swap, the flipped pass would average left and right probabilities.
    wrong = infer(model, x, num_classes=3, flip=True)
    assert not torch.allclose(wrong, plain)
    torch.testing.assert_close(wrong[:, 0], wrong[:, 1])


def test_flip_averages_the_two_passes():
    model, x = PositionDependent(), _images()
    expected = (model(x)["out"].softmax(1) + model(x.flip(-1))["out"].flip(-1).softmax(1)) / 2
    torch.testing.assert_close(infer(model, x, num_classes=2, flip=True), expected)


def test_single_scale_one_equals_whole():
    model, x = PositionDependent(), _images(h=9, w=11)
    assert torch.equal(infer(model, x, num_classes=2, scales=[1.0]), infer(model, x, num_classes=2))


def test_multi_scale_averages_resized_passes():
    model, x = Pointwise(), _images(h=8, w=10)
    half = F.interpolate(x, size=(4, 5), mode="bilinear", align_corners=False)
    half_probs = F.interpolate(model(half)["out"], size=(8, 10), mode="bilinear", align_corners=False).softmax(1)
    expected = (model(x)["out"].softmax(1) + half_probs) / 2
    probs = infer(model, x, num_classes=4, scales=(1.0, 0.5))
    torch.testing.assert_close(probs, expected)
    assert probs.shape == (2, 4, 8, 10)


def test_slide_on_ccnet():
    # The real model (dict output, train -> eval -> train); two tiles only, CPU dilated convs are slow.
    torch.manual_seed(0)
    model = CCNet(3, backbone="resnet18", head_channels=16, aux=False).train()
    x = _images(b=1, h=16, w=20)
    probs = infer(model, x, num_classes=3, mode="slide", crop_size=16)
    assert probs.shape == (1, 3, 16, 20) and model.training
    torch.testing.assert_close(probs.sum(1), torch.ones(1, 16, 20))


def test_whole_logits_resizes_low_resolution_outputs():
    class Half(nn.Module):
        def forward(self, x):
            return x[:, :2, ::2, ::2]  # plain tensor, half resolution

    logits = whole_logits(Half(), _images(h=8, w=8), 2)
    assert logits.shape == (2, 2, 8, 8)


def test_argument_validation():
    model, x = Pointwise(), _images()
    with pytest.raises(ValueError, match="crop_size"):
        infer(model, x, num_classes=4, mode="slide")
    with pytest.raises(ValueError, match="mode"):
        infer(model, x, num_classes=4, mode="tiles")
    with pytest.raises(ValueError, match="stride"):
        infer(model, x, num_classes=4, mode="slide", crop_size=4, stride=5)
    with pytest.raises(ValueError, match="crop_size"):
        infer(model, x, num_classes=4, mode="slide", crop_size=(4, 0))
    with pytest.raises(ValueError, match="scales"):
        infer(model, x, num_classes=4, scales=())
    with pytest.raises(ValueError, match="scales"):
        infer(model, x, num_classes=4, scales=(1.0, -0.5))
    with pytest.raises(ValueError, match="permutation"):
        infer(model, x, num_classes=4, flip=True, flip_lut=[1, 1, 2, 3])
    with pytest.raises(ValueError, match="logits"):
        infer(model, x, num_classes=5)
    with pytest.raises(ValueError, match="images"):
        infer(model, x[0], num_classes=4)
