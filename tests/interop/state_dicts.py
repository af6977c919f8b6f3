"""Helpers that write published checkpoints' keys: the ResNet bottleneck stages every format
shares (torchvision key names under a prefix) and random conv / norm tensors."""

import torch


def bottleneck_stages(conv, norm, blocks, inplanes, prefix="", last_norm=None):
    """Call ``conv(name, cout, cin, k)`` and ``norm(name, channels, **kwargs)`` for every layer of
    the four bottleneck stages (``{prefix}layer{1..4}.{j}...``); ``last_norm`` are the keyword
    arguments of each block's bn3. Returns the output channels."""
    for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks, strict=True), start=1):
        for j in range(count):
            p = f"{prefix}layer{stage}.{j}"
            conv(f"{p}.conv1", planes, inplanes, 1)
            norm(f"{p}.bn1", planes)
            conv(f"{p}.conv2", planes, planes, 3)
            norm(f"{p}.bn2", planes)
            conv(f"{p}.conv3", planes * 4, planes, 1)
            norm(f"{p}.bn3", planes * 4, **(last_norm or {}))
            if j == 0:
                conv(f"{p}.downsample.0", planes * 4, inplanes, 1)
                norm(f"{p}.downsample.1", planes * 4)
            inplanes = planes * 4
    return inplanes


def random_conv(sd, gen, name, cout, cin, k, bias=False):
    """He-initialised conv weight (and a small bias) under ``name``."""
    sd[f"{name}.weight"] = torch.randn(cout, cin, k, k, generator=gen) * (2.0 / (cin * k * k)) ** 0.5
    if bias:
        sd[f"{name}.bias"] = torch.randn(cout, generator=gen) * 0.1


def random_norm(sd, gen, name, channels, scale=1.0, count=False):
    """Norm weights of both signs (~30% negative: InPlace-ABN folds ``|w| + eps``), bias and
    running statistics; ``count`` adds ``num_batches_tracked``."""
    sign = torch.where(torch.rand(channels, generator=gen) < 0.3, -1.0, 1.0)
    sd[f"{name}.weight"] = sign * (0.3 + 0.5 * torch.rand(channels, generator=gen)) * scale
    sd[f"{name}.bias"] = torch.randn(channels, generator=gen) * 0.1
    sd[f"{name}.running_mean"] = torch.randn(channels, generator=gen) * 0.1
    sd[f"{name}.running_var"] = 0.5 + torch.rand(channels, generator=gen)
    if count:
        sd[f"{name}.num_batches_tracked"] = torch.tensor(0)
