"""Which implementation ``criss_cross_attention(..., backend=...)`` runs, the environment
variable that overrides ``"auto"``, and the errors of a wrong choice."""

from __future__ import annotations

import sys

import pytest
import torch

from ccnet.nn import CrissCrossAttention, CrissCrossAttention3d
from ccnet.ops import criss_cross as dispatch
from ccnet.ops import criss_cross_attention, criss_cross_attention_3d


def _inputs(*spatial):
    q, k = torch.randn(1, 2, *spatial), torch.randn(1, 2, *spatial)
    return q, k, torch.randn(1, 3, *spatial)


@pytest.fixture
def calls(monkeypatch):
    """Replace the three implementations by recorders: the list of those that ran."""
    ran: list[str] = []

    def recorder(name):
        def run(query, key, value):
            ran.append(name)
            return torch.zeros_like(value)
        return run

    monkeypatch.setattr(dispatch, "criss_cross_composite", recorder("composite"))
    monkeypatch.setattr(dispatch, "criss_cross_triton", recorder("triton"))
    monkeypatch.setattr(dispatch, "criss_cross_forward", lambda q, k, v: (recorder("function")(q, k, v), None))
    monkeypatch.setattr(dispatch.CrissCrossFunction, "apply", recorder("function"))  # with autograd
    monkeypatch.delenv(dispatch.BACKEND_VARIABLE, raising=False)
    return ran


@pytest.mark.parametrize(("backend", "variable", "expected"), [
    ("auto", None, "function"),  # today's default: auto does not choose Triton
    ("auto", "", "function"),
    ("auto", "auto", "function"),
    ("auto", "triton", "triton"),  # the variable overrides auto ...
    ("auto", " composite ", "composite"),
    ("function", "triton", "function"),  # ... but not an explicit choice
    ("composite", None, "composite"),
    ("triton", "function", "triton"),
])
def test_backend_and_environment_choose_the_implementation(calls, monkeypatch, backend, variable, expected):
    if variable is not None:
        monkeypatch.setenv(dispatch.BACKEND_VARIABLE, variable)
    criss_cross_attention(*_inputs(3, 4), backend=backend)
    criss_cross_attention_3d(*_inputs(2, 3, 4), backend=backend)
    assert calls == [expected, expected]


@pytest.mark.parametrize("backend", ["auto", "function", "triton"])
def test_tracers_always_get_the_composite(calls, monkeypatch, backend):
    monkeypatch.setenv(dispatch.BACKEND_VARIABLE, "triton")
    monkeypatch.setattr(dispatch, "_is_tracing", lambda: True)
    criss_cross_attention(*_inputs(3, 4), backend=backend)
    assert calls == ["composite"]


def test_unknown_backend_is_refused_before_anything_runs(calls):
    for op, inputs in ((criss_cross_attention, _inputs(3, 4)), (criss_cross_attention_3d, _inputs(2, 3, 4))):
        with pytest.raises(ValueError, match="unknown criss-cross attention backend 'cuda'; choose from auto, "
                                             "composite, function, triton"):
            op(*inputs, backend="cuda")
    with pytest.raises(ValueError, match="unknown criss-cross attention backend"):
        CrissCrossAttention(8, backend="fused")
    assert calls == []


def test_unknown_environment_value_names_the_variable(calls, monkeypatch):
    monkeypatch.setenv("CCNET_CCA_BACKEND", "tritonn")
    with pytest.raises(ValueError, match="CCNET_CCA_BACKEND='tritonn' is not a criss-cross attention backend"):
        criss_cross_attention(*_inputs(3, 4))
    assert calls == []


def test_blocks_pass_their_backend(calls):
    for block, x in ((CrissCrossAttention(8, backend="triton"), torch.randn(1, 8, 3, 4)),
                     (CrissCrossAttention3d(8, backend="composite"), torch.randn(1, 8, 2, 3, 4)),
                     (CrissCrossAttention(8), torch.randn(1, 8, 3, 4))):
        block(x)
    assert calls == ["triton", "composite", "function"]


def test_selected_implementations_agree():
    inputs = [t.double() for t in _inputs(4, 5)]
    want = criss_cross_attention(*inputs, backend="function")
    torch.testing.assert_close(criss_cross_attention(*inputs, backend="composite"), want)
    torch.testing.assert_close(criss_cross_attention(*inputs), want)


def test_triton_backend_without_triton_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)  # makes `import triton` fail
    with pytest.raises(ImportError, match=r"backend='triton' needs the triton package: pip install "
                                          r"'ccnet-pytorch\[triton\]'"):
        criss_cross_attention(*_inputs(3, 4), backend="triton")
