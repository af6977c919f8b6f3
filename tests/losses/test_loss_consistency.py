import math

import pytest
import torch

from ccnet.losses import (
    CategoryConsistentLoss,
    ConsistencyTerms,
    category_consistent_loss,
    category_consistent_terms,
)

IGNORE = 255


def _line(values, labels):
    """1-D embedding on a 1 x N map: embedding (1, 1, 1, N), target (1, 1, N)."""
    embedding = torch.tensor(values, dtype=torch.float64).reshape(1, 1, 1, -1)
    target = torch.tensor(labels).reshape(1, 1, -1)
    return embedding, target


def _assert_terms(terms: ConsistencyTerms, var: float, dis: float, reg: float, tol: float = 1e-12) -> None:
    assert terms.var.item() == pytest.approx(var, rel=tol, abs=tol)
    assert terms.dis.item() == pytest.approx(dis, rel=tol, abs=tol)
    assert terms.reg.item() == pytest.approx(reg, rel=tol, abs=tol)


# Three classes on a 1 x 8 map (delta_v = 0.5, delta_d = 1.5):
#   class 0: 0, 0, 0, 4   -> mu = 1,   d = 1, 1, 1, 3
#   class 1: 9.75, 10.25  -> mu = 10,  d = 0.25, 0.25
#   class 2: 2.5, 2.5     -> mu = 2.5, d = 0, 0
THREE_VALUES = [0.0, 9.75, 0.0, 2.5, 0.0, 10.25, 4.0, 2.5]
THREE_LABELS = [0, 1, 0, 2, 0, 1, 0, 2]
# phi_var piecewise: d = 1 in (dv, dd] -> (1 - 0.5)^2 = 0.25; d = 3 > dd -> (3 - 1.5) + (1.5 - 0.5)^2 = 2.5;
#                    d <= dv -> 0.  Class means: 0: (3 * 0.25 + 2.5) / 4 = 0.8125; 1: 0; 2: 0.
THREE_VAR_PIECEWISE = (0.8125 + 0 + 0) / 3
# phi_var quadratic differs only at d = 3: (3 - 0.5)^2 = 6.25 -> class 0: (3 * 0.25 + 6.25) / 4 = 1.75.
THREE_VAR_QUADRATIC = (1.75 + 0 + 0) / 3
# Centre distances: |1 - 10| = 9 > 3 -> 0; |1 - 2.5| = 1.5 <= 3 -> (3 - 1.5)^2 = 2.25; |10 - 2.5| = 7.5 -> 0.
# Ordered pairs: 2 * 2.25 over 3 * 2 pairs.
THREE_DIS = 2 * 2.25 / (3 * 2)
THREE_REG = (1 + 10 + 2.5) / 3


def test_piecewise_three_classes_1d():
    terms = category_consistent_terms(*_line(THREE_VALUES, THREE_LABELS))
    _assert_terms(terms, THREE_VAR_PIECEWISE, THREE_DIS, THREE_REG)
    loss = category_consistent_loss(*_line(THREE_VALUES, THREE_LABELS))
    assert loss.item() == pytest.approx(THREE_VAR_PIECEWISE + THREE_DIS + 0.001 * THREE_REG, rel=1e-12)


def test_quadratic_differs_only_beyond_delta_d():
    terms = category_consistent_terms(*_line(THREE_VALUES, THREE_LABELS), variant="quadratic")
    _assert_terms(terms, THREE_VAR_QUADRATIC, THREE_DIS, THREE_REG)
    # Move the outlier from 4 to 2.6 (mu = 0.65, d = 0.65, 0.65, 0.65, 1.95 > dd): still differ.
    # Move it to 2 instead: mu = 0.5, d = 0.5, 0.5, 0.5, 1.5 <= dd everywhere: identical.
    values = [2.0 if v == 4.0 else v for v in THREE_VALUES]
    piecewise = category_consistent_terms(*_line(values, THREE_LABELS), variant="piecewise")
    quadratic = category_consistent_terms(*_line(values, THREE_LABELS), variant="quadratic")
    expected_var = (1.0 * (1.5 - 0.5) ** 2 / 4) / 3  # only d = 1.5 costs (1.5 - 0.5)^2
    assert piecewise.var.item() == pytest.approx(expected_var, rel=1e-12)
    assert quadratic.var.item() == pytest.approx(expected_var, rel=1e-12)


def test_euclidean_distance_over_channels_2d():
    # 2 x 2 map, D = 2: class 0 at (0, 0) and (3, 4) -> mu = (1.5, 2), d = 2.5 each (> dd);
    # class 1 at (6, 8) twice -> mu = (6, 8), d = 0.
    embedding = torch.tensor([[[0.0, 3.0], [6.0, 6.0]], [[0.0, 4.0], [8.0, 8.0]]], dtype=torch.float64)[None]
    target = torch.tensor([[[0, 0], [1, 1]]])
    piecewise = category_consistent_terms(embedding, target)
    quadratic = category_consistent_terms(embedding, target, variant="quadratic")
    var_piecewise = ((2.5 - 1.5) + (1.5 - 0.5) ** 2 + 0) / 2
    var_quadratic = ((2.5 - 0.5) ** 2 + 0) / 2
    dis = 0.0  # ||(4.5, 6)|| = 7.5 > 3
    reg = (2.5 + 10.0) / 2  # ||(1.5, 2)|| = 2.5, ||(6, 8)|| = 10
    _assert_terms(piecewise, var_piecewise, dis, reg)
    _assert_terms(quadratic, var_quadratic, dis, reg)


def test_push_inside_margin_2d():
    # Centres (0, 0) and (0.6, 0.8): distance 1 <= 2 * 1.5 -> (3 - 1)^2 = 4 for each ordered pair.
    embedding = torch.tensor([[[0.0, 0.6]], [[0.0, 0.8]]], dtype=torch.float64)[None]
    target = torch.tensor([[[4, 7]]])
    _assert_terms(category_consistent_terms(embedding, target), 0.0, 4.0, (0 + 1.0) / 2)


def test_weights_and_custom_margins():
    embedding, target = _line(THREE_VALUES, THREE_LABELS)
    loss = category_consistent_loss(
        embedding, target, delta_v=1.0, delta_d=2.0, alpha=2.0, beta=3.0, gamma=0.5
    )
    # d = 1, 1, 1, 3 with dv = 1, dd = 2: 0, 0, 0, (3 - 2) + (2 - 1)^2 = 2 -> class 0: 2 / 4; others 0.
    var = (2 / 4) / 3
    # 2 * dd = 4: |1 - 2.5| = 1.5 -> (4 - 1.5)^2 = 6.25; 9 and 7.5 -> 0.
    dis = 2 * 6.25 / 6
    assert loss.item() == pytest.approx(2.0 * var + 3.0 * dis + 0.5 * THREE_REG, rel=1e-12)


def test_ignored_pixels_are_excluded():
    values = [*THREE_VALUES, 100.0, -50.0]
    labels = [*THREE_LABELS, IGNORE, IGNORE]
    _assert_terms(
        category_consistent_terms(*_line(values, labels)), THREE_VAR_PIECEWISE, THREE_DIS, THREE_REG
    )
    labels = [*THREE_LABELS, 9, 9]
    terms = category_consistent_terms(*_line(values, labels), ignore_index=9)
    _assert_terms(terms, THREE_VAR_PIECEWISE, THREE_DIS, THREE_REG)


def test_single_class_has_no_push_term():
    terms = category_consistent_terms(*_line([0.0, 0.0, 0.0, 4.0, 7.0], [0, 0, 0, 0, IGNORE]))
    assert terms.dis.item() == 0.0
    _assert_terms(terms, 0.8125, 0.0, 1.0)


def test_labels_downsampled_with_nearest_from_twice_the_size():
    # Nearest with scale 1/2 reads the top-left label of each 2 x 2 block: columns 0, 2, 4, 6 of row 0.
    target = torch.tensor([[[0, 2, 1, 2, 0, 255, 1, 3], [3, 3, 2, 2, 255, 255, 0, 0]]])
    embedding = torch.tensor([0.0, 3.0, 2.0, 3.5], dtype=torch.float64).reshape(1, 1, 1, 4)
    # Labels 0, 1, 0, 1: class 0 = {0, 2} -> mu 1, d 1, 1; class 1 = {3, 3.5} -> mu 3.25, d 0.25, 0.25.
    var = ((0.25 + 0.25) / 2 + 0) / 2
    dis = 2 * (3 - 2.25) ** 2 / 2  # |1 - 3.25| = 2.25 <= 3
    reg = (1 + 3.25) / 2
    _assert_terms(category_consistent_terms(embedding, target), var, dis, reg)
    direct = category_consistent_terms(embedding, target[:, ::2, ::2])
    _assert_terms(direct, var, dis, reg)


def test_batch_averages_over_images_with_labelled_pixels():
    # Image 0: the three-class case. Image 1: class 0 = {0, 2} (d = 1, 1), class 1 = {5} x 4 (d = 0),
    # two ignored pixels; same label ids as image 0 but must not be merged with it.
    # Image 2: everything ignored, so it does not count in the average.
    values = [THREE_VALUES, [0.0, 2.0, 5.0, 5.0, 5.0, 5.0, 40.0, 40.0], [1.0] * 8]
    labels = [THREE_LABELS, [0, 0, 1, 1, 1, 1, IGNORE, IGNORE], [IGNORE] * 8]
    embedding = torch.tensor(values, dtype=torch.float64).reshape(3, 1, 1, 8)
    target = torch.tensor(labels).reshape(3, 1, 8)
    var_1 = (0.25 + 0) / 2
    dis_1 = 0.0  # |1 - 5| = 4 > 3
    reg_1 = (1 + 5) / 2
    terms = category_consistent_terms(embedding, target)
    _assert_terms(terms, (THREE_VAR_PIECEWISE + var_1) / 2, (THREE_DIS + dis_1) / 2, (THREE_REG + reg_1) / 2)


def test_all_ignored_gives_zero_and_zero_grads():
    embedding = torch.randn(2, 4, 3, 3, requires_grad=True)
    terms = category_consistent_terms(embedding, torch.full((2, 6, 6), IGNORE))
    assert [t.item() for t in terms] == [0.0, 0.0, 0.0]
    loss = terms.weighted_sum()
    loss.backward()
    assert torch.equal(embedding.grad, torch.zeros_like(embedding))


def test_gradients_finite_with_identical_features_and_centres():
    # All pixels identical (and zero): d_i = 0, the two centres coincide, ||mu|| = 0.
    for fill in (0.0, 0.3):
        embedding = torch.full((1, 3, 2, 2), fill, requires_grad=True)
        target = torch.tensor([[[0, 0], [1, 1]]])
        loss = category_consistent_loss(embedding, target, gamma=1.0)
        loss.backward()
        assert torch.isfinite(loss)
        assert torch.isfinite(embedding.grad).all()
    assert loss.item() == pytest.approx(9.0 + 1.0 * 0.3 * math.sqrt(3), rel=1e-5)  # phi_dis(0) = (2 dd)^2


def _distances(embedding: torch.Tensor, target: torch.Tensor):
    """Pixel-to-centre and centre-to-centre distances, computed with plain loops (one image)."""
    feats = embedding[0].reshape(embedding.shape[1], -1).T
    labels = target.reshape(-1)
    centres, pixel_d = {}, []
    for c in labels.unique().tolist():
        if c == IGNORE:
            continue
        centres[c] = feats[labels == c].mean(0)
        pixel_d += [torch.dist(f, centres[c]).item() for f in feats[labels == c]]
    centre_d = [
        torch.dist(a, b).item()
        for i, a in enumerate(centres.values())
        for b in list(centres.values())[i + 1 :]
    ]
    return pixel_d, centre_d


@pytest.mark.parametrize("variant", ["piecewise", "quadratic"])
def test_gradcheck_float64(variant):
    g = torch.Generator().manual_seed(2)
    embedding = 1.5 * torch.randn(1, 3, 3, 4, generator=g, dtype=torch.float64)
    target = torch.tensor([[[0, 0, 1, 1], [0, 2, 1, 1], [2, 2, IGNORE, 0]]])
    delta_v, delta_d = 0.9, 1.4
    pixel_d, centre_d = _distances(embedding, target)
    # Away from the kinks, and every branch of phi_var / phi_dis is exercised.
    assert min(min(abs(d - delta_v), abs(d - delta_d)) for d in pixel_d) > 1e-3
    assert min(abs(d - 2 * delta_d) for d in centre_d) > 1e-3
    assert any(d < delta_v for d in pixel_d) and any(delta_v < d < delta_d for d in pixel_d)
    assert any(d > delta_d for d in pixel_d)
    assert any(d < 2 * delta_d for d in centre_d) and any(d > 2 * delta_d for d in centre_d)

    def fn(x):
        return category_consistent_loss(x, target, delta_v, delta_d, gamma=0.1, variant=variant)

    assert torch.autograd.gradcheck(fn, (embedding.requires_grad_(True),))


def test_module_matches_functions():
    embedding, target = _line(THREE_VALUES, THREE_LABELS)
    crit = CategoryConsistentLoss(alpha=2.0, beta=0.5, gamma=0.1, variant="quadratic")
    terms = crit.terms(embedding, target)
    _assert_terms(terms, THREE_VAR_QUADRATIC, THREE_DIS, THREE_REG)
    expected = category_consistent_loss(
        embedding, target, alpha=2.0, beta=0.5, gamma=0.1, variant="quadratic"
    )
    torch.testing.assert_close(crit(embedding, target), expected)
    assert "variant='quadratic'" in repr(crit)


def test_half_precision_input():
    embedding, target = _line(THREE_VALUES, THREE_LABELS)
    terms = category_consistent_terms(embedding.to(torch.bfloat16), target)
    assert terms.var.dtype == torch.float32
    _assert_terms(terms, THREE_VAR_PIECEWISE, THREE_DIS, THREE_REG, tol=1e-6)


def test_invalid_variant_and_margins():
    embedding, target = _line(THREE_VALUES, THREE_LABELS)
    with pytest.raises(ValueError, match="'cubic'"):
        category_consistent_loss(embedding, target, variant="cubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'cubic'"):
        CategoryConsistentLoss(variant="cubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="delta_v"):
        CategoryConsistentLoss(delta_v=2.0, delta_d=1.0)


def test_shape_error_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 16, 4, 4\).*\(3, 8, 8\)"):
        category_consistent_loss(torch.zeros(2, 16, 4, 4), torch.zeros(3, 8, 8, dtype=torch.long))
