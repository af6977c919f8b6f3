"""ccnet-pytorch: CCNet (criss-cross attention for semantic segmentation) in PyTorch."""

__version__ = "0.1.0"
