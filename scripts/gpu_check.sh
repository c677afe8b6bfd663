#!/usr/bin/env bash
# GPU checks in one go, one line per check, meant to finish in under 8 minutes on a CUDA machine:
#   1. the smoke config trained on the GPU with mixed precision (train.amp=true);
#   2. a 2-process NCCL run of the smoke config under torchrun, when two GPUs are present;
#   3. the step-cost benchmark (benchmarks/bench_step.py, a few steps);
#   4. the records-cost benchmark's paper-scale line (rows of 100 queries on a 640 x 480 image).
# NOT RUN YET: it was written on a machine without a GPU, so no output of it exists in this
# repository; run it where CUDA is available and keep its output with the results it checks.
#
#   scripts/gpu_check.sh [PYTHON]        (default: .venv/bin/python; needs `pldc data make-synthetic`)
set -u
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
OUT=$(mktemp -d)
export PLDC_NO_PROGRESS=1
status=0

check() {  # check NAME COMMAND... : prints "ok|FAIL NAME (seconds) last line of output"
    local name=$1; shift
    local start=$SECONDS
    if timeout 150 "$@" >"$OUT/$name.log" 2>&1; then
        echo "ok    $name ($((SECONDS - start)) s) $(tail -n 1 "$OUT/$name.log")"
    else
        echo "FAIL  $name ($((SECONDS - start)) s) see $OUT/$name.log: $(tail -n 1 "$OUT/$name.log")"
        status=1
    fi
}

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "FAIL  no CUDA device visible to $PY"; exit 1
fi
GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")

check amp-smoke "$PY" -m pldc_core.cli train --config configs/smoke.yaml --run-dir "$OUT/amp" \
    train.amp=true train.device=cuda
if [ "$GPUS" -ge 2 ]; then
    check nccl-2gpu "$PY" -m torch.distributed.run --nproc_per_node 2 -m pldc_core.cli train \
        --config configs/smoke.yaml --run-dir "$OUT/ddp" train.amp=true train.batch_scope=global
else
    echo "skip  nccl-2gpu (only $GPUS GPU)"
fi
check bench-step "$PY" benchmarks/bench_step.py --steps 6 --warmup 2 --out "$OUT/step.txt"
check records-paper-scale "$PY" -c "import sys; sys.path.insert(0, 'benchmarks'); \
import bench_records as b; print(f'rows at paper scale: {b.paper_scale_rows_ms():.0f} ms per image')"
exit $status
