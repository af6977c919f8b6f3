"""scripts/triton_roofline.py: the committed roofline report (docs/triton-roofline.md and .json)
is what the script makes from the launcher's tiling, and its counts agree with hand formulas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import triton_roofline as roofline

ROOT = Path(__file__).parents[2]
BF16 = roofline.DTYPES[2]


def test_committed_report_matches_the_script(tmp_path: Path) -> None:
    report, data = tmp_path / "roofline.md", tmp_path / "roofline.json"
    assert roofline.main(["--report", str(report), "--json", str(data)]) == 0
    assert report.read_text() == (ROOT / "docs" / "triton-roofline.md").read_text(), \
        "docs/triton-roofline.md is stale: python scripts/triton_roofline.py --report docs/triton-roofline.md " \
        "--json docs/triton-roofline.json"
    assert json.loads(data.read_text()) == json.loads((ROOT / "docs" / "triton-roofline.json").read_text())


@pytest.mark.parametrize("batch", [1, 8])
def test_forward_useful_flops_match_the_hand_formula(batch: int) -> None:
    cqk, cv, h, w = 64, 512, 97, 97
    launches = roofline.forward(batch, cqk, cv, (h, w), BF16)
    # energies q.k and aggregation A v over the H + W - 1 positions of each criss-cross path
    expected = 2 * batch * h * w * (h + w - 1) * cqk + 2 * batch * h * w * (h + w - 1) * cv
    assert sum(launch.useful_flops for launch in launches) == expected


def test_forward_executed_flops_count_padding_and_recomputation() -> None:
    # bfloat16, 97-position lines: BLOCK_M 64 (2 query blocks), BLOCK_N 32 (4 key blocks, 128
    # padded keys), BLOCK_C 128 (4 value-channel blocks, each recomputing the energies)
    first = roofline.forward(1, 64, 512, (97, 97), BF16)[0]
    assert first.programs == 97 * 2 * 4
    assert first.executed_flops == first.programs * 2 * 64 * 128 * (64 + 128)
    assert set(first.flops) == {"bf16"}


def test_backward_and_delta_units_and_bytes() -> None:
    launches = roofline.backward(1, 64, 512, (97, 97), BF16)
    assert [r.kernel for r in launches] == [f"backward_{k} axis {a}" for a in "HW" for k in ("dv", "dk", "dq")]
    # bfloat16, lines of 97: dK holds 32 keys (4 tiles per line) and loops over 4 blocks of 32
    # queries; its products with the float32 energy gradient run in TF32, energies and dA in bf16
    dk = launches[4]
    assert dk.programs == 97 * 4 and set(dk.flops) == {"bf16", "tf32"}
    assert dk.flops["tf32"] == 97 * 4 * 2 * 32 * (4 * 32) * 64
    assert dk.flops["bf16"] == 97 * 4 * 2 * 32 * (4 * 32) * (64 + 512)
    # useful: every gradient product once over the path (energies, dA, dV, dK, dQ)
    assert sum(r.useful_flops for r in launches) == 2 * 97 * 97 * (97 + 97 - 1) * (3 * 64 + 2 * 512)
    delta = roofline.delta(8, 512, (97, 97), BF16)
    assert delta.issued_bytes == 8 * 97 * 97 * (2 * 512 * 2 + 4)
    assert delta.bound == "memory" and delta.time_s == pytest.approx(delta.issued_bytes / 4.3e12)


def test_roofline_ms_adds_the_launches_of_one_call() -> None:
    times = roofline.roofline_ms(8, 64, 512, 97, 97, "bfloat16")
    rows = [r for r in roofline.launches() if r.batch == 8 and r.dtype == "bfloat16"]
    assert times["forward_ms"] == pytest.approx(sum(r.time_s for r in rows[:2]) * 1e3)
    assert times["forward_backward_ms"] == pytest.approx(sum(r.time_s for r in rows) * 1e3)
    with pytest.raises(ValueError, match="float64"):
        roofline.roofline_ms(1, 64, 512, 97, 97, "float64")


@pytest.mark.parametrize("dtype", ["float32-highest", "float32-high", "bfloat16"])
def test_tiling_is_the_launchers(dtype: str) -> None:
    # the launcher's own launches (recorded on meta tensors, as the compile check does): same
    # kernels, grids and block sizes as the roofline assumes
    pytest.importorskip("triton", reason="the triton package is not installed")
    import triton_compile_check as check

    recorded = check.record(check.Workload("cityscapes-769", 8, 64, 512, (97, 97)), dtype, "nchw")
    name = {"float32-highest": "float32 (highest)", "float32-high": "float32 (high)"}.get(dtype, dtype)
    modelled = [r for r in roofline.launches() if r.batch == 8 and r.dtype == name]
    assert len(recorded) == len(modelled) == 9
    for (_, kernel, grid, _, kwargs), launch in zip(recorded, modelled, strict=True):
        assert kernel.__name__ == f"_{launch.kernel.split(' ')[0]}_kernel"
        assert grid == (launch.programs,), launch.kernel
        assert {k: kwargs[k] for k in launch.blocks} == launch.blocks, launch.kernel
