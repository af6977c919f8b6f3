"""Measuring time, peak memory and FLOPs of a callable, fairly on a noisy shared machine.

* Time: candidates run round-robin (A, B, C, A, B, C, ...) after warm-up, so a burst of
  background load hits all of them alike; the median is reported and ratios are taken between
  medians of the same run. On CUDA each call is timed by a pair of CUDA events on the current
  stream, the device synchronised before and after (kernels run asynchronously: a host clock
  would time their launch); on CPU by the host clock.
* Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``,
  minus what was allocated before the call; on CPU, PyTorch's profiler memory timeline (every
  tensor allocation and free), replayed to find the largest amount alive at once. Either way
  only memory allocated inside the call counts: the inputs are excluded. (On CUDA, memory that
  the call frees but did not allocate nets out against its own: callers free such tensors
  before, as the benchmark runners do with their gradients.)
* FLOPs: `torch.utils.flop_counter.FlopCounterMode`, an independent counter of the
  matmuls/convolutions actually dispatched.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# The first calls on a GPU pay for cuDNN algorithm selection, Triton compilation and the caching
# allocator's growth; they are never timed.
CUDA_MIN_WARMUP = 2


def time_call_ms(fn: Callable[[], object], device: torch.device) -> float:
    """Milliseconds of one ``fn()``: CUDA events on ``device`` (synchronised before and after), the
    host clock on other devices."""
    if device.type == "cuda":
        with torch.cuda.device(device):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end)
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def compare_times(
    candidates: dict[str, Callable[[], object]],
    device: torch.device | str = "cpu",
    warmup: int = 2,
    repeats: int = 10,
    min_seconds: float = 0.0,
) -> dict[str, list[float]]:
    """Times in milliseconds of each candidate (`time_call_ms`), measured round-robin.

    Runs ``warmup`` untimed rounds (at least `CUDA_MIN_WARMUP` on CUDA), then at least
    ``repeats`` timed rounds (more until ``min_seconds`` have passed). Returns every sample, per
    candidate.
    """
    device = torch.device(device)
    if device.type == "cuda":
        warmup = max(warmup, CUDA_MIN_WARMUP)
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    start = time.perf_counter()
    rounds = 0
    while rounds < repeats or time.perf_counter() - start < min_seconds:
        for name, fn in candidates.items():
            samples[name].append(time_call_ms(fn, device))
        rounds += 1
    return samples


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def peak_memory_bytes(fn: Callable[[], object], device: torch.device | str = "cpu") -> int:
    """Largest number of bytes of tensors allocated during ``fn()`` and alive at the same time."""
    device = torch.device(device)
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
        return torch.cuda.max_memory_allocated(device) - before
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import Action

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        fn()
    alive = peak = 0
    created = set()  # only tensors allocated inside the call: freeing older ones (say, last
    for _, action, key, size in prof._memory_profile().timeline:  # round's .grad) must not count
        key = key[0]  # (tensor, version): in-place ops bump the version between CREATE and DESTROY
        if action == Action.CREATE:
            created.add(key)
            alive += size
        elif action == Action.DESTROY and key in created:
            created.discard(key)
            alive -= size
        peak = max(peak, alive)
    return peak


def count_flops(fn: Callable[[], object]) -> int:
    """Floating-point operations of ``fn()`` (2 per multiply-add) as PyTorch's FLOP counter sees them."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_rate(size: int = 2048, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
                repeats: int = 10) -> float:
    """GFLOP/s of a ``size x size`` matrix multiply: the machine's practical ceiling."""
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    ms = median(compare_times({"mm": lambda: a @ b}, device=device, warmup=2, repeats=repeats)["mm"])
    return 2 * size**3 / (ms * 1e-3) / 1e9
