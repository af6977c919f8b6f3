#!/bin/sh
# Start (or resume) the pre-registered study (ccnet reproduce, plan in ccnet.study.plan) as two
# one-thread processes, from a snapshot of the commit whose training code the study runs on, so
# that later commits never change a run half-way. Finished runs are kept; interrupted ones resume.
# usage: sh scripts/study_launch.sh [COMMIT] [STUDY_DIR]   (from the repository root; .venv made)
#   COMMIT default c9f89b5 (the training code of the committed runs), STUDY_DIR default runs/study
set -e
ROOT=$(pwd)
SHA=$(git rev-parse --short "${1:-c9f89b5}")
OUT=$(realpath -m "${2:-runs/study}")
CODE="$ROOT/runs/study-code-$SHA"
PY="$ROOT/.venv/bin/python"
if [ ! -d "$CODE/src" ]; then mkdir -p "$CODE" && git archive "$SHA" src | tar -x -C "$CODE"; fi
mkdir -p "$OUT"
cd "$CODE"
export PYTHONPATH="$CODE/src"
nohup nice -n 5 "$PY" -m ccnet.cli reproduce --output "$OUT" --threads 1 --only loops192 stability >> "$OUT/process-A.log" 2>&1 &
echo "A: pid $! (log $OUT/process-A.log)"
# B after A has written the plan and the cost measurement (one measurement at a time)
nohup sh -c "while [ ! -f '$OUT/cost.json' ]; do sleep 10; done; exec nice -n 5 '$PY' -m ccnet.cli reproduce --output '$OUT' --threads 1 --only columns ccl_columns" >> "$OUT/process-B.log" 2>&1 &
echo "B: pid $! (log $OUT/process-B.log; waits for cost.json)"
