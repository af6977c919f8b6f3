"""SyncBatchNorm and DDP over NCCL, one process per GPU (a group of one on a single-GPU machine:
the all-reduce path runs all the same). Ranks together equal one BatchNorm over the whole batch."""

import os
import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ccnet.nn import convert_sync_batchnorm
from ccnet.nn.sync_batchnorm import SyncBatchNorm

pytestmark = pytest.mark.cuda


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, x: torch.Tensor, grad: torch.Tensor, out_dir: str) -> None:
    device = torch.device("cuda", rank)
    torch.cuda.set_device(device)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("nccl", rank=rank, world_size=world, device_id=device)
    try:
        assert dist.get_backend() == "nccl"
        results = {}
        for dtype in (torch.float64, torch.float32):
            bn = SyncBatchNorm(3, momentum=0.3).to(device, dtype)
            with torch.no_grad():
                bn.weight.copy_(torch.tensor([1.0, -2.0, 0.5]))
                bn.bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
            part = x.chunk(world)[rank].to(device, dtype).requires_grad_()
            out = bn(part)
            out.backward(grad.chunk(world)[rank].to(device, dtype))
            results[str(dtype)] = {"out": out.detach().cpu(), "grad": part.grad.cpu(),
                                   "weight_grad": bn.weight.grad.cpu(), "running_mean": bn.running_mean.cpu(),
                                   "running_var": bn.running_var.cpu()}
        # Half-precision activations (autocast) go through the same float32 statistics.
        bn = SyncBatchNorm(3).to(device)
        half = x.chunk(world)[rank].to(device, torch.float16).requires_grad_()
        out = bn(half)
        out.float().sum().backward()
        results["float16"] = {"dtype": str(out.dtype), "finite": bool(torch.isfinite(out).all() and
                                                                      torch.isfinite(half.grad).all())}
        # A converted model under DDP: one training step over NCCL.
        model = convert_sync_batchnorm(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1),
                                                           torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                                           torch.nn.Conv2d(8, 2, 1))).to(device)
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[rank])
        with torch.autocast("cuda", dtype=torch.float16):
            loss = ddp(x.chunk(world)[rank].to(device, torch.float32)).float().square().mean()
        loss.backward()
        results["ddp"] = {"loss": loss.item(), "grads_finite": all(bool(torch.isfinite(p.grad).all())
                                                                   for p in model.parameters())}
        torch.save(results, f"{out_dir}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def _batchnorm_on_the_whole_batch(x, grad, dtype):
    bn = torch.nn.BatchNorm2d(3, momentum=0.3).to(dtype)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, -2.0, 0.5]))
        bn.bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
    whole = x.to(dtype).clone().requires_grad_()
    out = bn(whole)
    out.backward(grad.to(dtype))
    return out.detach(), whole.grad, bn


def test_sync_batchnorm_over_nccl_equals_batchnorm_on_the_whole_batch(tmp_path):
    world = min(2, torch.cuda.device_count())
    torch.manual_seed(0)
    x = torch.randn(4, 3, 5, 6, dtype=torch.float64) * 3 + 1
    grad = torch.randn_like(x)
    context = mp.spawn(_worker, args=(world, _free_port(), x, grad, str(tmp_path)), nprocs=world, join=False)
    deadline = time.monotonic() + 60
    while not context.join(timeout=5):  # raises if a worker failed
        if time.monotonic() > deadline:  # a hung NCCL set-up fails this test, not the whole run
            for process in context.processes:
                process.kill()
            pytest.fail(f"the {world} NCCL worker(s) still ran after 60 s")
    ranks = [torch.load(tmp_path / f"{r}.pt") for r in range(world)]
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        out, x_grad, bn = _batchnorm_on_the_whole_batch(x, grad, dtype)
        results = [r[str(dtype)] for r in ranks]
        torch.testing.assert_close(torch.cat([r["out"] for r in results]), out, rtol=tol, atol=tol)
        torch.testing.assert_close(torch.cat([r["grad"] for r in results]), x_grad, rtol=tol, atol=tol)
        # Each rank holds the gradient of its own share; DDP sums (then averages) them.
        torch.testing.assert_close(sum(r["weight_grad"] for r in results), bn.weight.grad, rtol=tol, atol=tol)
        for r in results:
            torch.testing.assert_close(r["running_mean"], bn.running_mean, rtol=tol, atol=tol)
            torch.testing.assert_close(r["running_var"], bn.running_var, rtol=tol, atol=tol)
    for r in ranks:
        assert r["float16"] == {"dtype": "torch.float16", "finite": True}
        assert r["ddp"]["grads_finite"] and torch.isfinite(torch.tensor(r["ddp"]["loss"]))
