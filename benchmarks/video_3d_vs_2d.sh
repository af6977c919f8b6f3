#!/bin/bash
# CCNet3D (3D attention across the clip) against per-frame 2D attention on the synthetic video task, R=2, 2 seeds.
# Usage (from the repository root): bash benchmarks/video_3d_vs_2d.sh [OUT]   (default OUT: runs/video_3d_vs_2d)
# 300 iterations instead of the config's 500 to fit the CPU time of the session that ran it; one thread per run.
set -euo pipefail
OUT=${1:-runs/video_3d_vs_2d}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
for seed in 0 1; do
  for attention in 3d 2d; do
    out=$OUT/$attention-seed$seed
    [ -f "$out/metrics.json" ] && continue
    OMP_NUM_THREADS=1 "$PY" -m ccnet.cli train configs/synthetic_video.yaml \
      --output "$out" --no-progress seed=$seed video.attention=$attention optim.iterations=300 > "$out.log" 2>&1
  done
done
OMP_NUM_THREADS=1 "$PY" benchmarks/video_key_frames.py "$OUT"/*-seed? | tee "$OUT/key_frames.txt"
