#!/usr/bin/env bash
# Quality on the embedded benchmark at 5% labels: one shared burn-in, then each variant continues
# from the same burned-in checkpoint with the same seed, schedule and iteration budget.
#   bash benchmarks/bench_quality.sh [OUT_DIR] [STOP_AT]   (defaults: runs/quality, cpu-quick's max_iters)
# STOP_AT < max_iters pauses every variant there (same LR schedule, fewer steps) to fit a time budget.
# Variants (DICC needs CLIP weights, which this machine cannot download, so every PL-DC row is
# without DICC): supervised only; PL-DC with the coupled threshold (= without DDTF); PL-DC
# (DDTF + PMUA); PL-DC without PMUA. Each is evaluated at its last iteration, then
# benchmarks/quality_table.py writes benchmarks/results/quality.md.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/quality}
PLDC=".venv/bin/pldc"
export PLDC_NO_PROGRESS=1
CFG=configs/cpu-quick.yaml
read -r BURN MAX EVAL_N < <(.venv/bin/python -c "from pldc_core.config import load_config as L; c=L('$CFG'); print(c.train.burn_in_iters, c.train.max_iters, c.data.eval_images)")
STOP=${2:-$MAX}
[ -f data/splits/synthetic.json ] || $PLDC data make-synthetic
if [ ! -f "$OUT/burn_in/checkpoints/ckpt_$(printf %07d "$BURN").pt" ]; then
  if [ -d "$OUT/burn_in/checkpoints" ]; then
    $PLDC train --resume "$OUT/burn_in" --stop-at "$BURN"
  else
    $PLDC train --config $CFG --run-dir "$OUT/burn_in" --stop-at "$BURN" name=burn_in
  fi
fi
declare -A VARIANTS=(
  [supervised]="pldc.enabled=false"
  [coupled]="pldc.filter=coupled"
  [pldc]=""
  [pldc_no_pmua]="pldc.pmua=false"
)
pids=()
for name in "${!VARIANTS[@]}"; do
  if [ ! -f "$OUT/$name/final_eval.json" ]; then
    rm -rf "$OUT/$name"
    cp -r "$OUT/burn_in" "$OUT/$name"
    # one thread each: the variants run side by side on the machine's cores
    ( OMP_NUM_THREADS=1 $PLDC train --resume "$OUT/$name" --stop-at "$STOP" name="$name" ${VARIANTS[$name]} \
        && OMP_NUM_THREADS=1 $PLDC eval --checkpoint "$OUT/$name" --images "$EVAL_N" --out "$OUT/$name/final_eval.json"
    ) > "$OUT/$name.log" 2>&1 &
    pids+=($!)
  fi
done
for pid in "${pids[@]}"; do wait "$pid"; done
.venv/bin/python benchmarks/quality_table.py "$OUT"
