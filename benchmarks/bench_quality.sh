#!/usr/bin/env bash
# Quality on the embedded benchmark at 5% labels: one shared burn-in, then each variant continues
# from the same burned-in checkpoint with the same seed, schedule and iteration budget.
#   bash benchmarks/bench_quality.sh [OUT_DIR]        (default runs/quality; CFG=... picks the config)
# Steps:
#  1. burn-in with $CFG (default benchmarks/quality.yaml) to train.burn_in_iters;
#  2. thresholds: the best-F1 DDTF pair and coupled s_t in the workbench's what-if grids on the
#     burn-in's last pseudo-label records (benchmarks/pick_thresholds.py; its docstring says why);
#  3. the variants, one after the other (each uses every core), to train.max_iters:
#     supervised only; coupled threshold without PMUA (the baseline the paper's modules are added
#     to); PL-DC = DDTF + PMUA; PL-DC without DDTF (coupled + PMUA); PL-DC without PMUA (DDTF).
#     DICC needs CLIP weights, which this machine cannot download: every PL-DC row is without DICC.
#  4. each variant's last checkpoint evaluated on all val images (teacher and student), then
#     benchmarks/quality_table.py writes benchmarks/results/quality.md.
# Finished steps are skipped, so a rerun after an interruption picks up where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/quality}
CFG=${CFG:-benchmarks/quality.yaml}
PLDC=".venv/bin/pldc"
PY=".venv/bin/python"
export PLDC_NO_PROGRESS=1
read -r BURN MAX < <($PY -c "from pldc_core.config import load_config as L; c=L('$CFG'); print(c.train.burn_in_iters, c.train.max_iters)")
[ -f data/splits/synthetic.json ] || $PLDC data make-synthetic
mkdir -p "$OUT"

if [ ! -f "$OUT/burn_in/checkpoints/ckpt_$(printf %07d "$BURN").pt" ]; then
  if [ -d "$OUT/burn_in/checkpoints" ]; then
    $PLDC train --resume "$OUT/burn_in" --stop-at "$BURN"
  else
    $PLDC train --config "$CFG" --run-dir "$OUT/burn_in" --stop-at "$BURN" name=burn_in
  fi
fi
$PLDC eval --checkpoint "$OUT/burn_in" --model student --out "$OUT/burn_in/final_eval_student.json"

read -r -a THRESHOLDS < <($PY benchmarks/pick_thresholds.py "$OUT/burn_in" --out "$OUT/thresholds.json")
echo "thresholds: ${THRESHOLDS[*]}"

VARIANTS=(
  "supervised pldc.enabled=false"
  "coupled pldc.filter=coupled pldc.pmua=false"
  "pldc"
  "pldc_no_ddtf pldc.filter=coupled"
  "pldc_no_pmua pldc.pmua=false"
)
for spec in "${VARIANTS[@]}"; do
  read -r -a words <<< "$spec"
  name=${words[0]}
  overrides=("${words[@]:1}")
  [ -f "$OUT/$name/final_eval_student.json" ] && continue
  if [ ! -f "$OUT/$name/checkpoints/ckpt_$(printf %07d "$MAX").pt" ]; then
    if [ ! -d "$OUT/$name" ]; then
      cp -r "$OUT/burn_in" "$OUT/$name.tmp"
      rm -f "$OUT/$name.tmp"/final_eval_*.json
      mv "$OUT/$name.tmp" "$OUT/$name"
      $PLDC train --resume "$OUT/$name" name="$name" "${THRESHOLDS[@]}" "${overrides[@]}"
    else
      $PLDC train --resume "$OUT/$name"  # interrupted earlier: its saved config holds the overrides
    fi
  fi
  if [ "$name" != supervised ]; then
    $PLDC eval --checkpoint "$OUT/$name" --model teacher --out "$OUT/$name/final_eval_teacher.json"
  fi
  $PLDC eval --checkpoint "$OUT/$name" --model student --out "$OUT/$name/final_eval_student.json"
done
$PY benchmarks/quality_table.py "$OUT"
