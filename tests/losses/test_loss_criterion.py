import pytest
import torch
import torch.nn.functional as F

from ccnet.losses import SegmentationCriterion, category_consistent_terms, ohem_cross_entropy


def _batch(seed: int = 0, num_classes: int = 5, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, num_classes, (2, 16, 16), generator=g)
    target[torch.rand(2, 16, 16, generator=g) < 0.2] = 255
    shapes = {"out": (2, num_classes, 16, 16), "aux": (2, num_classes, 4, 4), "embedding": (2, 16, 4, 4)}
    outputs = {
        key: (scale * torch.randn(shape, generator=g, dtype=torch.float64)).requires_grad_(True)
        for key, shape in shapes.items()
    }
    return outputs, target


def _ce(logits, target):
    """Reference CE: bilinear upsampling (align_corners=False) + torch's mean over labelled pixels."""
    logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits, target, ignore_index=255)


def test_main_plus_weighted_aux():
    outputs, target = _batch()
    loss, logs = SegmentationCriterion()(outputs, target)
    main, aux = _ce(outputs["out"], target), _ce(outputs["aux"], target)
    torch.testing.assert_close(loss, main + 0.4 * aux)
    torch.testing.assert_close(logs["main"], main.detach())
    torch.testing.assert_close(logs["aux"], aux.detach())
    torch.testing.assert_close(logs["loss"], loss.detach())
    assert set(logs) == {"loss", "main", "aux"}
    assert all(not v.requires_grad for v in logs.values())
    loss.backward()
    assert outputs["out"].grad is not None and outputs["aux"].grad is not None
    assert outputs["embedding"].grad is None


def test_with_consistency_and_custom_weights():
    outputs, target = _batch(1)
    kwargs = {"delta_v": 0.4, "delta_d": 2.0, "alpha": 1.0, "beta": 0.5, "gamma": 0.01}
    crit = SegmentationCriterion(aux_weight=0.25, consistency=True, consistency_kwargs=kwargs)
    loss, logs = crit(outputs, target)
    terms = category_consistent_terms(outputs["embedding"], target, delta_v=0.4, delta_d=2.0)
    consistency = terms.var + 0.5 * terms.dis + 0.01 * terms.reg
    expected = _ce(outputs["out"], target) + 0.25 * _ce(outputs["aux"], target) + consistency
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(logs["consistency"], consistency.detach())
    torch.testing.assert_close(logs["consistency_var"], terms.var.detach())
    torch.testing.assert_close(logs["consistency_dis"], terms.dis.detach())
    torch.testing.assert_close(logs["consistency_reg"], terms.reg.detach())
    assert terms.var.item() > 0 and terms.dis.item() > 0
    loss.backward()
    assert torch.isfinite(outputs["embedding"].grad).all()
    assert outputs["embedding"].grad.abs().sum() > 0


def test_consistency_weight_scales_the_term_and_the_parts_add_up():
    outputs, target = _batch(2)
    crit = SegmentationCriterion(consistency=True)
    full, logs = crit(outputs, target)
    loss, logs, parts = crit(outputs, target, consistency_weight=0.25, return_parts=True)
    ce = _ce(outputs["out"], target) + 0.4 * _ce(outputs["aux"], target)
    torch.testing.assert_close(parts["ce"], ce)
    torch.testing.assert_close(parts["consistency"], 0.25 * logs["consistency"])  # logged unweighted
    torch.testing.assert_close(loss, ce + 0.25 * (full - ce))
    assert logs["consistency_weight"].item() == 0.25 and parts["consistency"].requires_grad
    assert set(SegmentationCriterion()(outputs, target, return_parts=True)[2]) == {"ce"}


def test_ohem_applies_to_main_output_only():
    outputs, target = _batch(2, scale=5.0)  # confident logits: many pixels with p > 0.7
    crit = SegmentationCriterion(ohem=True, ohem_thresh=0.7, ohem_min_kept=50)
    loss, logs = crit(outputs, target)
    main = ohem_cross_entropy(outputs["out"], target, thresh=0.7, min_kept=50)
    aux = _ce(outputs["aux"], target)
    assert not torch.allclose(main, _ce(outputs["out"], target))  # OHEM really changes the main loss
    assert not torch.allclose(aux, ohem_cross_entropy(outputs["aux"], target, thresh=0.7, min_kept=50))
    torch.testing.assert_close(loss, main + 0.4 * aux)
    torch.testing.assert_close(logs["aux"], aux.detach())


def test_eval_outputs_without_aux_and_zero_aux_weight():
    outputs, target = _batch(3)
    main = _ce(outputs["out"], target)
    loss, logs = SegmentationCriterion()({"out": outputs["out"]}, target)
    torch.testing.assert_close(loss, main)
    assert set(logs) == {"loss", "main"}
    loss, logs = SegmentationCriterion(aux_weight=0.0)(outputs, target)
    torch.testing.assert_close(loss, main)
    assert "aux" not in logs


def test_missing_embedding_names_the_key():
    outputs, target = _batch(4)
    del outputs["embedding"]
    with pytest.raises(ValueError, match="'embedding'"):
        SegmentationCriterion(consistency=True)(outputs, target)
    with pytest.raises(ValueError, match="'out'"):
        SegmentationCriterion()({"aux": outputs["aux"]}, target)


def test_align_corners_is_forwarded():
    outputs, target = _batch(5)
    loss, _ = SegmentationCriterion(aux_weight=1.0, align_corners=True)(outputs, target)
    up = F.interpolate(outputs["aux"], size=(16, 16), mode="bilinear", align_corners=True)
    torch.testing.assert_close(
        loss, _ce(outputs["out"], target) + F.cross_entropy(up, target, ignore_index=255)
    )


def test_invalid_arguments():
    with pytest.raises(ValueError, match="aux_weight"):
        SegmentationCriterion(aux_weight=-1.0)
    with pytest.raises(ValueError, match="'l1'"):
        SegmentationCriterion(consistency=True, consistency_kwargs={"variant": "l1"})
