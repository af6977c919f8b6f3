"""What the fused criss-cross Triton kernels should cost on the project's H200, on paper: per
kernel launch (forward per axis, delta, backward per axis) at the Cityscapes 769 head shape, the
FLOPs, the bytes moved and the roofline time. Pure arithmetic from the shapes and the launcher's
tiling (``ccnet.ops.criss_cross_triton``: ``TILES``, ``MAX_BLOCKS``); no GPU, no triton.

Counted per launch, from the kernels' code (``ccnet.ops.criss_cross_triton_kernels``):

* useful FLOPs: the algorithm's matrix products over the valid ``H + W - 1`` criss-cross path
  (the centre counted once), 2 FLOPs per multiply-add.
* executed FLOPs: the ``tl.dot`` products the programs issue on their padded tiles (lines of 97
  padded to the key and query blocks), including the recomputation: the forward recomputes the
  energies ``q . k`` for every value-channel block; the backward's three kernels (dV, dK, dQ)
  each recompute them from q and k, and dK and dQ both compute ``dA = dO V^T``.
  The delta kernel's products are not tensor-core work (FP32 multiply-adds). Exponentials,
  masks and the softmax bookkeeping are not counted.
* issued bytes: every masked load and store the programs make (valid elements only), re-reads
  included (k and v once per query block and value-channel block; in the backward the tile a
  program holds once per step of its loop over the line): an upper bound on DRAM traffic when nothing hits L2.
* unique bytes: each tensor a launch touches read or written once: a lower bound.

Roofline time: the larger of compute time (each product's FLOPs over the peak of the unit it
runs on) and memory time (issued bytes over the copy bandwidth); ``t_unique`` the same with the
unique bytes. Peaks (:data:`PEAKS`, :data:`BANDWIDTH`; their sources in the report): bfloat16
tensor cores as an 8192^3 bf16 matrix product measured on the project's H200, TF32 (dense, half
the sparse figure) and FP32 (non-tensor) from NVIDIA's H200 SXM datasheet, memory as a
device-to-device copy measured there (bytes read plus written).

    python scripts/triton_roofline.py --report docs/triton-roofline.md --json docs/triton-roofline.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ccnet.ops.criss_cross_triton import MAX_BLOCKS, TILES, _cdiv, _pow2, backward_blocks

# FLOP/s per unit, bytes/s of memory. "bf16": measured; "tf32" and "fp32": NVIDIA's H200 datasheet.
PEAKS = {"bf16": 790e12, "tf32": 494e12, "fp32": 67e12}
BANDWIDTH = 4.3e12
# (name, element size, TILES row, unit of the products of inputs, unit of the products with dE)
DTYPES = (
    ("float32 (highest)", 4, "ieee", "fp32", "fp32"),
    ("float32 (high)", 4, "tf32", "tf32", "tf32"),
    ("bfloat16", 2, "half", "bf16", "tf32"),
)
SHAPES = ((1, 64, 512, 97, 97), (8, 64, 512, 97, 97))  # batch, query/key channels, value channels, H, W


@dataclass
class Launch:
    """One kernel launch's work: FLOPs per unit (useful and executed) and bytes."""

    kernel: str
    batch: int
    dtype: str
    programs: int
    blocks: dict[str, int] = field(default_factory=dict)  # the launch's BLOCK_* sizes
    useful_flops: float = 0.0
    flops: dict[str, float] = field(default_factory=dict)
    issued_bytes: float = 0.0
    unique_bytes: float = 0.0

    def add(self, unit: str, flops: float) -> None:
        self.flops[unit] = self.flops.get(unit, 0.0) + flops

    @property
    def executed_flops(self) -> float:
        return sum(self.flops.values())

    @property
    def compute_s(self) -> float:
        return sum(flops / PEAKS[unit] for unit, flops in self.flops.items())

    @property
    def memory_s(self) -> float:
        return self.issued_bytes / BANDWIDTH

    @property
    def time_s(self) -> float:
        return max(self.compute_s, self.memory_s)

    @property
    def time_unique_s(self) -> float:
        return max(self.compute_s, self.unique_bytes / BANDWIDTH)

    @property
    def bound(self) -> str:
        return "compute" if self.compute_s >= self.memory_s else "memory"

    def row(self) -> dict[str, object]:
        return {**asdict(self), "executed_flops": self.executed_flops, "compute_s": self.compute_s,
                "memory_s": self.memory_s, "time_s": self.time_s, "time_unique_s": self.time_unique_s,
                "bound": self.bound, "intensity": self.executed_flops / self.issued_bytes}


def forward(batch: int, cqk: int, cv: int, spatial: tuple[int, int], dtype: tuple) -> list[Launch]:
    """The forward's launches, one per axis (H, then W with the merge), as ``triton_forward``."""
    name, size, tiles_row, unit, _ = dtype
    tiles, positions = TILES[tiles_row], spatial[0] * spatial[1]
    block_cq = min(MAX_BLOCKS["cq"], _pow2(cqk))
    launches = []
    for n, length in enumerate(spatial):
        last, lines = n == len(spatial) - 1, batch * positions // length
        block_m, block_n = min(MAX_BLOCKS["m"], _pow2(length)), min(MAX_BLOCKS["n"], _pow2(length))
        block_c = min(MAX_BLOCKS["c"], _pow2(cv), max(16, tiles["forward_mc"] // block_m))
        blocks_m, blocks_c, blocks_n = _cdiv(length, block_m), _cdiv(cv, block_c), _cdiv(length, block_n)
        launch = Launch(f"forward axis {'HW'[n]}", batch, name, lines * blocks_m * blocks_c,
                        {"BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_CQ": block_cq, "BLOCK_C": block_c})
        padded_keys, chunks = blocks_n * block_n, _cdiv(cqk, block_cq)
        # per program: energies (BLOCK_M x keys x query/key channels), P @ V (BLOCK_M x keys x BLOCK_C)
        launch.add(unit, launch.programs * 2 * block_m * padded_keys * (chunks * block_cq + block_c))
        path = length if last else length - 1  # the centre is counted on the last axis only
        launch.useful_flops = 2 * batch * positions * path * (cqk + cv)
        out_size = size if last else 4  # the last axis writes the output, the others a float32 partial
        # per line: q once per channel block, k once per query block and channel block, v once
        # per query block, the output once, the log-sum-exp once (and, merging, the partial and
        # the previous log-sum-exp, this one read by every channel block)
        per_line = (length * cqk * size * blocks_c + blocks_m * length * cqk * size * blocks_c
                    + blocks_m * length * cv * size + length * cv * out_size + length * 4)
        unique = (2 * cqk + cv) * size + cv * out_size + 4
        if n > 0:
            per_line += length * cv * 4 + length * 4 * blocks_c
            unique += cv * 4 + 4
        launch.issued_bytes = lines * per_line
        launch.unique_bytes = batch * positions * unique
        launches.append(launch)
    return launches


def delta(batch: int, cv: int, spatial: tuple[int, int], dtype: tuple) -> Launch:
    """``delta = sum_c dO * O``: reads the output and its gradient, writes one float32 per pixel."""
    name, size = dtype[0], dtype[1]
    positions = batch * spatial[0] * spatial[1]
    launch = Launch("delta", batch, name, _cdiv(positions, 64), {"BLOCK_P": 64, "BLOCK_C": min(32, _pow2(cv))})
    launch.add("fp32", 2 * positions * cv)
    launch.useful_flops = 2 * positions * cv
    launch.issued_bytes = launch.unique_bytes = positions * (2 * cv * size + 4)
    return launch


def backward(batch: int, cqk: int, cv: int, spatial: tuple[int, int], dtype: tuple) -> list[Launch]:
    """The backward's launches per axis (after delta), dV, dK and dQ, as ``triton_backward``: each
    program holds a tile of keys (dV, dK) or queries (dQ) and loops over the other side of the line,
    recomputing the energies (and, for dK and dQ, ``dA``) from the inputs."""
    name, size, tiles_row, unit, grad_unit = dtype
    positions = spatial[0] * spatial[1]
    launches = []
    for n, length in enumerate(spatial):
        last, lines = n == len(spatial) - 1, batch * positions // length
        blocks = backward_blocks(TILES[tiles_row], length, cqk, cv)
        path = length if last else length - 1
        grad_size = size if last else 4  # the last axis writes the gradients, the others float32 partials
        dv, dk, dq = blocks["dv"], blocks["dk"], blocks["dq"]
        energy_depth = _cdiv(cqk, dv["BLOCK_KQ"]) * dv["BLOCK_KQ"]  # padded channel chunks
        grad_depth = _cdiv(cv, dk["BLOCK_KV"]) * dk["BLOCK_KV"]
        for kernel, own, loop, chan, chan_blocks in (
                ("dv", dv["BLOCK_N"], dv["BLOCK_M"], dv["BLOCK_C"], _cdiv(cv, dv["BLOCK_C"])),
                ("dk", dk["BLOCK_N"], dk["BLOCK_M"], dk["BLOCK_CQ"], _cdiv(cqk, dk["BLOCK_CQ"])),
                ("dq", dq["BLOCK_M"], dq["BLOCK_N"], dq["BLOCK_CQ"], _cdiv(cqk, dq["BLOCK_CQ"]))):
            own_blocks, loop_blocks = _cdiv(length, own), _cdiv(length, loop)
            launch = Launch(f"backward_{kernel} axis {'HW'[n]}", batch, name, lines * own_blocks * chan_blocks,
                            dict(blocks[kernel]))
            tile = launch.programs * 2 * own * loop_blocks * loop  # per unit of product depth
            # recomputed energies; dV: A^T dO; dK, dQ: dA over the value channels, then dE with q or k
            launch.add(unit, tile * (energy_depth + (chan if kernel == "dv" else grad_depth)))
            if kernel != "dv":
                launch.add(grad_unit, tile * chan)
            # per line (valid elements): the held side once per program, the looped side once per
            # loop step (its energy operand) and per program (its other tiles)
            passes = own_blocks * chan_blocks  # programs per line, each sweeping the line once
            if kernel == "dv":
                launch.useful_flops = 2 * batch * positions * path * cv
                per_line = (chan_blocks * loop_blocks * length * cqk * size  # k, once per query block
                            + passes * length * (cqk * size + 4)  # q and lse swept
                            + own_blocks * length * cv * size  # dO, each channel block its own
                            + length * cv * grad_size)
                unique, written = (2 * cqk + cv) * size + 4 + cv * grad_size, cv
            else:
                launch.useful_flops = 2 * batch * positions * path * (cv + 2 * cqk if kernel == "dk" else cqk)
                per_line = (chan_blocks * loop_blocks * length * (cqk + cv) * size  # held side, per step
                            + passes * length * (cqk + cv) * size  # looped side swept
                            + own_blocks * length * cqk * size  # its q (dK) or k (dQ) channel block
                            + (passes if kernel == "dk" else chan_blocks) * length * 8  # lse, delta
                            + length * cqk * grad_size)
                unique, written = (2 * cqk + 2 * cv) * size + 8 + cqk * grad_size, cqk
            if n > 0:  # read-modify-write of the float32 partials
                per_line += length * written * 4
                unique += written * 4
            launch.issued_bytes = lines * per_line
            launch.unique_bytes = batch * positions * unique
            launches.append(launch)
    return launches


def launches() -> list[Launch]:
    """Every launch of a forward and a backward at :data:`SHAPES` in each of :data:`DTYPES`."""
    result = []
    for batch, cqk, cv, height, width in SHAPES:
        for dtype in DTYPES:
            result += forward(batch, cqk, cv, (height, width), dtype)
            result.append(delta(batch, cv, (height, width), dtype))
            result += backward(batch, cqk, cv, (height, width), dtype)
    return result


def roofline_ms(batch: int, qk_channels: int, channels: int, height: int, width: int, dtype: str,
                precision: str = "highest") -> dict[str, float]:
    """Roofline time (ms) of one 2D criss-cross attention call, forward and forward + backward,
    for inputs of ``dtype`` ("float32" under matmul ``precision``, "bfloat16" or "float16": the
    same tensor-core peak) with the launcher's tiling: what ``ccnet bench op`` times."""
    if dtype == "float32":
        row = DTYPES[0] if precision == "highest" else DTYPES[1]
    elif dtype in ("bfloat16", "float16"):
        row = (dtype, *DTYPES[2][1:])
    else:
        raise ValueError(f"no roofline for dtype {dtype!r}: float32, bfloat16 or float16")
    spatial = (height, width)
    ahead = forward(batch, qk_channels, channels, spatial, row)
    behind = [delta(batch, channels, spatial, row), *backward(batch, qk_channels, channels, spatial, row)]
    fwd = sum(launch.time_s for launch in ahead) * 1e3
    return {"forward_ms": fwd, "forward_backward_ms": fwd + sum(launch.time_s for launch in behind) * 1e3}


def markdown(rows: list[Launch]) -> str:
    """The report: one table row per launch, with forward and backward totals."""
    lines = [
        "# Fused criss-cross Triton kernels: the roofline on paper",
        "",
        "Made by `python scripts/triton_roofline.py --report docs/triton-roofline.md --json "
        "docs/triton-roofline.json` (arithmetic from the shapes and the launcher's tiling; no GPU). "
        "Shape: the Cityscapes 769 head, query/key channels 64, value channels 512, 97x97 features.",
        "",
        "Peaks: bfloat16 tensor cores 790 TFLOP/s (an 8192^3 bf16 matrix product measured on the project's "
        "H200); TF32 tensor cores 494 TFLOP/s dense and FP32 (non-tensor) 67 TFLOP/s, from NVIDIA's H200 "
        "datasheet (H200 SXM: TF32 989 TFLOPS with sparsity, halved); memory 4.3 TB/s (a device-to-device "
        "copy measured there, bytes read plus written). float32 under PyTorch's default \"highest\" matmul "
        "precision multiplies in FP32 (no tensor cores), under \"high\" in TF32; bfloat16's products with "
        "the float32 energy gradient (dK, dQ) run in TF32.",
        "",
        "Columns: *useful* GFLOP = the algorithm's matrix products over the `H + W - 1` path; *executed* = "
        "the `tl.dot` products on padded tiles, with the forward's energies recomputed per value-channel "
        "block and the backward's recomputed from q and k (exponentials and softmax bookkeeping not "
        "counted); *issued* MB = every load and store the programs make, L2 re-reads included (upper bound "
        "on DRAM traffic); *unique* MB = each tensor touched once (lower bound); intensity = executed FLOP "
        "per issued byte; bound and *t* from the executed FLOPs and issued bytes, *t unique* with the "
        "unique bytes.",
        "",
        "| kernel | batch | dtype | programs | useful GFLOP | executed GFLOP | issued MB | unique MB "
        "| FLOP/B | bound | t (us) | t unique (us) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def line(kernel: str, batch: int, dtype: str, programs: str, group: list[Launch]) -> str:
        useful = sum(r.useful_flops for r in group)
        executed = sum(r.executed_flops for r in group)
        issued, unique = sum(r.issued_bytes for r in group), sum(r.unique_bytes for r in group)
        compute = sum(r.compute_s for r in group)
        time, time_unique = sum(r.time_s for r in group), sum(r.time_unique_s for r in group)
        bound = group[0].bound if len(group) == 1 else "compute" if compute >= issued / BANDWIDTH else "memory"
        return (f"| {kernel} | {batch} | {dtype} | {programs} | {useful / 1e9:.2f} | {executed / 1e9:.2f} "
                f"| {issued / 1e6:.1f} | {unique / 1e6:.1f} | {executed / issued:.1f} | {bound} "
                f"| {time * 1e6:.1f} | {time_unique * 1e6:.1f} |")

    per_call = 9  # forward H, forward W, delta, backward dV, dK, dQ for H, then for W
    for start in range(0, len(rows), per_call):
        group = rows[start:start + per_call]
        batch, dtype = group[0].batch, group[0].dtype
        lines += [line(r.kernel, batch, dtype, str(r.programs), [r]) for r in group]
        lines.append(line("**forward total**", batch, dtype, "", group[:2]))
        lines.append(line("**backward total**", batch, dtype, "", group[2:]))
    lines += ["", "Totals add the launches' times (launches run one after the other); the backward total is "
              "delta and both axes. The roofline assumes every SM busy; the backward's dK and dQ launches run "
              "one program per tile of 32 positions of a line (4 per line of 97: 388 per axis at batch 1, "
              "on the H200's 132 SMs). "
              "Measured times: "
              "`ccnet bench op block` in `make gpu-check`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", type=Path, help="write the Markdown table here (default: print it)")
    parser.add_argument("--json", type=Path, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    rows = launches()
    text = markdown(rows)
    if args.report:
        args.report.write_text(text)
    else:
        sys.stdout.write(text)
    if args.json:
        args.json.write_text(json.dumps({"peaks": PEAKS, "bandwidth": BANDWIDTH,
                                         "launches": [r.row() for r in rows]}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
