#!/usr/bin/env bash
# The README's main command: set everything up, make the embedded dataset, train a short PL-DC run
# on it (cpu-quick's semi-supervised phase, from the shipped 5%-burned-in detector), write its
# report, and open the workbench app on it.
#   bash scripts/demo.sh              (PLDC_DEMO_NO_APP=1 skips the app at the end)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
export FIFTYONE_DO_NOT_TRACK=true HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
PLDC=.venv/bin/pldc
RUN=runs/demo
say() { echo "[demo] $*"; }

say "what this does: make the embedded benchmark (data/synthetic), train a short PL-DC run on it into"
say "$RUN (from the shipped detector burned in on 5% of its labels), write its HTML report, then open"
say "the workbench app on it"
if [[ ! -f data/splits/synthetic.json ]]; then
    say "making the embedded benchmark: 2,000 train + 500 val images of 10 shape classes, in data/synthetic"
    $PLDC data make-synthetic
fi
$PLDC data summary

if [[ -f $RUN/status.json ]] && grep -q '"finished"' $RUN/status.json; then
    best=$(.venv/bin/python -c 'import json, sys
from pldc_core.units import format_ap
b = json.load(open(sys.argv[1])).get("best") or {}
print("best mask AP %s at iteration %s" % (format_ap(b["AP"]), b.get("iter")) if "AP" in b else "not evaluated")' \
        $RUN/status.json)
    say "$RUN is already trained ($best; remove the folder to train again)"
elif [[ -d $RUN/checkpoints ]] && [[ -n "$(ls -A $RUN/checkpoints)" ]]; then
    say "resuming $RUN from its last checkpoint"
    $PLDC train --resume $RUN
else
    say "training: the semi-supervised phase of configs/cpu-quick.yaml, 300 PL-DC steps. It starts from the"
    say "shipped detector already burned in on the 5% labeled images (weights/synthetic-5pct-detector.pt), so"
    say "from the first step the teacher labels the other 95% and the pseudo-labels above the paper's"
    say "thresholds (about 2 per image, about half of them right) are learned from, with the embedded CLIP"
    say "in weights/ checking their classes (DICC). The run goes to $RUN. It takes about 3 min on 2 idle"
    say "cores (longer on a busy machine); the progress bar shows an ETA."
    # The semi-supervised phase of cpu-quick, starting from the shipped detector already trained on
    # the 5% labels (weights/synthetic-5pct-detector.pt, the quality benchmark's seed-0 burn-in), so
    # the teacher is mostly right from the first step: checkpoints, evaluations and records included.
    $PLDC train --config configs/cpu-quick.yaml --run-dir $RUN name=demo \
        model.init_weights=weights/synthetic-5pct-detector.pt train.burn_in_iters=0 train.warmup_iters=0 \
        train.max_iters=300 train.checkpoint_every=50 train.eval_every=150
fi
if [[ ! -f $RUN/clip_gt_crops.parquet ]]; then
    say "measuring the embedded CLIP alone on the run's ground-truth crops (pldc clip-crops; ~15 s)"
    PLDC_NO_PROGRESS=1 $PLDC clip-crops $RUN | grep -v "^per class"
fi
$PLDC report $RUN >/dev/null
REPORT=$RUN/report/report.html

say "made: $RUN (config.yaml, checkpoints/, metrics.jsonl, eval.jsonl: mask AP in percent, records/ of"
say "      the teacher's pseudo-labels at iteration 0, where DICC acts most, and at each checkpoint;"
say "      clip_gt_crops.parquet: the CLIP alone on its ground-truth crops) and its report $REPORT"
say "open next:"
say "  the report:    $REPORT  (one self-contained HTML file, open it in a browser)"
say "  the workbench: $PLDC app --runs-dir runs --run demo   (http://127.0.0.1:7860)"
say "  its mask AP:   $PLDC eval --checkpoint $RUN"
if [[ "${PLDC_DEMO_NO_APP:-0}" != "1" ]]; then
    say "opening the workbench on $RUN: http://127.0.0.1:7860 (Ctrl-C to stop)"
    $PLDC app --runs-dir runs --run demo
fi
