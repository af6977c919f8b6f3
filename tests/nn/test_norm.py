import copy

import pytest
import torch
from torch import nn

from ccnet.nn import FrozenBatchNorm2d, convert_sync_batchnorm, make_activation, make_norm
from ccnet.nn.norm import BatchNormAct2d, GroupNormAct, NativeSyncBatchNormAct2d, SyncBatchNormAct2d
from ccnet.nn.sync_batchnorm import SyncBatchNorm


@pytest.mark.parametrize("kind", ["bn", "syncbn", "gn", "frozenbn"])
def test_norms_build_with_and_without_activation(kind):
    plain = make_norm(kind, 24)
    fused = make_norm(kind, 24, act="leaky_relu")
    assert sorted(plain.state_dict()) == sorted(fused.state_dict())
    assert isinstance(fused.act, nn.LeakyReLU) and fused.act.negative_slope == 0.01


def test_fused_norm_equals_norm_then_activation():
    torch.manual_seed(0)
    fused = make_norm("bn", 6, act="leaky_relu").eval()
    plain = make_norm("bn", 6).eval()
    for m in (fused, plain):
        m.running_mean.uniform_(-1, 1)
    plain.load_state_dict(fused.state_dict())
    x = torch.randn(2, 6, 3, 3)
    torch.testing.assert_close(fused(x), nn.functional.leaky_relu(plain(x), 0.01))
    gn = make_norm("gn", 64, act="relu")
    assert isinstance(gn, GroupNormAct) and gn.num_groups == 32
    assert make_norm("gn", 48).num_groups == 24  # largest divisor of 48 not above 32


def test_frozen_bn_never_updates():
    frozen = FrozenBatchNorm2d(4)
    assert not frozen.weight.requires_grad and not frozen.bias.requires_grad
    x = torch.randn(3, 4, 5, 5) * 3 + 1
    frozen.train()
    y_train = frozen(x)
    frozen.eval()
    torch.testing.assert_close(y_train, frozen(x))
    assert torch.equal(frozen.running_mean, torch.zeros(4))


def _norms_model() -> nn.Sequential:
    """Conv, fused BN + leaky ReLU, plain BN, frozen BN, with non-trivial statistics and weights."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), make_norm("bn", 4, act="leaky_relu"), make_norm("bn", 4),
                          make_norm("frozenbn", 4))
    with torch.no_grad():
        for norm in model[1:]:
            norm.running_mean.uniform_(-1, 1)
            norm.running_var.uniform_(0.5, 2)
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    model[2].bias.requires_grad_(False)
    return model


@pytest.mark.parametrize("native", [False, True], ids=["ours", "native"])
def test_convert_sync_batchnorm_keeps_fused_activation_keys_and_values(native):
    model = _norms_model()
    original = copy.deepcopy(model)
    converted = convert_sync_batchnorm(model, native=native)
    fused, plain = (NativeSyncBatchNormAct2d, nn.SyncBatchNorm) if native else (SyncBatchNormAct2d, SyncBatchNorm)
    assert type(converted[1]) is fused and type(converted[2]) is plain
    assert isinstance(converted[1].act, nn.LeakyReLU) and converted[1].act.negative_slope == 0.01
    assert type(converted[3]) is FrozenBatchNorm2d
    assert not converted[2].bias.requires_grad and converted[2].weight.requires_grad
    state, before = converted.state_dict(), original.state_dict()
    assert list(state) == list(before) and all(torch.equal(state[k], before[k]) for k in state)
    original.load_state_dict(state)  # checkpoints move between the two, strictly
    x = torch.randn(2, 3, 5, 5) * 2
    with torch.no_grad():  # same function in eval mode, fused activation included
        torch.testing.assert_close(converted.eval()(x), original.eval()(x))
        # and outside a process group in training mode: batch statistics, running stats updated alike
        torch.testing.assert_close(converted.train()(x), original.train()(x))
    torch.testing.assert_close(converted[1].running_var, original[1].running_var)


def test_convert_sync_batchnorm_between_ours_and_native():
    native = convert_sync_batchnorm(_norms_model(), native=True)
    assert convert_sync_batchnorm(native, native=True) is native and type(native[1]) is NativeSyncBatchNormAct2d
    ours = convert_sync_batchnorm(copy.deepcopy(native))  # a model built with ours -> native, and back
    assert type(ours[1]) is SyncBatchNormAct2d and type(ours[2]) is SyncBatchNorm
    again = convert_sync_batchnorm(ours, native=True)
    assert type(again[1]) is NativeSyncBatchNormAct2d and type(again[2]) is nn.SyncBatchNorm
    x = torch.randn(1, 3, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), native.eval()(x))
    assert not any(isinstance(m, BatchNormAct2d) for m in again.modules())


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="unknown norm 'ln'"):
        make_norm("ln", 4)
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        make_activation("gelu")
