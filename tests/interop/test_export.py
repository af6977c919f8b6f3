"""The exporter's own checks and compile_model with inductor on CPU. Every model variant's ONNX
export (dynamic sizes, onnxruntime, metadata), torch.export and torch.compile are checked in
tests/models/test_model_battery.py."""


import pytest
import torch
from tests.helpers import randomise_norms

from ccnet.interop import compile_model, export_onnx
from ccnet.models import CCNet
from ccnet.nn import RCCAHead


def _tiny_model(seed=0) -> CCNet:
    torch.manual_seed(seed)
    model = CCNet(3, backbone="resnet18", stem_widths=(8, 8, 16), head_channels=32, aux_channels=16).eval()
    randomise_norms(model)  # non-trivial norms and attention
    model.class_names = ("a", "b", "c")
    model.palette = ((0, 0, 0), (255, 0, 0), (0, 255, 0))
    return model


def test_onnx_opset_below_17_refused(tmp_path):
    with pytest.raises(ValueError, match="opset"):
        export_onnx(_tiny_model(), tmp_path / "m.onnx", opset=16)


@pytest.mark.slow
def test_torch_compile_whole_model_on_cpu():
    # Inductor on CPU (C++ kernels built with the system compiler), one fixed size.
    model = _tiny_model(1)
    compiled = compile_model(model, dynamic=False)
    x = torch.randn(1, 3, 65, 97, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(compiled(x)["out"], model(x)["out"], rtol=1e-4, atol=1e-4)


class _StridedConvAttention(torch.nn.Module):
    """The smallest network with the pattern that breaks inductor's dynamic-shape recompile when
    layout optimisation is on: a strided conv, the attention's batched matmuls, a conv."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.head = RCCAHead(8, 3, channels=8, reduction=4, recurrence=1)
        with torch.no_grad():
            self.head.cca.gamma.fill_(0.8)

    def forward(self, x):
        return self.head(self.stem(x))[0]


@pytest.mark.slow
def test_compile_model_dynamic_sizes():
    torch.manual_seed(0)
    model = _StridedConvAttention().eval()
    compiled = compile_model(model, dynamic=True)  # plain torch.compile fails here (torch 2.13)
    with torch.no_grad():
        for shape in [(2, 3, 33, 47), (2, 3, 25, 19)]:
            x = torch.randn(shape, generator=torch.Generator().manual_seed(shape[2]))
            torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)
