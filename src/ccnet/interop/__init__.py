"""Interoperability: load official CCNet, mmsegmentation and ImageNet (torchvision, deep-stem)
weights, convert them to ccnet's own format, export to ONNX, compile.

* `load_pretrained` -> a ready CCNet (eval mode) from a ccnet folder, an official CCNet
  checkpoint or an mmsegmentation CCNet checkpoint.
* `convert` -> the same, written as a ccnet model folder (``model.safetensors`` + ``config.json``).
* `load_backbone` / `init_backbone_from` -> ImageNet (or segmentation) backbones.
* `export_onnx`, `compile_model` -> deployment.

See ``docs/interop.md``.
"""

from ccnet.interop.export import OnnxCheckError, OnnxExport, compile_model, export_onnx
from ccnet.interop.loading import (
    FORMATS,
    WeightsFileError,
    WeightsMismatchError,
    convert,
    detect_format,
    init_backbone_from,
    load_backbone,
    load_pretrained,
    read_weights,
)

__all__ = [
    "FORMATS",
    "OnnxCheckError",
    "OnnxExport",
    "WeightsFileError",
    "WeightsMismatchError",
    "compile_model",
    "convert",
    "detect_format",
    "export_onnx",
    "init_backbone_from",
    "load_backbone",
    "load_pretrained",
    "read_weights",
]
