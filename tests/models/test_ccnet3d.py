"""CCNet3D: 1-frame clips equal the 2D model, receptive fields of 3D attention at feature level,
per-frame mode, shapes, and the model folder round trip with 2D weights in and out."""

import pytest
import torch
from tests.helpers import randomise_norms

import ccnet
from ccnet.models import CCNet, CCNet3D, create_model
from ccnet.nn import RCCAHead

TINY = dict(backbone="resnet18", stem_widths=(8, 8, 16), head_channels=16, aux_channels=8, output_stride=8)


@pytest.fixture(scope="module")
def model_2d() -> CCNet:
    torch.manual_seed(0)
    return randomise_norms(CCNet(5, consistency=True, **TINY)).double().eval()


def test_one_frame_clip_equals_the_2d_model(model_2d):
    video = CCNet3D.from_ccnet(model_2d)
    assert video.temporal and not video.training
    x = torch.randn(2, 3, 1, 25, 31, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for upsample in (True, False):
            expected = model_2d(x[:, :, 0], upsample=upsample)["out"]
            got = video(x, upsample=upsample)["out"]
            assert got.shape == (2, 5, 1, *expected.shape[-2:])
            torch.testing.assert_close(got[:, :, 0], expected, rtol=1e-12, atol=1e-12)
    # Training mode: batch statistics over the same frames, the same aux logits and embedding.
    model_2d.train(), video.train()
    try:
        torch.manual_seed(3)
        expected = model_2d(x[:, :, 0])
        torch.manual_seed(3)
        got = video(x)
    finally:
        model_2d.eval()
    assert set(got) == set(expected) == {"out", "aux", "embedding"}
    for name in expected:
        torch.testing.assert_close(got[name][:, :, 0], expected[name], rtol=1e-12, atol=1e-12)


def test_longer_clips_mix_frames_and_per_frame_mode_equals_2d(model_2d):
    x = torch.randn(1, 3, 3, 25, 33, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    per_frame = CCNet3D.from_ccnet(model_2d, temporal=False)
    video = CCNet3D.from_ccnet(model_2d)
    with torch.no_grad():
        frame_by_frame = torch.stack([model_2d(x[:, :, t])["out"] for t in range(3)], dim=2)
        torch.testing.assert_close(per_frame(x)["out"], frame_by_frame, rtol=1e-12, atol=1e-12)
        # Attention across the clip changes the logits; changing another frame changes this one.
        assert (video(x)["out"] - frame_by_frame).abs().max() > 1e-3
        y = x.clone()
        y[:, :, 2] = torch.randn_like(y[:, :, 2])
        assert (video(y)["out"][:, :, 0] - video(x)["out"][:, :, 0]).abs().max() > 1e-6
        assert torch.equal(per_frame(y)["out"][:, :, 0], per_frame(x)["out"][:, :, 0])


def _lines(t, y, x, shape):
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[:, y, x] = mask[t, :, x] = mask[t, y, :] = True
    return mask


def _planes(t, y, x, shape):
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[t] = mask[:, y] = mask[:, :, x] = True
    return mask


@pytest.mark.parametrize(("loops", "expected"), [(1, _lines), (2, _planes),
                                                  (3, lambda t, y, x, s: torch.ones(s, dtype=torch.bool))])
def test_receptive_field_of_3d_attention_at_feature_level(loops, expected):
    """An output voxel of R loops of the head's attention depends on its three lines (R=1), the
    three planes through it (R=2), the whole clip (R=3): gradients at feature level."""
    torch.manual_seed(0)
    head = RCCAHead(8, 3, channels=8, reduction=2, gamma_init=0.7).double()
    shape = (3, 4, 5)  # T, h, w
    frames = torch.randn(shape[0], 8, *shape[1:], dtype=torch.float64, requires_grad=True)  # one clip
    for t, y, x in ((0, 0, 1), (1, 2, 4), (2, 3, 0)):
        out = frames
        for _ in range(loops):
            out = head.cca(out, frames=shape[0])
        (grad,) = torch.autograd.grad(out[t, :, y, x].sum(), frames)
        reached = grad.abs().sum(dim=1) > 0  # (T, h, w)
        assert torch.equal(reached, expected(t, y, x, shape)), (t, y, x)
    # Per frame (the 2D baseline): two loops reach the whole frame and nothing else.
    out = head.cca(head.cca(frames))
    (grad,) = torch.autograd.grad(out[1, :, 2, 3].sum(), frames)
    reached = grad.abs().sum(dim=1) > 0
    assert reached[1].all() and not reached[0].any() and not reached[2].any()


def test_shapes_training_and_bad_input():
    torch.manual_seed(0)
    model = CCNet3D(4, consistency=True, **TINY)
    outputs = model(torch.randn(2, 3, 2, 29, 35))
    assert outputs["out"].shape == outputs["aux"].shape == (2, 4, 2, 29, 35)
    assert outputs["embedding"].shape == (2, 16, 2, 4, 5)
    sum(v.sum() for v in outputs.values()).backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    assert model(torch.randn(1, 3, 4, 29, 35), upsample=False)["out"].shape == (1, 4, 4, 4, 5)
    with pytest.raises(ValueError, match=r"CCNet3D expects clips \(B, C, T, H, W\)"):
        model(torch.randn(1, 3, 29, 35))


def test_channels_last_model_matches_contiguous(model_2d):
    video = CCNet3D.from_ccnet(model_2d)
    x = torch.randn(1, 3, 2, 25, 33, dtype=torch.float64)
    with torch.no_grad():
        expected = video(x)["out"]
        got = CCNet3D.from_ccnet(model_2d).to(memory_format=torch.channels_last)(x)["out"]
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_model_folders_round_trip_and_convert_from_2d(model_2d, tmp_path):
    model_2d.class_names = tuple("abcde")
    video = CCNet3D.from_ccnet(model_2d, temporal=False, recurrence=3)
    assert video.class_names == tuple("abcde") and video.recurrence == 3
    video.save_pretrained(tmp_path / "video")
    model_2d.save_pretrained(tmp_path / "image")
    loaded = ccnet.load_pretrained(tmp_path / "video")
    assert type(loaded) is CCNet3D and not loaded.temporal and loaded.recurrence == 3
    assert loaded.class_names == tuple("abcde")
    from_2d = CCNet3D.from_pretrained(tmp_path / "image")
    assert type(from_2d) is CCNet3D and from_2d.temporal
    also = ccnet.load_pretrained(tmp_path / "image", architecture="CCNet3D")
    back = ccnet.load_pretrained(tmp_path / "video", architecture="CCNet")
    assert type(also) is CCNet3D and type(back) is CCNet
    for model in (loaded, from_2d, also, back):
        for key, value in model_2d.state_dict().items():
            assert torch.equal(model.state_dict()[key], value.to(model.state_dict()[key].dtype)), key
    with pytest.raises(ValueError, match="holds a CCNet3D, not a CCNet"):
        CCNet.from_pretrained(tmp_path / "video")
    with pytest.raises(ValueError, match="cannot turn a CCNet into architecture 'Mask'"):
        ccnet.load_pretrained(tmp_path / "image", architecture="Mask")


def test_camvid_preset():
    model = create_model("ccnet3d_camvid", num_classes=11, backbone="resnet18")
    assert type(model) is CCNet3D and model.recurrence == 3 and model.temporal
    assert model.config["stem_widths"] == [64, 64, 128] and model.num_classes == 11
