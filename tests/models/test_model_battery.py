"""One battery for every model variant: each context module of CCNet's head and CCNet3D.

In the style of segmentation_models_pytorch's ``BaseModelTester``: the same checks run on every
variant of :data:`VARIANTS` -- forward at odd, non-square sizes (train and eval), backward into
every parameter, the model folder round trip, ``torch.export`` with dynamic sizes,
``torch.compile`` (whole graph, forward and backward) and ONNX export checked in onnxruntime at
two sizes by the exporter and at a third here. A new variant is one more entry in the table.
Models are tiny (ResNet-18, 16-channel head, inputs under 70 pixels); tracing is what costs
time, so the tracer checks are marked ``slow``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from torch import nn

from ccnet.interop import compile_model, export_onnx
from ccnet.models import CCNet, CCNet3D

NUM_CLASSES = 3
TINY = dict(backbone="resnet18", output_stride=8, stem_widths=(8, 8, 16), head_channels=16, aux_channels=8,
            reduction=4, dropout=0.0, consistency=True, embedding_channels=4)


@dataclass(frozen=True)
class Variant:
    """A model class and its arguments; ``frames``: clips of that many frames (CCNet3D), else None."""

    name: str
    model_class: type[CCNet]
    kwargs: dict = field(default_factory=dict)
    frames: int | None = None
    context_module: Callable[[CCNet], nn.Module] = lambda model: model.head.context

    def build(self, seed: int = 0) -> CCNet:
        """The model in eval mode, its norms and attention strengths randomised (no identity paths)."""
        torch.manual_seed(seed)
        model = self.model_class(NUM_CLASSES, **TINY, **self.kwargs)
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.uniform_(-0.2, 0.2)
                    module.running_mean.uniform_(-0.2, 0.2)
                    module.running_var.uniform_(0.5, 1.5)
            for name, parameter in model.named_parameters():
                if name.endswith("gamma"):  # attention residual scales, 0 at initialisation
                    parameter.fill_(0.7)
        return model.eval()

    def sample(self, batch: int, height: int, width: int, seed: int = 0, frames: int | None = None) -> torch.Tensor:
        clip = () if self.frames is None else (frames or self.frames,)
        return torch.randn(batch, 3, *clip, height, width, generator=torch.Generator().manual_seed(seed)) * 2


def _cca(model: CCNet) -> nn.Module:
    return model.head.cca


VARIANTS = [
    Variant("none", CCNet, {"context": "none"}, context_module=lambda model: model.head.conva),
    Variant("ppm", CCNet, {"context": "ppm"}),
    Variant("aspp", CCNet, {"context": "aspp", "aspp_rates": (1, 2, 3)}),
    Variant("nonlocal", CCNet, {"context": "nonlocal"}),
    Variant("rcca", CCNet, {"context": "rcca"}, context_module=_cca),
    Variant("ccnet3d", CCNet3D, {"context": "rcca"}, frames=3, context_module=_cca),
]


@pytest.fixture(params=VARIANTS, ids=[v.name for v in VARIANTS], scope="module")
def variant(request) -> Variant:
    return request.param


@pytest.fixture(scope="module")
def model(variant) -> CCNet:
    return variant.build()


def _expected_shape(variant: Variant, x: torch.Tensor, channels: int = NUM_CLASSES) -> tuple[int, ...]:
    return (x.shape[0], channels, *x.shape[2:])


def _loss(outputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return sum(value.square().mean() for value in outputs.values())


def test_forward_at_odd_sizes(variant, model):
    model = copy.deepcopy(model).train()
    x = variant.sample(2, 33, 47)
    outputs = model(x)
    assert set(outputs) == {"out", "aux", "embedding"}
    assert outputs["out"].shape == outputs["aux"].shape == _expected_shape(variant, x)
    model.eval()
    with torch.no_grad():
        features = model(x, upsample=False)["out"]
        assert features.shape[-2:] == (5, 7)  # output stride 8 with ceil-mode pooling
        assert outputs["embedding"].shape == (2, 4, *features.shape[2:])
        for height, width in [(17, 23), (41, 29)]:
            x = variant.sample(1, height, width, seed=height)
            out = model(x)
            assert set(out) == {"out"} and out["out"].shape == _expected_shape(variant, x)
            assert torch.isfinite(out["out"]).all()


def test_backward_reaches_every_parameter(variant, model):
    model = copy.deepcopy(model).train()
    x = variant.sample(2, 21, 27).requires_grad_()
    _loss(model(x)).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    context = variant.context_module(model)
    assert all(p.grad.abs().sum() > 0 for p in context.parameters())  # the context path contributes
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_save_load_round_trip(variant, model, tmp_path):
    names, palette = ("a", "b", "c"), ((0, 0, 0), (255, 0, 0), (0, 255, 0))
    folder = model.save_pretrained(tmp_path / variant.name, class_names=names, palette=palette)
    loaded = variant.model_class.from_pretrained(folder)
    assert type(loaded) is type(model) and not loaded.training
    assert loaded.config == model.config and loaded.class_names == names
    state, restored = model.state_dict(), loaded.state_dict()
    assert state.keys() == restored.keys() and all(torch.equal(state[k], restored[k]) for k in state)
    x = variant.sample(1, 27, 35)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)["out"], model(x)["out"], rtol=0, atol=0)


def _dynamic_dims(variant: Variant) -> dict[int, object]:
    """Every dimension but the channels dynamic. ``Dim.AUTO``: the guards of ceil-mode pooling on
    the height and width hold for every size, but Dynamo cannot prove it; they become checks."""
    ndim = 4 if variant.frames is None else 5
    return {dim: torch.export.Dim.AUTO for dim in range(ndim) if dim != 1}


class _Logits(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


@pytest.mark.slow
def test_torch_export_with_dynamic_sizes(variant, model):
    example = variant.sample(2, 33, 41)
    program = torch.export.export(_Logits(model), (example,), dynamic_shapes=({**_dynamic_dims(variant)},))
    exported = program.module()
    with torch.no_grad():
        for batch, height, width, frames in [(2, 33, 41, None), (1, 49, 23, 2), (3, 17, 19, 1)]:
            x = variant.sample(batch, height, width, seed=height, frames=frames)
            torch.testing.assert_close(exported(x), model(x)["out"], rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_torch_compile_whole_graph_forward_and_backward(variant, model):
    # aot_eager: Dynamo's capture (fullgraph: no graph breaks) and AOTAutograd's forward and
    # backward graphs, without inductor's C++ build (tests/interop/test_export.py compiles one).
    torch._dynamo.reset()
    x = variant.sample(2, 33, 41)
    compiled = compile_model(model, backend="aot_eager", fullgraph=True, dynamic=False)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x)["out"], model(x)["out"], rtol=1e-4, atol=1e-4)
    eager, trained = copy.deepcopy(model).train(), copy.deepcopy(model).train()
    compiled = compile_model(trained, backend="aot_eager", fullgraph=True, dynamic=False)
    _loss(eager(x)).backward()
    _loss(compiled(x)).backward()
    for (name, p), q in zip(eager.named_parameters(), trained.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-3, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
    torch._dynamo.reset()


@pytest.mark.slow
def test_onnx_export_at_every_size(variant, model, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    model = copy.deepcopy(model)
    model.class_names = ("a", "b", "c")
    clip = {} if variant.frames is None else {"frames": variant.frames}
    result = export_onnx(model, tmp_path / f"{variant.name}.onnx", height=49, width=65, **clip)
    # The exporter checked the example and an odd, non-square size with batch 2 in onnxruntime.
    assert len(result.max_abs_diff) == 2 and max(result.max_abs_diff.values()) <= 1e-4
    assert result.path.is_file() and not list(tmp_path.glob(".*tmp"))  # written atomically
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    x = variant.sample(1, 17, 23, seed=3, frames=1)  # a third size (and one frame for clips)
    (got,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        expected = model(x)["out"].numpy()
    assert got.shape == expected.shape and np.abs(got - expected).max() <= 1e-4
    proto = onnx.load(str(result.path))
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(d, str) and d for d in dims[:1] + dims[2:])
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["class_names"]) == ["a", "b", "c"]
    assert json.loads(meta["ccnet_config"]) == json.loads(json.dumps(model.config))
