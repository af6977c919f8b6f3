"""CCNet on CUDA under mixed precision: forward and backward under autocast float16 and bfloat16
stay finite, match float32 loosely, and GradScaler steps update the weights (or skip an overflow)."""

import pytest
import torch

from ccnet.losses import SegmentationCriterion
from ccnet.models import CCNet

pytestmark = pytest.mark.cuda

NUM_CLASSES = 7


def _model(memory_format=torch.contiguous_format):
    torch.manual_seed(0)
    model = CCNet(NUM_CLASSES, backbone="resnet18", head_channels=64, aux_channels=32, consistency=True,
                  gamma_init=0.5)
    return model.to("cuda", memory_format=memory_format)


def _batch(batch=2, size=(97, 129), seed=0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, *size, generator=gen).cuda()
    labels = torch.randint(0, NUM_CLASSES, (batch, *size), generator=gen).cuda()
    labels[:, :5] = 255  # some ignored pixels, as in real label maps
    return images, labels


def _criterion():
    return SegmentationCriterion(aux_weight=0.4, ohem=True, ohem_min_kept=1000, consistency=True)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_forward_and_backward_under_autocast_are_finite(dtype, memory_format):
    model, criterion = _model(memory_format).train(), _criterion()
    images, labels = _batch()
    images = images.contiguous(memory_format=memory_format)
    with torch.autocast("cuda", dtype=dtype):
        outputs = model(images)
        loss, logs = criterion(outputs, labels)
    assert set(outputs) == {"out", "aux", "embedding"}
    for name, tensor in outputs.items():
        assert torch.isfinite(tensor).all(), name
    assert torch.isfinite(loss), logs
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None for g in grads.values()), [n for n, g in grads.items() if g is None]
    for name, grad in grads.items():
        assert torch.isfinite(grad).all(), name
    # The attention itself learns: its query/key/value and gamma get gradients.
    attention = {n: g for n, g in grads.items() if ".cca." in n}
    assert attention and all(g.abs().sum() > 0 for g in attention.values())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_autocast_logits_close_to_float32(dtype):
    model = _model().eval()
    images, _ = _batch(batch=1)
    with torch.no_grad():
        full = model(images)["out"].float()
        with torch.autocast("cuda", dtype=dtype):
            mixed = model(images)["out"].float()
    assert torch.isfinite(mixed).all()
    error = (mixed - full).abs().max() / full.abs().max()
    assert error < (0.02 if dtype == torch.float16 else 0.1), f"{error:.3g}"


def test_grad_scaler_steps_update_weights_and_skip_an_overflow():
    model, criterion = _model().train(), _criterion()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda")
    images, labels = _batch()
    start = [p.detach().clone() for p in model.parameters()]
    losses, applied = [], 0
    for _ in range(20):  # the first steps may overflow at the initial scale (2**16) and be skipped
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16):
            loss, _ = criterion(model(images), labels)
        scale = scaler.get_scale()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss.item())
        applied += scaler.get_scale() >= scale  # a skipped step halves the scale
        if applied == 2:
            break
    assert applied == 2, f"no two GradScaler steps applied in {len(losses)} tries; scale {scaler.get_scale()}"
    assert all(torch.isfinite(torch.tensor(losses)))
    assert 0 < scaler.get_scale() < float("inf")
    moved = [not torch.equal(a, p.detach()) for a, p in zip(start, model.parameters(), strict=True)]
    assert sum(moved) > len(moved) // 2
    for p in model.parameters():
        assert torch.isfinite(p).all()

    # An overflowing gradient: the step is skipped (no weight changes) and the scale backs off.
    before = [p.detach().clone() for p in model.parameters()]
    scale = scaler.get_scale()
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.float16):
        loss, _ = criterion(model(images), labels)
    scaler.scale(loss).backward()
    next(model.parameters()).grad.view(-1)[0] = float("inf")
    scaler.step(optimizer)
    scaler.update()
    assert scaler.get_scale() == scale * 0.5
    for a, p in zip(before, model.parameters(), strict=True):
        assert torch.equal(a, p.detach())
