import pytest
import torch
import torch.nn.functional as F

from ccnet.losses import CrossEntropyLoss, cross_entropy


def _random_case(seed: int = 0, shape=(2, 5, 6, 7), ignore_frac: float = 0.3):
    g = torch.Generator().manual_seed(seed)
    b, k, h, w = shape
    logits = torch.randn(b, k, h, w, generator=g, dtype=torch.float64)
    target = torch.randint(0, k, (b, h, w), generator=g)
    target[torch.rand(b, h, w, generator=g) < ignore_frac] = 255
    return logits, target


def test_matches_torch_cross_entropy_on_valid_pixels():
    logits, target = _random_case()
    valid = target != 255
    expected = F.cross_entropy(logits.permute(0, 2, 3, 1)[valid], target[valid])
    torch.testing.assert_close(cross_entropy(logits, target), expected)
    torch.testing.assert_close(
        cross_entropy(logits, target), F.cross_entropy(logits, target, ignore_index=255)
    )


def test_custom_ignore_index_and_uint8_target():
    logits, target = _random_case(1)
    target[target == 255] = 3
    valid = target != 3
    expected = F.cross_entropy(logits.permute(0, 2, 3, 1)[valid], target[valid])
    torch.testing.assert_close(cross_entropy(logits, target, ignore_index=3), expected)
    torch.testing.assert_close(cross_entropy(logits, target.to(torch.uint8), ignore_index=3), expected)


def test_all_ignored_is_zero_with_finite_grads():
    logits = torch.randn(2, 4, 3, 3, requires_grad=True)
    target = torch.full((2, 3, 3), 255)
    loss = cross_entropy(logits, target)
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None
    assert torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize("align_corners", [False, True])
def test_upsamples_logits_to_target_size(align_corners: bool):
    logits, _ = _random_case(2, shape=(2, 3, 4, 5))
    _, target = _random_case(3, shape=(2, 3, 8, 10))
    up = F.interpolate(logits, size=(8, 10), mode="bilinear", align_corners=align_corners)
    expected = F.cross_entropy(up, target, ignore_index=255)
    torch.testing.assert_close(cross_entropy(logits, target, align_corners=align_corners), expected)
    other = F.interpolate(logits, size=(8, 10), mode="bilinear", align_corners=not align_corners)
    assert not torch.allclose(
        cross_entropy(logits, target, align_corners=align_corners),
        F.cross_entropy(other, target, ignore_index=255),
    )


def test_module_matches_function():
    logits, target = _random_case(4)
    crit = CrossEntropyLoss(ignore_index=255, align_corners=True)
    torch.testing.assert_close(crit(logits, target), cross_entropy(logits, target, align_corners=True))
    assert "ignore_index=255" in repr(crit)


@pytest.mark.parametrize(
    ("logits_shape", "target_shape"),
    [
        ((2, 3, 4, 4), (3, 4, 4)),  # batch mismatch
        ((2, 3, 4, 4), (2, 1, 4, 4)),  # target ndim
        ((3, 4, 4), (3, 4, 4)),  # logits ndim
    ],
)
def test_shape_errors_name_both_shapes(logits_shape, target_shape):
    with pytest.raises(ValueError) as err:
        cross_entropy(torch.zeros(logits_shape), torch.zeros(target_shape, dtype=torch.long))
    assert str(tuple(logits_shape)) in str(err.value)
    assert str(tuple(target_shape)) in str(err.value)


def test_float_target_rejected():
    with pytest.raises(TypeError, match="integer"):
        cross_entropy(torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 2))
