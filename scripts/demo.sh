#!/usr/bin/env bash
# The README's main command: set everything up, make the embedded dataset, train a short PL-DC run
# on it (cpu-quick with a smaller budget), write its report, and open the workbench app on it.
#   bash scripts/demo.sh              (PLDC_DEMO_NO_APP=1 skips the app at the end)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
export FIFTYONE_DO_NOT_TRACK=true HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
PLDC=.venv/bin/pldc
RUN=runs/demo

if [[ ! -f data/splits/synthetic.json ]]; then
    $PLDC data make-synthetic
fi
$PLDC data summary

if [[ -f $RUN/status.json ]] && grep -q '"finished"' $RUN/status.json; then
    echo "[demo] $RUN is already trained"
elif [[ -d $RUN/checkpoints ]] && [[ -n "$(ls -A $RUN/checkpoints)" ]]; then
    echo "[demo] resuming $RUN from its last checkpoint"
    $PLDC train --resume $RUN
else
    # The semi-supervised phase of cpu-quick, starting from the shipped detector already trained on
    # the 5% labels (weights/synthetic-5pct-detector.pt, the quality benchmark's seed-0 burn-in), so
    # the teacher is mostly right from the first step: checkpoints, evaluations and records included.
    $PLDC train --config configs/cpu-quick.yaml --run-dir $RUN name=demo \
        model.init_weights=weights/synthetic-5pct-detector.pt train.burn_in_iters=0 train.warmup_iters=0 \
        train.max_iters=300 train.checkpoint_every=50 train.eval_every=150
fi
$PLDC report $RUN

if [[ "${PLDC_DEMO_NO_APP:-0}" != "1" ]]; then
    echo "[demo] opening the workbench on $RUN: http://127.0.0.1:7860 (Ctrl-C to stop)"
    $PLDC app --runs-dir runs --run demo
fi
