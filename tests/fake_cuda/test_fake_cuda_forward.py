"""Every published config's model on (fake) CUDA tensors, without a GPU.

``FakeTensorMode`` runs the model's real forward with tensors that carry only shape, dtype and
device, so a tensor made on the CPU (or in float32 under autocast where it must follow the
input) meets a CUDA tensor and fails here as it would on a GPU. It needs a CUDA build of PyTorch
(``.venv-detection`` has one; ``make test-detection`` runs this file there) but no GPU. The loss
runs too where it does not depend on the data's values (OHEM picks pixels by value: not fakeable).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

CONFIGS = sorted(Path(__file__).resolve().parents[2].joinpath("configs").glob("*.yaml"))

pytestmark = pytest.mark.skipif(torch.version.cuda is None,
                                reason="needs a CUDA build of PyTorch (no GPU): make test-detection runs it")


@contextlib.contextmanager
def cuda_autocast(dtype: torch.dtype) -> Iterator[None]:
    """CUDA autocast switched on directly: ``torch.autocast("cuda")`` turns itself off without a GPU."""
    enabled, previous = torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda")
    torch.set_autocast_enabled("cuda", True)
    torch.set_autocast_dtype("cuda", dtype)
    torch.autocast_increment_nesting()
    try:
        yield
    finally:
        torch.autocast_decrement_nesting()
        torch.set_autocast_enabled("cuda", enabled)
        torch.set_autocast_dtype("cuda", previous)


@pytest.mark.parametrize("config_path", CONFIGS, ids=lambda p: p.stem)
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_config_model_runs_on_fake_cuda_tensors(config_path: Path, train: bool) -> None:
    from torch._subclasses.fake_tensor import FakeTensorMode

    from ccnet.config import load_config
    from ccnet.engine.build import build_criterion, build_model

    config = load_config(config_path)
    if config.task != "segmentation":
        pytest.skip(f"{config_path.name}: a {config.task} config (Mask R-CNN is torchvision's model)")
    num_classes = 7
    h, w = config.data.crop_size
    t = config.video.clip_length
    with FakeTensorMode(), torch.device("cuda"):
        model = build_model(config, num_classes).train(train)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        images = torch.empty((2, 3, t, h, w) if config.is_video else (2, 3, h, w))
        labels = torch.zeros((2, t, h, w) if config.is_video else (2, h, w), dtype=torch.long)
        conv_dtypes: set[torch.dtype] = set()
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.register_forward_hook(lambda _m, _i, out: conv_dtypes.add(out.dtype))
        with cuda_autocast(torch.float16):
            outputs = model(images)
            if train and not config.loss.ohem:
                loss, _ = build_criterion(config)(outputs, labels)
                assert loss.device.type == "cuda" and loss.dim() == 0
    out = outputs["out"]
    assert out.device.type == "cuda"
    assert tuple(out.shape) == ((2, num_classes, t, h, w) if config.is_video else (2, num_classes, h, w))
    assert out.dtype == torch.float32  # upsampled in float32, as autocast does on a GPU
    assert conv_dtypes == {torch.float16}  # every convolution ran under autocast
