"""ccnet-pytorch: CCNet (criss-cross attention for semantic segmentation) in PyTorch.

Subpackages: :mod:`ccnet.ops` (functional operators), :mod:`ccnet.nn` (layers),
:mod:`ccnet.models` (backbones, CCNet, presets), :mod:`ccnet.losses`, :mod:`ccnet.viz` (attention maps).
"""

from ccnet import losses, models, nn, ops, viz
from ccnet.interop import convert, export_onnx, init_backbone_from, load_backbone, load_pretrained
from ccnet.models import CCNet, create_model
from ccnet.nn import CrissCrossAttention, CrissCrossAttention3d, RCCAHead
from ccnet.ops import criss_cross_attention, criss_cross_attention_3d
from ccnet.version import __version__

__all__ = [
    "CCNet",
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
