import math

import pytest
import torch
import torch.nn.functional as F

from ccnet.losses import OhemCrossEntropyLoss, cross_entropy, ohem_cross_entropy, ohem_keep_mask

# Six labelled pixels with these true-class probabilities, plus two ignored pixels.
PROBS = [0.8, 0.1, 0.95, 0.5, 0.3, 0.75]


def _known_case(probs=PROBS):
    """(1, 2, 2, 4) logits and (1, 2, 4) target where labelled pixel j has p(true class) = probs[j].

    Two classes: logits (log((1-p)/p), 0) with label 1 give softmax p for class 1; labels alternate
    0/1 (with the logits swapped for label 0). The last two pixels are ignored.
    """
    logits = torch.zeros(2, 8, dtype=torch.float64)
    target = torch.full((8,), 255)
    for j, p in enumerate(probs):
        label = j % 2
        logits[1 - label, j] = math.log((1 - p) / p)
        target[j] = label
    return logits.reshape(1, 2, 2, 4), target.reshape(1, 2, 4)


def _mean_nll(probs):
    return sum(-math.log(p) for p in probs) / len(probs)


@pytest.mark.parametrize(
    ("thresh", "min_kept", "kept"),
    [
        (0.7, 2, [0.1, 0.3, 0.5]),  # 2nd smallest 0.3 <= 0.7: threshold 0.7
        (0.7, 3, [0.1, 0.3, 0.5]),
        (0.7, 4, [0.1, 0.3, 0.5, 0.75]),  # 4th smallest 0.75 > 0.7: threshold 0.75
        (0.7, 5, [0.1, 0.3, 0.5, 0.75, 0.8]),
        (0.7, 6, PROBS),  # k = num_valid: threshold = max prob
        (0.7, 10, PROBS),  # min_kept > num_valid: keep all labelled pixels
        (0.7, 0, PROBS),  # official code mines only when min_kept > 0
        (0.2, 2, [0.1, 0.3]),  # threshold raised from 0.2 to the 2nd smallest, 0.3
        (0.2, 1, [0.1]),
        (0.99, 1, PROBS),
    ],
)
def test_keeps_exactly_the_expected_pixels(thresh, min_kept, kept):
    logits, target = _known_case()
    mask = ohem_keep_mask(logits, target, thresh=thresh, min_kept=min_kept)
    expected_mask = [p in kept for p in PROBS] + [False, False]
    assert mask.reshape(-1).tolist() == expected_mask
    loss = ohem_cross_entropy(logits, target, thresh=thresh, min_kept=min_kept)
    assert loss.item() == pytest.approx(_mean_nll(kept), rel=1e-9)


def test_ties_at_the_threshold_are_all_kept():
    logits, target = _known_case([0.2, 0.9, 0.2, 0.2])
    mask = ohem_keep_mask(logits, target, thresh=0.1, min_kept=1)
    assert mask.reshape(-1).tolist() == [True, False, True, True] + [False] * 4


def test_gradient_only_through_kept_pixels():
    logits, target = _known_case()
    logits.requires_grad_(True)
    ohem_cross_entropy(logits, target, thresh=0.7, min_kept=4).backward()
    touched = logits.grad.abs().sum(dim=1).reshape(-1) > 0
    assert touched.tolist() == [False, True, False, True, True, True, False, False]


def _official_ohem(pred, target, ignore_index, thresh, min_kept):
    """Literal port of the official OhemCrossEntropy2dTensor.forward (sort-based)."""
    b, c, h, w = pred.size()
    target = target.reshape(-1).clone()
    valid_mask = target.ne(ignore_index)
    target = target * valid_mask.long()
    num_valid = valid_mask.sum()
    prob = F.softmax(pred, dim=1)
    prob = (prob.transpose(0, 1)).reshape(c, -1)
    if min_kept > num_valid:
        pass
    elif num_valid > 0:
        prob = prob.masked_fill_(~valid_mask, 1)
        mask_prob = prob[target, torch.arange(len(target), dtype=torch.long)]
        threshold = thresh
        if min_kept > 0:
            _, index = mask_prob.sort()
            threshold_index = index[min(len(index), min_kept) - 1]
            if mask_prob[threshold_index] > thresh:
                threshold = mask_prob[threshold_index]
            kept_mask = mask_prob.le(threshold)
            target = target * kept_mask.long()
            valid_mask = valid_mask * kept_mask
    target = target.masked_fill_(~valid_mask, ignore_index)
    return F.cross_entropy(pred, target.view(b, h, w), ignore_index=ignore_index)


@pytest.mark.parametrize("min_kept", [1, 7, 50, 150, 190, 1000])
@pytest.mark.parametrize("thresh", [0.3, 0.7])
def test_matches_official_implementation(min_kept, thresh):
    g = torch.Generator().manual_seed(min_kept)
    logits = 2 * torch.randn(2, 4, 10, 12, generator=g, dtype=torch.float64)
    target = torch.randint(0, 4, (2, 10, 12), generator=g)
    target[torch.rand(2, 10, 12, generator=g) < 0.2] = 255
    expected = _official_ohem(logits, target, 255, thresh, min_kept)
    torch.testing.assert_close(ohem_cross_entropy(logits, target, thresh, min_kept), expected)


def test_upsamples_before_mining():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    target = torch.randint(0, 3, (2, 8, 10), generator=g)
    up = F.interpolate(logits, size=(8, 10), mode="bilinear", align_corners=True)
    expected = _official_ohem(up, target, 255, 0.7, 40)
    loss = ohem_cross_entropy(logits, target, 0.7, 40, align_corners=True)
    torch.testing.assert_close(loss, expected)


def test_all_ignored_is_zero_with_finite_grads():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    target = torch.full((1, 4, 4), 255)
    for min_kept in (0, 5):
        loss = ohem_cross_entropy(logits, target, min_kept=min_kept)
        assert loss.item() == 0.0
        (grad,) = torch.autograd.grad(loss, logits)
        assert torch.equal(grad, torch.zeros_like(grad))


def test_min_kept_above_valid_count_is_plain_cross_entropy():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 5, 6, 6, generator=g)
    target = torch.randint(0, 5, (2, 6, 6), generator=g)
    torch.testing.assert_close(
        ohem_cross_entropy(logits, target, min_kept=100_000), cross_entropy(logits, target)
    )


def test_module_matches_function():
    logits, target = _known_case()
    crit = OhemCrossEntropyLoss(thresh=0.7, min_kept=4)
    torch.testing.assert_close(crit(logits, target), ohem_cross_entropy(logits, target, 0.7, 4))
    assert "min_kept=4" in repr(crit)


def test_shape_error():
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 4\).*\(1, 4, 4\)"):
        ohem_cross_entropy(torch.zeros(2, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
