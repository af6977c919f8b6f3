"""Attention maps per pixel and loop against brute force: dense masked attention matrices of each
loop (ccnet.ops.reference), composed by matrix products."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ccnet.models import CCNet, CCNet3D
from ccnet.nn import CrissCrossAttention, CrissCrossAttention3d
from ccnet.ops import criss_cross_attention_matrix_reference
from ccnet.viz import attention_maps, feature_index, layer_attention_maps


def brute_force(block, x, positions, recurrence):
    """(B, P, R, *spatial) effective maps and crosses from dense (N, N) matrices of every loop."""
    spatial = x.shape[2:]
    matrices = []
    with torch.no_grad():
        for _ in range(recurrence):
            matrices.append(criss_cross_attention_matrix_reference(block.query_conv(x), block.key_conv(x)))
            x = block(x)
    strides = torch.empty(spatial).stride()  # row-major: the reference's flattening
    flat = [sum(c * s for c, s in zip(p, strides, strict=True)) for p in positions]
    loops, crosses = [], []
    for r in range(recurrence):
        effective = matrices[r]
        for earlier in reversed(matrices[:r]):
            effective = effective @ earlier
        loops.append(effective[:, flat])
        crosses.append(matrices[r][:, flat])
    shape = (x.shape[0], len(positions), recurrence, *spatial)
    return torch.stack(loops, 2).reshape(shape), torch.stack(crosses, 2).reshape(shape)


def make_block(block_type, channels=8):
    torch.manual_seed(0)
    block = block_type(channels, reduction=2, gamma_init=0.8).double()
    with torch.no_grad():  # sharper attention than the default init, so the test sees structure
        block.query_conv.weight.mul_(3)
    return block


@pytest.mark.parametrize("recurrence", [1, 2, 3])
def test_2d_layer_maps_match_brute_force(recurrence):
    block = make_block(CrissCrossAttention)
    x = torch.randn(2, 8, 5, 7, dtype=torch.float64)
    positions = [(0, 0), (2, 3), (4, 6)]
    loops, crosses = layer_attention_maps(block, x, positions, recurrence)
    expected_loops, expected_crosses = brute_force(block, x, positions, recurrence)
    assert loops.shape == (2, 3, recurrence, 5, 7)
    torch.testing.assert_close(loops, expected_loops, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(crosses, expected_crosses, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("recurrence", [1, 2, 3])
def test_3d_layer_maps_match_brute_force(recurrence):
    block = make_block(CrissCrossAttention3d)
    x = torch.randn(1, 8, 3, 4, 5, dtype=torch.float64)
    positions = [(0, 0, 0), (1, 2, 3), (2, 3, 4)]
    loops, crosses = layer_attention_maps(block, x, positions, recurrence)
    expected_loops, expected_crosses = brute_force(block, x, positions, recurrence)
    torch.testing.assert_close(loops, expected_loops, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(crosses, expected_crosses, rtol=1e-10, atol=1e-12)


def test_2d_loop_one_is_the_cross_and_loop_two_covers_the_image():
    block = make_block(CrissCrossAttention)
    loops, crosses = layer_attention_maps(block, torch.randn(1, 8, 6, 9, dtype=torch.float64), [(2, 5)], 2)
    sums = loops.sum(dim=(-2, -1))
    torch.testing.assert_close(sums, torch.ones_like(sums))
    cross = torch.zeros(6, 9, dtype=torch.bool)
    cross[2, :] = cross[:, 5] = True
    assert (loops[0, 0, 0][cross] > 0).all() and (loops[0, 0, 0][~cross] == 0).all()
    assert (crosses[0, 0, 1][~cross] == 0).all()  # each loop's own attention is a cross too
    assert (loops[0, 0, 1] > 0).all()  # two loops reach every position


def test_3d_maps_grow_from_lines_to_planes_to_the_volume():
    block = make_block(CrissCrossAttention3d)
    t, y, x = 1, 2, 3
    loops, _ = layer_attention_maps(block, torch.randn(1, 8, 3, 4, 5, dtype=torch.float64), [(t, y, x)], 3)
    grid = torch.stack(torch.meshgrid(torch.arange(3), torch.arange(4), torch.arange(5), indexing="ij"))
    differing = (grid != torch.tensor([t, y, x]).view(3, 1, 1, 1)).sum(0)
    for r, reach in enumerate([1, 2, 3]):
        support = loops[0, 0, r] > 0
        assert torch.equal(support, differing <= reach), f"loop {r + 1}"


@pytest.fixture(scope="module")
def tiny_ccnet():
    torch.manual_seed(0)
    model = CCNet(4, backbone="resnet18", recurrence=3, head_channels=16, aux=False, stem_widths=(8, 8, 16),
                  gamma_init=1.0).double().eval()
    return model


def test_model_maps_match_brute_force_on_the_model_features(tiny_ccnet):
    image = torch.randn(3, 45, 61, dtype=torch.float64)
    pixels = [(0, 0), (20, 33), (44, 60)]
    maps = attention_maps(tiny_ccnet, image, pixels)
    with torch.no_grad():
        features = tiny_ccnet.head.conva(tiny_ccnet.backbone(image[None])[3])
        logits = tiny_ccnet(image[None])["out"]
    assert maps.feature_size == tuple(features.shape[2:]) == (6, 8)
    # align_corners=True (the model's): pixel (y, x) -> round(y * 5 / 44), round(x * 7 / 60)
    assert maps.positions == [(0, 0), (2, 4), (5, 7)]
    expected_loops, expected_crosses = brute_force(tiny_ccnet.head.cca, features, maps.positions, 3)
    torch.testing.assert_close(maps.loops, expected_loops[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(maps.crosses, expected_crosses[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(maps.logits, logits)
    assert maps.recurrence == 3


@pytest.mark.parametrize("recurrence", [1, 2])
def test_model_recurrence_sets_the_number_of_maps(recurrence):
    torch.manual_seed(0)
    model = CCNet(3, backbone="resnet18", recurrence=recurrence, head_channels=16, aux=False, stem_widths=(8, 8, 16))
    maps = attention_maps(model.train(), torch.randn(1, 3, 32, 32), [(5, 5)])
    assert maps.loops.shape == (1, recurrence, 5, 5)  # ceil-mode pooling: 32 -> 5
    assert model.training  # the mode is restored


class TinyVideoModel(nn.Module):
    """The interface attention_maps expects of a video model: (B, 3, T, H, W) clips in, features
    (B, C, T, h, w) through a CrissCrossAttention3d loop, logits (B, K, T, H, W) out."""

    align_corners = False

    def __init__(self, recurrence=2):
        super().__init__()
        self.stem = nn.Conv3d(3, 8, kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.cca = CrissCrossAttention3d(8, reduction=2, gamma_init=1.0)
        self.classifier = nn.Conv3d(8, 5, kernel_size=1)
        self.recurrence = recurrence

    def features(self, clip):
        return self.stem(clip)

    def forward(self, clip):
        x = self.features(clip)
        for _ in range(self.recurrence):
            x = self.cca(x)
        return {"out": F.interpolate(self.classifier(x), size=clip.shape[2:], mode="trilinear")}


def test_video_model_maps_match_brute_force():
    torch.manual_seed(0)
    model = TinyVideoModel(recurrence=3).double()
    clip = torch.randn(3, 4, 12, 10, dtype=torch.float64)
    maps = attention_maps(model, clip, [(0, 0, 0), (2, 7, 4), (3, 11, 9)])
    assert maps.feature_size == (4, 6, 5)
    assert maps.positions == [(0, 0, 0), (2, 3, 2), (3, 5, 4)]  # align_corners=False: (c + 0.5) / 2 - 0.5
    with torch.no_grad():
        features = model.features(clip[None])
    expected_loops, expected_crosses = brute_force(model.cca, features, maps.positions, 3)
    torch.testing.assert_close(maps.loops, expected_loops[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(maps.crosses, expected_crosses[0], rtol=1e-10, atol=1e-12)
    assert maps.logits.shape == (1, 5, 4, 12, 10)


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize(("input_length", "feature_length"), [(192, 12), (45, 6), (61, 8), (7, 7), (1, 1)])
def test_feature_index_is_the_nearest_cell_under_the_upsampling(align_corners, input_length, feature_length):
    """Upsampling a map of cell indices with the model's interpolation and rounding gives the cell."""
    cells = torch.arange(feature_length, dtype=torch.float64).view(1, 1, feature_length)
    upsampled = F.interpolate(cells, size=input_length, mode="linear", align_corners=align_corners)[0, 0]
    expected = upsampled.round().long()
    got = feature_index(torch.arange(input_length), input_length, feature_length, align_corners)
    # Exactly half-way between two cells, either is nearest.
    ties = (upsampled - upsampled.floor() - 0.5).abs() < 1e-9
    assert torch.equal(got[~ties], expected[~ties])
    assert ((got[ties] - upsampled[ties]).abs() <= 0.5 + 1e-9).all()


def test_errors_name_the_pixel_and_the_model(tiny_ccnet):
    with pytest.raises(ValueError, match=r"pixel \(45, 0\) is outside the 45x61 input"):
        attention_maps(tiny_ccnet, torch.randn(3, 45, 61, dtype=torch.float64), [(45, 0)])
    with pytest.raises(ValueError, match="take one input"):
        attention_maps(tiny_ccnet, torch.randn(2, 3, 45, 61, dtype=torch.float64), [(0, 0)])
    no_attention = CCNet(3, backbone="resnet18", recurrence=0, head_channels=16, aux=False, stem_widths=(8, 8, 16))
    with pytest.raises(ValueError, match="ran no criss-cross attention"):
        attention_maps(no_attention, torch.randn(3, 32, 32), [(0, 0)])
    with pytest.raises(ValueError, match="has no criss-cross attention block"):
        attention_maps(nn.Conv2d(3, 3, 1), torch.randn(3, 8, 8), [(0, 0)])


def _as_3d_block(block):
    """A CrissCrossAttention3d with the weights of a 2D block (1x1 -> 1x1x1 convs)."""
    block_3d = CrissCrossAttention3d(block.in_channels, reduction=block.in_channels // block.query_conv.out_channels)
    state = {k: v[..., None] if v.dim() == 4 else v for k, v in block.state_dict().items()}
    block_3d.load_state_dict(state)
    return block_3d.to(torch.float64)


def test_ccnet3d_maps_match_brute_force_across_the_clip(tiny_ccnet):
    model = CCNet3D.from_ccnet(tiny_ccnet)
    clip = torch.randn(3, 3, 45, 61, dtype=torch.float64)
    pixels = [(0, 0, 0), (1, 20, 33), (2, 44, 60)]
    maps = attention_maps(model, clip, pixels)
    with torch.no_grad():
        frames = model.head.conva(model.backbone(clip.transpose(0, 1))[3])  # (T, C, h, w)
        logits = model(clip[None])["out"]
    assert maps.feature_size == (3, 6, 8) and maps.positions == [(0, 0, 0), (1, 2, 4), (2, 5, 7)]
    expected_loops, expected_crosses = brute_force(_as_3d_block(model.head.cca), frames.transpose(0, 1)[None],
                                                   maps.positions, 3)
    torch.testing.assert_close(maps.loops, expected_loops[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(maps.crosses, expected_crosses[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(maps.logits, logits)
    assert maps.loops[:, :, 0].sum() > 0 and maps.loops[:, 0].sum((-3, -2, -1)).sub(1).abs().max() < 1e-12


def test_ccnet3d_per_frame_maps_stay_in_their_frame_and_equal_the_2d_maps(tiny_ccnet):
    model = CCNet3D.from_ccnet(tiny_ccnet, temporal=False)
    clip = torch.randn(3, 3, 45, 61, dtype=torch.float64)
    maps = attention_maps(model, clip, [(1, 20, 33), (2, 44, 60)])
    for p, t in enumerate([1, 2]):
        frame_maps = attention_maps(tiny_ccnet, clip[:, t], [maps.pixels[p][1:]])
        torch.testing.assert_close(maps.loops[p, :, t], frame_maps.loops[0], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(maps.crosses[p, :, t], frame_maps.crosses[0], rtol=1e-10, atol=1e-12)
        others = [u for u in range(3) if u != t]
        assert maps.loops[p, :, others].abs().max() == 0
