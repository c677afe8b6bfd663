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
say() { echo "[demo] $*"; }

say "what this does: make the embedded benchmark (data/synthetic), train a short PL-DC run on 5% of its"
say "labels into $RUN, write its HTML report, then open the workbench app on it"
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
    say "training: configs/cpu-quick.yaml with a third of its budget, 350 steps: 200 supervised steps on"
    say "the 5% labeled images, then 150 PL-DC steps in which the teacher labels the other 95% and only"
    say "pseudo-labels above the thresholds are learned from (this short a run keeps few or none: the"
    say "report shows why). It starts from the embedded upstream backbone and CLIP in weights/; the run"
    say "goes to $RUN. Minutes on 2 CPU cores; the progress bar shows an ETA."
    # cpu-quick with a third of its budget: both phases, checkpoints, evaluations and records
    $PLDC train --config configs/cpu-quick.yaml --run-dir $RUN name=demo \
        train.burn_in_iters=200 train.max_iters=350 train.checkpoint_every=50 train.eval_every=175
fi
REPORT=$($PLDC report $RUN)

say "made: $RUN (config.yaml, checkpoints/, metrics.jsonl, eval.jsonl: mask AP in percent, records/ of"
say "      the teacher's pseudo-labels at each checkpoint) and its report $REPORT"
say "open next:"
say "  the report:    $REPORT  (one self-contained HTML file, open it in a browser)"
say "  the workbench: $PLDC app --runs-dir runs --run demo   (http://127.0.0.1:7860)"
say "  its mask AP:   $PLDC eval --checkpoint $RUN"
if [[ "${PLDC_DEMO_NO_APP:-0}" != "1" ]]; then
    say "opening the workbench on $RUN: http://127.0.0.1:7860 (Ctrl-C to stop)"
    $PLDC app --runs-dir runs --run demo
fi
