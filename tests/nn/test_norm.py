import pytest
import torch
from torch import nn

from ccnet.nn import FrozenBatchNorm2d, convert_sync_batchnorm, make_activation, make_norm
from ccnet.nn.norm import BatchNormAct2d, GroupNormAct, SyncBatchNormAct2d
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


def test_convert_sync_batchnorm_keeps_fused_activation():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), make_norm("bn", 4, act="leaky_relu"), make_norm("bn", 4),
                          make_norm("frozenbn", 4))
    model[1].running_mean.fill_(0.3)
    converted = convert_sync_batchnorm(model)
    assert isinstance(converted[1], SyncBatchNormAct2d) and isinstance(converted[1].act, nn.LeakyReLU)
    assert type(converted[2]) is SyncBatchNorm
    assert isinstance(converted[3], FrozenBatchNorm2d)
    assert torch.equal(converted[1].running_mean, torch.full((4,), 0.3))
    assert not isinstance(converted[1], BatchNormAct2d) or isinstance(converted[1], nn.SyncBatchNorm)


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="unknown norm 'ln'"):
        make_norm("ln", 4)
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        make_activation("gelu")
