"""ccnet.bench: the re-expressed baselines are exact, the meters measure what they claim, and
``ccnet bench`` writes its JSON, Markdown and PNG. (Speed itself is reported, never asserted.)"""

import json

import pytest
import torch

from ccnet.bench import attention, report
from ccnet.bench.baselines import mmcv_criss_cross, official_criss_cross
from ccnet.bench.measure import compare_times, count_flops, peak_memory_bytes
from ccnet.bench.model import model_benchmark
from ccnet.cli import main
from ccnet.nn import CrissCrossAttention
from ccnet.ops import criss_cross_attention, criss_cross_attention_reference


@pytest.mark.parametrize("op", [official_criss_cross, mmcv_criss_cross])
@pytest.mark.parametrize("shape", [(2, 7, 5), (1, 1, 6), (1, 6, 1), (3, 4, 4)])
def test_baselines_match_the_dense_reference(op, shape):
    batch, height, width = shape
    gen = torch.Generator().manual_seed(0)
    q, k = (torch.randn(batch, 3, height, width, generator=gen, dtype=torch.float64) for _ in range(2))
    v = torch.randn(batch, 4, height, width, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(op(q, k, v), criss_cross_attention_reference(q, k, v))


def test_flop_counter_counts_matmuls():
    a, b = torch.randn(30, 40), torch.randn(40, 50)
    assert count_flops(lambda: a @ b) == 2 * 30 * 40 * 50


def test_peak_memory_sees_temporaries_and_frees():
    def work():
        big = torch.ones(1024, 1024)  # 4 MiB
        tmp = big * 2  # another 4 MiB alive at once
        del tmp
        return (big + 1).sum()  # 4 MiB again, after tmp was freed

    peak = peak_memory_bytes(work)
    assert 8 * 2**20 <= peak < 10 * 2**20


def test_peak_memory_follows_tensors_through_in_place_ops():
    def work():
        for _ in range(3):
            t = torch.ones(1024, 1024)  # 4 MiB, modified in place, then freed
            t.add_(1).mul_(2)
            del t

    assert 4 * 2**20 <= peak_memory_bytes(work) < 5 * 2**20


def test_peak_memory_ignores_tensors_freed_from_before_the_call():
    old = [torch.ones(2048, 1024)]  # 8 MiB allocated before the measurement

    def work():
        old.clear()  # frees the 8 MiB inside the call
        return torch.ones(1024, 1024).sum()  # 4 MiB

    assert 4 * 2**20 <= peak_memory_bytes(work) < 5 * 2**20


def test_compare_times_runs_round_robin():
    calls = []
    samples = compare_times({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, warmup=1, repeats=3)
    assert calls == ["a", "b"] * 4
    assert {k: len(v) for k, v in samples.items()} == {"a": 3, "b": 3}


@pytest.fixture
def tiny_sizes(monkeypatch):
    monkeypatch.setitem(attention.FEATURE_SIZES, "tiny", (6, 7))
    return ["tiny"]


def test_op_benchmark_rows(tiny_sizes):
    rows = attention.op_benchmark(tiny_sizes, batches=[1, 2], channels=[8], qk_channels=4, repeats=1)
    assert [(r["batch"], r["layout"]) for r in rows] == [(1, "nchw"), (1, "channels_last"), (2, "nchw"),
                                                          (2, "channels_last")]
    for r in rows:
        assert set(r["ops"]) == {"ccnet", "official", "mmcv"}
        assert all(e["forward_backward_peak_mb"] > 0 for e in r["ops"].values())
        assert r["speedup_forward_vs_official"] > 0 and r["gflop_forward"] == attention.attention_flops(
            r["batch"], 8, 4, 6, 7) / 1e9
    assert all(r["relative_error"] < 1e-5 for r in rows if r["batch"] == 1)
    assert "| 6x7 | 2 | 8 | channels_last |" in report.op_table(rows, ceiling_gflops=100.0)


def test_op_benchmark_with_the_triton_candidate(tiny_sizes, monkeypatch):
    # On CUDA with triton installed the fused kernels join the candidates; here a stand-in (our
    # default op) takes their place to check the bookkeeping and the table's extra columns.
    assert set(attention.candidate_ops(torch.device("cpu"))) == {"ccnet", "official", "mmcv"}
    monkeypatch.setattr(attention, "candidate_ops", lambda device: {**attention.OPS, "triton": criss_cross_attention})
    rows = attention.op_benchmark(tiny_sizes, batches=[1], channels=[8], qk_channels=4, layouts=["nchw"], repeats=1)
    (row,) = rows
    assert set(row["ops"]) == {"ccnet", "official", "mmcv", "triton"}
    assert {"triton_speedup_forward_backward_vs_ccnet", "triton_speedup_forward_vs_mmcv",
            "triton_memory_ratio_vs_official"} <= set(row) and row["triton_relative_error"] < 1e-5
    assert "speedup_forward_vs_triton" not in row  # our default is compared with the baselines only
    header, rule, line = report.op_table(rows).splitlines()
    assert "triton ms fwd / fwd+bwd" in header and header.count("|") == rule.count("|") == line.count("|") == 14


def test_block_benchmark_flops_match_the_formula():
    rows = attention.block_benchmark(size=(6, 7), channels=16, reduction=4, layouts=["nchw"], repeats=1)
    by_name = {r["block"]: r for r in rows}
    n, c, cq = 6 * 7, 16, 4
    convs = 2 * n * c * (2 * cq + c)  # 1x1 query, key and value convs
    cca = convs + 2 * n * (6 + 7) * (cq + c)  # the counter sees H + W path entries (the centre twice)
    non_local = convs + 2 * n * n * (cq + c)
    assert by_name["rcca_r1"]["gflops"] * 1e9 == pytest.approx(cca)
    assert by_name["rcca_r2"]["gflops"] * 1e9 == pytest.approx(2 * cca)
    assert by_name["non_local_x1"]["gflops"] * 1e9 == pytest.approx(non_local)
    assert "RCCA (R=2) against one non-local block" in report.block_table(rows)


def test_block_comparison_rows_table_and_plot(tmp_path):
    rows = attention.block_comparison(size=(5, 6), channels=8, reduction=2, batches=[1, 2], repeats=1)
    assert [r["batch"] for r in rows] == [1, 2]
    for r in rows:
        assert list(r["blocks"]) == ["ccnet", "ccnet_op", "official", "mmcv"]
        assert all(e["forward_backward_peak_mb"] > 0 and e["forward_ms"] > 0 for e in r["blocks"].values())
        assert r["speedup_forward_backward_vs_mmcv"] > 0 and r["memory_ratio_vs_official"] > 0
        assert r["forward_memory_ratio_vs_mmcv"] > 0
    table = report.block_comparison_table(rows)
    assert "| 2 | nchw |" in table and "B=1: forward+backward" in table
    report.plot({"block_vs_baselines": rows}, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_block_variants_compute_the_same_block():
    torch.manual_seed(0)
    block = CrissCrossAttention(8, reduction=2, gamma_init=0.5).double()
    x = torch.randn(2, 8, 5, 6, dtype=torch.float64)
    for name, op in attention.BLOCK_VARIANTS.items():
        if op is not None:
            torch.testing.assert_close(attention.composed_block(block, op)(x), block(x), msg=name)


def test_model_benchmark_small():
    rows = model_benchmark(backbone="resnet18", inference_size=(33, 33), train_size=(32, 32), batch=2,
                           amp=["off", "bf16"], repeats=1)
    assert [(r["task"], r["variant"]) for r in rows] == [
        (task, variant) for task in ("inference", "train_step")
        for variant in ("nchw", "nchw+bf16", "channels_last", "channels_last+bf16")]
    assert all(r["ms"] > 0 and r["batch"] == 2 and r["peak_mb"] is None for r in rows)  # memory: CUDA only
    assert rows[0]["speedup"] == 1.0 and rows[4]["speedup"] == 1.0  # each task against its first variant
    assert "| inference (resnet18, batch 2) | 33x33 | channels_last | bf16 |" in report.model_table(rows)


def test_model_benchmark_rejects_unknown_variants():
    with pytest.raises(ValueError, match="unknown AMP mode 'fp8'"):
        model_benchmark(backbone="resnet18", amp=["fp8"])


def test_feature_sizes_by_name_or_hxw():
    assert attention.feature_size("cityscapes-769") == (97, 97)
    assert attention.feature_size("13x11") == (13, 11)
    with pytest.raises(ValueError, match="unknown feature size '0x3'"):
        attention.feature_size("0x3")


def test_block_benchmark_in_bfloat16():
    rows = attention.block_benchmark(size=(6, 7), channels=16, reduction=4, layouts=["channels_last"], repeats=1,
                                     dtype=torch.bfloat16)
    assert {r["dtype"] for r in rows} == {"bfloat16"} and all(r["forward_backward_peak_mb"] > 0 for r in rows)


def test_forward_backward_runner_frees_the_gradients_it_made():
    # So that no call starts by freeing the last one's (CUDA's peak statistic would net that out).
    inputs = attention.make_inputs(1, 4, 2, (5, 6), torch.float32, torch.device("cpu"), requires_grad=True)
    attention.forward_backward_runner(official_criss_cross, inputs, torch.randn(1, 4, 5, 6))()
    assert all(t.grad is None for t in inputs)


def test_cli_bench_writes_json_markdown_and_plot(tiny_sizes, tmp_path, capsys):
    code = main(["bench", "op", "--sizes", "tiny", "--batches", "1", "--channels", "8", "--qk-channels", "4",
                 "--repeats", "1", "--no-memory", "--output", str(tmp_path)])
    assert code == 0
    results = json.loads((tmp_path / "bench.json").read_text())
    assert results["op"][0]["size"] == "tiny" and results["ceiling"]["matmul_2048_gflops"] > 0
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| 6x7 | 1 | 8 | nchw |" in (tmp_path / "bench.md").read_text()


def test_cli_bench_rejects_unknown_size(capsys):
    assert main(["bench", "op", "--sizes", "nowhere"]) == 2
    assert "unknown feature size 'nowhere'" in capsys.readouterr().err


def test_cli_bench_passes_the_device_and_model_options_through(monkeypatch, tmp_path, capsys):
    seen = {}
    monkeypatch.setattr(attention, "ceiling", lambda device, dtype: seen.setdefault("ceiling", device) and
                        {"matmul_2048_gflops": 1.0})

    def fake_model_benchmark(**kwargs):
        seen["model"] = kwargs
        return []

    monkeypatch.setattr("ccnet.bench.model.model_benchmark", fake_model_benchmark)
    assert main(["bench", "model", "--device", "cpu", "--model-batch", "8", "--model-size", "65", "67",
                 "--model-train-size", "63", "61", "--amp", "off", "bf16", "--layouts", "channels_last"]) == 0
    assert seen["ceiling"] == torch.device("cpu")
    assert seen["model"] | {"device": str(seen["model"]["device"])} == {
        "backbone": "resnet101", "inference_size": (65, 67), "train_size": (63, 61), "batch": 8,
        "layouts": ["channels_last"], "amp": ["off", "bf16"], "device": "cpu", "repeats": 2}
    capsys.readouterr()


def test_cli_bench_on_a_machine_without_cuda(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["bench", "op", "--device", "cuda"]) == 2
    assert "--device cuda: CUDA is not available" in capsys.readouterr().err


def test_clip_benchmark_3d_against_2d_block_flops_match_the_formula():
    frames, h, w, c, cq = 3, 6, 7, 16, 4
    rows = attention.clip_benchmark((frames, h, w), channels=c, reduction=4, recurrences=(2,), layouts=["nchw"],
                                    repeats=1)
    by_key = {(r["attention"], r["recurrence"]): r for r in rows}
    n = frames * h * w
    convs = 2 * n * c * (2 * cq + c)
    three_d = convs + 2 * n * (frames + h + w) * (cq + c)  # the counter sees T + H + W path entries
    two_d = convs + 2 * n * (h + w) * (cq + c)
    assert by_key[("3d", 2)]["gflops"] * 1e9 == pytest.approx(2 * three_d)
    assert by_key[("2d", 2)]["gflops"] * 1e9 == pytest.approx(2 * two_d)
    assert all(r["forward_backward_peak_mb"] > 0 and r["forward_backward_ms"] > 0 for r in rows)
    table = report.clip_table(rows)
    assert "| 3d | 2 | nchw |" in table and "nchw, R=2: 3D / 2D =" in table
