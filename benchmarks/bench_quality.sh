#!/usr/bin/env bash
# Quality on the embedded benchmark at 5% labels: one shared burn-in, then each variant continues
# from the same burned-in checkpoint with the same seed and iteration budget.
#   bash benchmarks/bench_quality.sh [OUT_DIR]      (default runs/quality)
# Variants (DICC needs CLIP weights, which this machine cannot download, so every PL-DC row is
# without DICC): supervised only; PL-DC with the coupled threshold (= without DDTF); PL-DC
# (DDTF + PMUA); PL-DC without PMUA. Then benchmarks/quality_table.py writes the table.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/quality}
PLDC=".venv/bin/pldc"
export PLDC_NO_PROGRESS=1
CFG=configs/cpu-quick.yaml
BURN=$(.venv/bin/python -c "from pldc_core.config import load_config; print(load_config('$CFG').train.burn_in_iters)")
[ -f data/splits/synthetic.json ] || $PLDC data make-synthetic
if [ ! -f "$OUT/burn_in/checkpoints/ckpt_$(printf %07d "$BURN").pt" ]; then
  rm -rf "$OUT/burn_in"
  $PLDC train --config $CFG --run-dir "$OUT/burn_in" --stop-at "$BURN" name=burn_in
fi
declare -A VARIANTS=(
  [supervised]="pldc.enabled=false"
  [coupled]="pldc.filter=coupled"
  [pldc]=""
  [pldc_no_pmua]="pldc.pmua=false"
)
pids=()
for name in "${!VARIANTS[@]}"; do
  if [ ! -f "$OUT/$name/status.json" ] || ! grep -q '"finished"' "$OUT/$name/status.json"; then
    rm -rf "$OUT/$name"
    cp -r "$OUT/burn_in" "$OUT/$name"
    # one thread each: the variants run side by side on the machine's cores
    OMP_NUM_THREADS=1 $PLDC train --resume "$OUT/$name" name="$name" ${VARIANTS[$name]} > "$OUT/$name.log" 2>&1 &
    pids+=($!)
  fi
done
for pid in "${pids[@]}"; do wait "$pid"; done
.venv/bin/python benchmarks/quality_table.py "$OUT"
