#!/bin/sh
# Copy the finished runs (status done or diverged) of the study into the repository and
# regenerate its report from them (ccnet reproduce --report-only) and README's findings table.
# usage: sh scripts/study_export.sh [STUDY_DIR] [DEST]   (from the repository root; .venv made)
set -e
OUT=${1:-runs/study}
DEST=${2:-docs/reproduction/preregistered}
PY=.venv/bin/python
mkdir -p "$DEST"
cp "$OUT/plan.json" "$OUT/study.json" "$DEST/"
[ -f "$OUT/cost.json" ] && cp "$OUT/cost.json" "$DEST/"
cp docs/benchmarks/block/bench.json "$DEST/block_bench.json"
for d in "$OUT"/runs/*/seed*; do
  state=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1])).get('status'))" "$d/status.json" 2>/dev/null || true)
  case "$state" in
    done|diverged)
      rel=${d#"$OUT"/}
      mkdir -p "$DEST/$rel"
      for f in config.yaml log.jsonl status.json metrics.json probe.json; do [ -f "$d/$f" ] && cp "$d/$f" "$DEST/$rel/"; done ;;
  esac
done
PYTHONPATH="$PWD/src" "$PY" -m ccnet.cli reproduce --output "$DEST" --report-only
"$PY" scripts/readme_verdicts.py  # README's findings table is the generated verdicts.md
