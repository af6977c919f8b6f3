"""Small helpers shared by several test modules."""

import torch


def randomise_norms(model: torch.nn.Module, gamma: float = 0.8) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, and a strong attention (``gamma``),
    so that no path of a freshly built CCNet is an identity."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
        model.head.cca.gamma.fill_(gamma)
    return model
