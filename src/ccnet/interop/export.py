"""Deployment: ONNX export (checked against onnxruntime) and ``torch.compile`` on CPU.

ONNX: the graph is captured with ``torch.export`` (``torch.onnx.export(..., dynamo=True)``), with
symbolic batch, height and width, so one file serves every image size; the result is checked
against the eager model in onnxruntime on the example size and on an odd, non-square size. The
legacy TorchScript exporter is not used: it writes the ``movedim`` of the attention op as a
``Transpose`` with negative axes, which onnxruntime rejects, and it is deprecated.

``torch.compile``: `compile_model` is ``torch.compile`` with inductor's layout optimisation
off. With it on, the recompile for a second input size (automatic dynamic shapes) fails in
inductor (``ValueRangeError: Invalid ranges [0:-1]`` in ``maybe_apply_channels_last_stride_order``,
torch 2.13, CPU) for any network with a batched ``matmul`` between strided convs; fixed-size
use (``torch.compile(model, dynamic=False)``) is unaffected.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ccnet.errors import CCNetError, InputError
from ccnet.files import atomic_path

__all__ = ["OnnxCheckError", "OnnxExport", "compile_model", "export_onnx"]

MIN_OPSET = 17
DEFAULT_FRAMES = 5  # the example clip's T for a video model (T stays dynamic in the graph)


class OnnxCheckError(CCNetError, ValueError):
    """The exported graph does not reproduce the eager model in onnxruntime."""


@dataclass(frozen=True)
class OnnxExport:
    """Result of `export_onnx`: the file, its opset and the largest ``|onnx - eager|`` per
    checked input shape (empty when not checked)."""

    path: Path
    opset: int
    max_abs_diff: dict[tuple[int, ...], float]

    def summary(self) -> str:
        """One line for people: the file, its opset and what the onnxruntime check found."""
        if not self.max_abs_diff:
            return f"wrote {self.path} (opset {self.opset}; not checked in onnxruntime)"
        shapes = ", ".join("x".join(map(str, shape)) for shape in self.max_abs_diff)
        worst = max(self.max_abs_diff.values())
        return (f"wrote {self.path} (opset {self.opset}; onnxruntime matches PyTorch on inputs {shapes}, "
                f"max |onnx - eager| {worst:.2g})")


class _Deployable(nn.Module):
    """``image -> logits`` at input resolution (a tensor, not a dict), optionally normalising first.
    ``ndim``: 4 for images, 5 for clips."""

    def __init__(self, model: nn.Module, mean: Sequence[float] | None, std: Sequence[float] | None,
                 ndim: int = 4) -> None:
        super().__init__()
        self.model = model
        self.normalize = mean is not None
        if self.normalize:
            shape = (1, 3) + (1,) * (ndim - 2)
            self.register_buffer("mean", torch.tensor([float(m) for m in mean]).view(shape))
            self.register_buffer("std", torch.tensor([float(s) for s in std]).view(shape))

    def forward(self, image: Tensor) -> Tensor:
        if self.normalize:
            image = (image - self.mean) / self.std
        return self.model(image)["out"]


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Hide the exporter's "torchvision is not installed. Skipping torchvision::nms" lines, and the
    ``FutureWarning`` "isinstance(treespec, LeafSpec) is deprecated" that torch 2.13's own exporter
    raises when it deep-copies the exported program (``copy.deepcopy`` re-creates the program's
    ``LeafSpec`` tree specs, whose constructor is marked deprecated): nothing the caller can change."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                                    category=FutureWarning)
            yield
    finally:
        logger.setLevel(level)


def _as_model(model_or_dir: nn.Module | str | Path) -> nn.Module:
    if isinstance(model_or_dir, nn.Module):
        if any(t.device.type != "cpu" for t in (*model_or_dir.parameters(), *model_or_dir.buffers())):
            import copy

            return copy.deepcopy(model_or_dir).cpu()  # exported and checked on the CPU
        return model_or_dir
    from ccnet.interop.loading import load_pretrained

    return load_pretrained(model_or_dir)


def _check_sizes(height: int, width: int, frames: int | None = None) -> list[tuple[int, ...]]:
    """The example shape and an odd, non-square one of about half the size, batch 2 (clips: and
    another number of frames)."""
    h2, w2 = max(height // 2, 17) | 1, max(width // 2, 17) | 1
    if h2 == w2:
        w2 += 2
    if frames is None:
        return [(1, 3, height, width), (2, 3, h2, w2)]
    return [(1, 3, frames, height, width), (2, 3, frames + 1 if frames < 3 else frames - 1, h2, w2)]


def _metadata(model: nn.Module, normalize: bool, clips: bool = False) -> dict[str, str]:
    from ccnet.version import __version__

    layout = "N, 3, T, H, W" if clips else "N, 3, H, W"
    meta = {"producer": f"ccnet-pytorch {__version__}", "input": f"image ({layout}) float32, RGB",
            "output": f"logits ({layout.replace('3', 'num_classes')})"}
    meta["input_normalization"] = "inside the graph: feed 0..255 RGB" if normalize else "outside the graph"
    for name in ("class_names", "palette", "mean", "std"):
        value = getattr(model, name, None)
        if value is not None:
            meta[name] = json.dumps([list(v) if isinstance(v, tuple) else v for v in value])
    config = getattr(model, "config", None)
    if isinstance(config, dict):
        meta["ccnet_config"] = json.dumps(config)
    return meta


def export_onnx(model_or_dir: nn.Module | str | Path, path: str | Path, opset: int = 18, height: int = 512,
                width: int = 1024, check: bool = True, *, normalize: bool = False, atol: float = 1e-4,
                rtol: float = 1e-4, frames: int | None = None) -> OnnxExport:
    """Export a CCNet to ONNX with dynamic batch, height and width; check it in onnxruntime.

    Args:
        model_or_dir: a CCNet, or anything `ccnet.interop.load_pretrained` reads.
        path: the ``.onnx`` file to write (written atomically: a temporary file, then a rename).
        opset: ONNX opset, 17 or newer.
        height: the example input height used for tracing and checking.
        width: the example input width used for tracing and checking.
        check: run the file in onnxruntime on the example size and on an odd, non-square size
            (batch 2) and require ``|onnx - eager| <= atol + rtol * |eager|`` everywhere;
            raises `OnnxCheckError` (and writes nothing) otherwise.
        normalize: put ``(x - mean) / std`` (the model's ``mean``/``std`` attributes, else
            ImageNet statistics) into the graph, so that it takes 0..255 RGB pixels.

    The graph maps ``image`` ``(N, 3, H, W)`` to ``logits`` ``(N, num_classes, H, W)``. Class
    names, palette, normalisation and the model config are stored as ONNX metadata.

    A video model (`ccnet.models.CCNet3D`) maps clips ``(N, 3, T, H, W)`` to
    ``(N, num_classes, T, H, W)``, with a dynamic number of frames T too; ``frames`` is the
    example's T (default 5; the check also runs another T). A 2D model has no frames: giving
    ``frames`` for one is refused rather than ignored.
    """
    if opset < MIN_OPSET:
        raise InputError(f"opset must be >= {MIN_OPSET}, got {opset}")
    if height < 16 or width < 16:
        raise InputError(f"example size must be at least 16x16, got {height}x{width}")
    from torch.export import Dim

    from ccnet.models import CCNet3D

    model = _as_model(model_or_dir)
    clips = isinstance(model, CCNet3D)
    if not clips and frames is not None:
        raise InputError(f"frames={frames} is for video models (CCNet3D, clips (N, 3, T, H, W)); "
                         f"this {type(model).__name__} takes images (N, 3, H, W)")
    if clips and frames is None:
        frames = DEFAULT_FRAMES
    if clips and frames < 1:
        raise InputError(f"frames must be >= 1, got {frames}")
    path = Path(path)
    mean = std = None
    if normalize:
        from ccnet.data.info import IMAGENET_MEAN, IMAGENET_STD

        mean = getattr(model, "mean", None) or IMAGENET_MEAN
        std = getattr(model, "std", None) or IMAGENET_STD
    was_training = model.training
    model.eval()
    try:
        wrapper = _Deployable(model, mean, std, ndim=5 if clips else 4).eval()
        example = torch.rand(1, 3, *((frames,) if clips else ()), height, width) * (255.0 if normalize else 1.0)
        spatial = {-2: Dim("height", min=16, max=16384), -1: Dim("width", min=16, max=16384)}
        if clips:
            spatial[-3] = Dim("frames", min=1, max=1024)
        dims = {0: Dim("batch", min=1, max=1024), **{example.dim() + k: v for k, v in spatial.items()}}
        with torch.no_grad(), _quiet_exporter():
            program = torch.onnx.export(wrapper, (example,), dynamo=True, opset_version=opset,
                                        input_names=["image"], output_names=["logits"],
                                        dynamic_shapes={"image": dims}, external_data=False, verbose=False)
        program.model.metadata_props.update(_metadata(model, normalize, clips))
        with atomic_path(path) as tmp:
            program.save(tmp, external_data=False)
            shapes = _check_sizes(height, width, frames if clips else None)
            diffs = _check(wrapper, tmp, shapes, normalize, atol, rtol) if check else {}
    finally:
        model.train(was_training)
    return OnnxExport(path=path, opset=opset, max_abs_diff=diffs)


def _check(wrapper: nn.Module, path: Path, shapes: list[tuple[int, ...]], normalize: bool,
           atol: float, rtol: float) -> dict[tuple[int, ...], float]:
    import numpy as np
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    diffs = {}
    for shape in shapes:
        image = torch.rand(shape, generator=generator) * (255.0 if normalize else 1.0)
        if not normalize:
            image = (image - 0.5) * 4.0  # roughly the range of normalised pixels
        with torch.no_grad():
            expected = wrapper(image).numpy()
        (got,) = session.run(None, {"image": image.numpy()})
        if got.shape != expected.shape:
            raise OnnxCheckError(f"{path.name}: onnxruntime output {got.shape} for input {shape}, "
                                 f"eager {expected.shape}")
        diff = np.abs(got - expected)
        diffs[shape] = float(diff.max())
        if not np.all(diff <= atol + rtol * np.abs(expected)):
            raise OnnxCheckError(f"exported graph differs from the eager model on input {list(shape)}: "
                                 f"max |onnx - eager| = {diffs[shape]:.3g} (atol {atol}, rtol {rtol})")
    return diffs


def compile_model(model: nn.Module, **kwargs: Any) -> nn.Module:
    """``torch.compile(model, **kwargs)`` that keeps working when the input size changes.

    With the default inductor backend, inductor's ``layout_optimization`` is turned off (unless
    ``options`` sets it): with it on, torch 2.13's recompile for dynamic shapes fails on the
    attention's batched matmuls between strided convs (see the module docstring). The compiled
    model computes the same function as the eager one.
    """
    backend = kwargs.get("backend", "inductor")
    if backend == "inductor" and "mode" not in kwargs:
        options = dict(kwargs.pop("options", None) or {})
        options.setdefault("layout_optimization", False)
        kwargs["options"] = options
    return torch.compile(model, **kwargs)
