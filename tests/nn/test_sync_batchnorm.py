"""SyncBatchNorm on CPU with gloo: two ranks equal one BatchNorm over the concatenated batch."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ccnet.nn.sync_batchnorm import SyncBatchNorm


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, x: torch.Tensor, grad: torch.Tensor, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    bn = SyncBatchNorm(3, momentum=0.3).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, -2.0, 0.5]))
        bn.bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
    part = x.chunk(world)[rank].clone().requires_grad_()
    out = bn(part)
    out.backward(grad.chunk(world)[rank])
    torch.save({"out": out.detach(), "grad": part.grad, "weight_grad": bn.weight.grad,
                "running_mean": bn.running_mean, "running_var": bn.running_var}, f"{out_dir}/{rank}.pt")
    dist.destroy_process_group()


def test_two_ranks_equal_batchnorm_on_the_whole_batch(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(4, 3, 5, 6, dtype=torch.float64) * 3 + 1
    grad = torch.randn_like(x)
    mp.spawn(_worker, args=(2, _free_port(), x, grad, str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"{r}.pt") for r in range(2)]

    bn = torch.nn.BatchNorm2d(3, momentum=0.3).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, -2.0, 0.5]))
        bn.bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
    whole = x.clone().requires_grad_()
    out = bn(whole)
    out.backward(grad)
    torch.testing.assert_close(torch.cat([r["out"] for r in ranks]), out.detach())
    torch.testing.assert_close(torch.cat([r["grad"] for r in ranks]), whole.grad)
    # Each rank holds the gradient of its own share; DDP sums (then averages) them.
    torch.testing.assert_close(ranks[0]["weight_grad"] + ranks[1]["weight_grad"], bn.weight.grad)
    for r in ranks:
        torch.testing.assert_close(r["running_mean"], bn.running_mean)
        torch.testing.assert_close(r["running_var"], bn.running_var)


def test_single_process_is_plain_batchnorm():
    torch.manual_seed(0)
    sync, plain = SyncBatchNorm(4), torch.nn.BatchNorm2d(4)
    x = torch.randn(3, 4, 2, 2)
    torch.testing.assert_close(sync(x), plain(x))
