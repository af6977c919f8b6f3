"""On CUDA the trainers' SyncBatchNorm is PyTorch's (with the fused activation): a converted model
under DDP in a one-process NCCL group equals our layer's, and the benchmark runs all candidates."""

import pytest
import torch
import torch.distributed as dist

from ccnet.bench.sync_batchnorm import sync_batchnorm_benchmark
from ccnet.nn import convert_sync_batchnorm, make_norm
from ccnet.nn.norm import NativeSyncBatchNormAct2d

pytestmark = pytest.mark.cuda


def test_benchmark_candidates_agree_on_cuda():
    result = sync_batchnorm_benchmark("cuda", batch=2, channels=16, size=(17, 19), repeats=3, warmup=1)
    assert not dist.is_initialized()
    assert [row["name"] for row in result["rows"]] == ["ours", "native", "native-sync-path"]
    for row in result["rows"]:
        assert row["ms"] > 0 and row["peak_bytes"] > 0 and row["max_abs_diff"] <= 1e-4, row


def _model() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), make_norm("bn", 8, act="leaky_relu"),
                               torch.nn.Conv2d(8, 2, 1))


def test_native_conversion_trains_like_ours_under_ddp(monkeypatch):
    import socket

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # the convolutions in full float32

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    device = torch.device("cuda", torch.cuda.current_device())
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1, device_id=device)
    try:
        x = torch.randn(4, 3, 9, 11, generator=torch.Generator().manual_seed(1)).to(device)
        results = []
        for native in (False, True):
            model = convert_sync_batchnorm(_model(), native=native).to(device)
            assert isinstance(model[1], NativeSyncBatchNormAct2d) is native
            ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index])
            loss = ddp(x).square().mean()
            loss.backward()
            results.append((loss.detach(), [p.grad.clone() for p in model.parameters()], model[1].running_var))
        (loss_a, grads_a, var_a), (loss_b, grads_b, var_b) = results
        torch.testing.assert_close(loss_b, loss_a, rtol=1e-5, atol=1e-6)
        for a, b in zip(grads_a, grads_b, strict=True):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(var_b, var_a, rtol=1e-5, atol=1e-6)
    finally:
        dist.destroy_process_group()
