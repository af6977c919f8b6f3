"""Adaptive average pooling with the bin edges computed from the input size: equal to PyTorch's
at every size, and a graph exported at one size pools correctly at others."""

import pytest
import torch
import torch.nn.functional as F

from ccnet.ops import adaptive_avg_pool2d, adaptive_avg_pool2d_dynamic


@pytest.mark.parametrize("bins", [1, 2, 3, 6, (2, 5), (7, 1)])
def test_equals_pytorch_at_every_size(bins):
    generator = torch.Generator().manual_seed(0)
    for height in range(1, 15):
        for width in (1, 2, 5, 9, 13, 20):
            x = torch.randn(2, 3, height, width, dtype=torch.float64, generator=generator)
            expected = F.adaptive_avg_pool2d(x, bins)
            torch.testing.assert_close(adaptive_avg_pool2d_dynamic(x, bins), expected, rtol=1e-12, atol=1e-12)


def test_float32_and_three_dims():
    x = torch.randn(4, 37, 23)
    torch.testing.assert_close(adaptive_avg_pool2d_dynamic(x, 6), F.adaptive_avg_pool2d(x, 6))
    with pytest.raises(ValueError, match="output_size must be positive"):
        adaptive_avg_pool2d_dynamic(x, (0, 2))


class _Pool(torch.nn.Module):
    def forward(self, x):
        return adaptive_avg_pool2d(x, 6)


def test_exported_graph_pools_correctly_at_other_sizes():
    dims = {0: torch.export.Dim("b", min=1, max=8), 2: torch.export.Dim("h", min=2, max=512),
            3: torch.export.Dim("w", min=2, max=512)}
    program = torch.export.export(_Pool(), (torch.randn(2, 2, 12, 18),), dynamic_shapes=(dims,))
    assert "adaptive_avg_pool" not in str(program.graph)  # the traced form: matrix products
    for shape in [(1, 2, 12, 18), (2, 2, 13, 7), (1, 2, 5, 31), (1, 2, 3, 4)]:
        x = torch.randn(shape)
        torch.testing.assert_close(program.module()(x), F.adaptive_avg_pool2d(x, 6))


def test_onnx_graph_pools_correctly_at_other_sizes(tmp_path):
    # PyTorch's own op is written as an AveragePool sized for the example: wrong at other sizes.
    ort = pytest.importorskip("onnxruntime")
    dims = {0: torch.export.Dim("b", min=1, max=8), 2: torch.export.Dim("h", min=2, max=512),
            3: torch.export.Dim("w", min=2, max=512)}
    program = torch.onnx.export(_Pool(), (torch.randn(2, 2, 12, 18),), dynamo=True, dynamic_shapes=(dims,),
                                input_names=["x"], verbose=False)
    program.save(str(tmp_path / "pool.onnx"))
    session = ort.InferenceSession(str(tmp_path / "pool.onnx"), providers=["CPUExecutionProvider"])
    for shape in [(2, 2, 12, 18), (1, 2, 13, 7), (3, 2, 5, 31), (1, 2, 3, 4)]:
        x = torch.randn(shape)
        (got,) = session.run(None, {"x": x.numpy()})
        torch.testing.assert_close(torch.from_numpy(got), F.adaptive_avg_pool2d(x, 6))
