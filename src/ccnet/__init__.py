"""ccnet-pytorch: CCNet (criss-cross attention for semantic segmentation) in PyTorch.

Subpackages: [`ccnet.ops`][ccnet.ops] (functional operators), [`ccnet.nn`][ccnet.nn] (layers),
[`ccnet.models`][ccnet.models] (backbones, CCNet, presets), [`ccnet.losses`][ccnet.losses],
[`ccnet.viz`][ccnet.viz] (attention maps).
"""

from ccnet import losses, models, nn, ops, viz
from ccnet.interop import convert, export_onnx, init_backbone_from, load_backbone, load_pretrained
from ccnet.models import CCNet, CCNet3D, create_model
from ccnet.nn import CrissCrossAttention, CrissCrossAttention3d, RCCAHead
from ccnet.ops import criss_cross_attention, criss_cross_attention_3d
from ccnet.version import __version__

__all__ = [
    "CCNet",
    "CCNet3D",
    "CrissCrossAttention",
    "CrissCrossAttention3d",
    "RCCAHead",
    "__version__",
    "convert",
    "create_model",
    "criss_cross_attention",
    "criss_cross_attention_3d",
    "export_onnx",
    "init_backbone_from",
    "load_backbone",
    "load_pretrained",
    "losses",
    "models",
    "nn",
    "ops",
    "viz",
]
