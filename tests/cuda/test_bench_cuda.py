"""ccnet bench on CUDA: CUDA events time the device's work (not the kernel launches), the
allocator's peak counts what a call allocates, and every benchmark runs on ``--device cuda``."""

import json
import time

import pytest
import torch

from ccnet.bench import attention
from ccnet.bench.measure import compare_times, peak_memory_bytes, time_call_ms
from ccnet.bench.model import model_benchmark
from ccnet.cli import main

pytestmark = pytest.mark.cuda
CUDA = torch.device("cuda")


def test_cuda_events_time_the_kernels_not_their_launch():
    torch.cuda._sleep(1000)  # load the sleep kernel before anything is timed
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    torch.cuda._sleep(50_000_000)  # ~25 ms of GPU clock cycles at 2 GHz; the launch returns at once
    launch_ms = (time.perf_counter() - t0) * 1e3
    torch.cuda.synchronize()
    timed = time_call_ms(lambda: torch.cuda._sleep(50_000_000), CUDA)
    assert timed >= 10.0 and timed > 5 * launch_ms, (timed, launch_ms)


def test_compare_times_on_cuda_runs_round_robin_after_warm_up():
    calls = []
    a = torch.randn(512, 512, device=CUDA)
    samples = compare_times({"x": lambda: calls.append("x") or a @ a, "y": lambda: calls.append("y") or a + a},
                            CUDA, warmup=0, repeats=3)
    assert calls == ["x", "y"] * 5  # at least two warm-up rounds on CUDA, then three timed
    assert all(len(v) == 3 and min(v) > 0 for v in samples.values())


def test_peak_memory_on_cuda_counts_what_the_call_allocates():
    def work():
        big = torch.ones(1024, 1024, device=CUDA)  # 4 MiB
        tmp = big * 2  # another 4 MiB alive at once
        del tmp
        return (big + 1).sum()  # 4 MiB again, after tmp was freed

    held = torch.ones(4096, 1024, device=CUDA)  # 16 MiB allocated before: not the call's
    peak = peak_memory_bytes(work, CUDA)
    assert 8 * 2**20 <= peak < 9 * 2**20
    del held


def test_op_benchmark_on_cuda(monkeypatch):
    monkeypatch.setitem(attention.FEATURE_SIZES, "tiny", (9, 7))
    for dtype, limit in ((torch.float32, 1e-5), (torch.bfloat16, 3e-2)):
        rows = attention.op_benchmark(["tiny"], batches=[1, 2], channels=[8], qk_channels=4, dtype=dtype,
                                      device="cuda", repeats=2)
        for row in rows:
            for entry in row["ops"].values():
                assert entry["forward_ms"] > 0 and entry["forward_backward_ms"] > 0
                assert entry["forward_backward_peak_mb"] > 0 and entry["forward_peak_mb"] > 0
        assert all(r["relative_error"] < limit for r in rows if r["batch"] == 1)


def test_block_and_model_benchmarks_on_cuda():
    rows = attention.block_benchmark(size=(9, 7), channels=16, reduction=4, layouts=["channels_last"],
                                     device="cuda", repeats=1, dtype=torch.bfloat16)
    assert {r["dtype"] for r in rows} == {"bfloat16"}
    assert all(r["forward_backward_peak_mb"] > 0 and r["forward_ms"] > 0 for r in rows)
    rows = model_benchmark(backbone="resnet18", inference_size=(33, 33), train_size=(32, 32), batch=2,
                           amp=["off", "fp16"], device="cuda", repeats=1)
    assert [(r["task"], r["variant"]) for r in rows] == [
        (task, variant) for task in ("inference", "train_step")
        for variant in ("nchw", "nchw+fp16", "channels_last", "channels_last+fp16")]
    assert all(r["ms"] > 0 and r["peak_mb"] > 0 for r in rows)


def test_cli_bench_on_cuda_records_the_gpu(tmp_path, capsys):
    assert main(["bench", "op", "block", "--device", "cuda", "--sizes", "9x7", "--batches", "1", "--channels", "8",
                 "--qk-channels", "4", "--repeats", "1", "--block-size", "9", "7", "--block-channels", "16",
                 "--dtype", "bfloat16", "--output", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "bench.json").read_text())
    assert results["device"] == "cuda" and results["gpu"] == torch.cuda.get_device_name()
    assert results["op"][0]["dtype"] == "bfloat16" and results["block"][0]["dtype"] == "bfloat16"
    capsys.readouterr()
