"""The RCCA head and the auxiliary head."""

import pytest
import torch

from ccnet.nn import FCNHead, RCCAHead, RCCAModule


def test_official_key_layout():
    head = RCCAHead(2048, 19)
    shapes = {name: tuple(t.shape) for name, t in head.state_dict().items()}
    assert shapes["conva.0.weight"] == (512, 2048, 3, 3)
    assert shapes["conva.1.weight"] == (512,)
    assert shapes["cca.query_conv.weight"] == (64, 512, 1, 1)
    assert shapes["cca.value_conv.weight"] == (512, 512, 1, 1)
    assert shapes["cca.gamma"] == (1,)
    assert shapes["convb.0.weight"] == (512, 512, 3, 3)
    assert shapes["bottleneck.0.weight"] == (512, 2560, 3, 3)
    assert shapes["bottleneck.3.weight"] == (19, 512, 1, 1)
    assert shapes["bottleneck.3.bias"] == (19,)
    assert "conva.0.bias" not in shapes and "bottleneck.0.bias" not in shapes
    assert isinstance(head.bottleneck[2], torch.nn.Dropout2d)
    assert RCCAModule is RCCAHead


def test_head_norms_apply_leaky_relu():
    head = RCCAHead(16, 3, channels=8).eval()
    x = torch.randn(1, 16, 4, 4)
    normed = head.conva[1]
    pre = torch.nn.functional.batch_norm(
        head.conva[0](x), normed.running_mean, normed.running_var, normed.weight, normed.bias, False
    )
    torch.testing.assert_close(normed(head.conva[0](x)), torch.nn.functional.leaky_relu(pre, 0.01))


def test_loops_share_weights_and_override():
    torch.manual_seed(0)
    head = RCCAHead(16, 3, channels=8, recurrence=2).eval()
    with torch.no_grad():
        head.cca.gamma.fill_(0.5)
    x = torch.randn(2, 16, 5, 6)
    expected_features = head.cca(head.cca(head.conva(x)))
    expected = head.bottleneck(torch.cat([x, head.convb(expected_features)], 1))
    logits, embedding = head(x)
    torch.testing.assert_close(logits, expected)
    assert embedding is None
    assert not torch.allclose(head(x, recurrence=1)[0], logits)
    assert sum(1 for m in head.modules() if m.__class__.__name__ == "CrissCrossAttention") == 1


def test_recurrence_zero_is_the_no_attention_baseline():
    head = RCCAHead(16, 3, channels=8, recurrence=0).eval()
    x = torch.randn(1, 16, 4, 5)
    torch.testing.assert_close(head(x)[0], head.bottleneck(torch.cat([x, head.convb(head.conva(x))], 1)))
    with pytest.raises(ValueError, match="recurrence"):
        RCCAHead(16, 3, recurrence=-1)


def test_embedding_branch():
    head = RCCAHead(16, 3, channels=8, embedding_channels=16)
    logits, embedding = head(torch.randn(2, 16, 5, 7))
    assert logits.shape == (2, 3, 5, 7) and embedding.shape == (2, 16, 5, 7)


def test_fcn_head_layout():
    official = FCNHead(1024, 19)
    assert official[0].bias is not None and official[0].weight.shape == (512, 1024, 3, 3)
    assert official[3].weight.shape == (19, 512, 1, 1)
    mmseg = FCNHead(1024, 19, channels=256, bias=False, act="relu")
    assert mmseg[0].bias is None and mmseg(torch.randn(2, 1024, 3, 5)).shape == (2, 19, 3, 5)
