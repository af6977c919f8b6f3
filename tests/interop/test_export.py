"""ONNX export (dynamic height/width, checked in onnxruntime) and torch.compile on CPU."""

import json

import numpy as np
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


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = _tiny_model()
    path = tmp_path_factory.mktemp("onnx") / "ccnet.onnx"
    result = export_onnx(model, path, opset=18, height=65, width=97)
    return model, result


def test_onnx_export_checked_in_onnxruntime(exported):
    _, result = exported
    assert result.path.is_file() and result.opset == 18
    # export_onnx checked the example size and an odd, non-square size with batch 2.
    assert set(result.max_abs_diff) == {(1, 3, 65, 97), (2, 3, 33, 49)}
    assert max(result.max_abs_diff.values()) <= 1e-4
    assert not list(result.path.parent.glob(".*tmp"))


@pytest.mark.parametrize("shape", [(1, 3, 97, 65), (2, 3, 41, 129), (1, 3, 17, 23)])
def test_onnx_dynamic_sizes_match_eager(exported, shape):
    import onnxruntime as ort

    model, result = exported
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    x = torch.randn(shape, generator=torch.Generator().manual_seed(sum(shape))) * 2
    with torch.no_grad():
        expected = model(x)["out"].numpy()
    (got,) = session.run(None, {"image": x.numpy()})
    assert got.shape == (shape[0], 3, *shape[2:])
    assert np.abs(got - expected).max() <= 1e-4


def test_onnx_graph_metadata(exported):
    import onnx

    _, result = exported
    proto = onnx.load(str(result.path))
    assert proto.opset_import[0].version >= 17
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(d, str) and d for d in (dims[0], dims[2], dims[3]))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["class_names"]) == ["a", "b", "c"]
    assert json.loads(meta["ccnet_config"])["backbone"] == "resnet18"


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


def test_video_model_export_with_dynamic_frames_height_and_width(tmp_path):
    import onnxruntime as ort

    from ccnet.models import CCNet3D

    video = CCNet3D.from_ccnet(_tiny_model(1))
    result = export_onnx(video, tmp_path / "video.onnx", height=33, width=41, frames=3)
    # Checked at (1, 3, 3, 33, 41) and with another batch, T, H and W.
    assert set(result.max_abs_diff) == {(1, 3, 3, 33, 41), (2, 3, 2, 17, 21)}
    assert max(result.max_abs_diff.values()) <= 1e-4
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    x = torch.randn(1, 3, 1, 25, 19, generator=torch.Generator().manual_seed(5)) * 2  # one frame: the 2D model
    (got,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        expected = _tiny_model(1)(x[:, :, 0])["out"].numpy()
    assert got.shape == (1, 3, 1, 25, 19) and np.abs(got[:, :, 0] - expected).max() <= 1e-4
