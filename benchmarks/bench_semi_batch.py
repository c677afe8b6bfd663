"""How long a PL-DC step takes with fewer labeled images in it, side by side in one run.

    .venv/bin/python benchmarks/bench_semi_batch.py [--config benchmarks/quality-step.yaml] [--steps 20]
        [--warmup 3] [--out benchmarks/results/semi_batch.txt]

Needs the embedded dataset (`pldc data make-synthetic`). One trainer per composition of a PL-DC
step (labeled + unlabeled images: `train.semi_batch_labeled`, `train.batch_unlabeled`) and one
supervised step of 4 labeled images, in the config's precision; steps are interleaved round-robin
so that machine load hits all alike. The table gives the median seconds per step and each
composition's time relative to 4 + 4, which sets how many semi-supervised steps fit a time budget
(benchmarks/quality-30min.yaml).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_step import machine_line, median_step_seconds, save_report, step_bench_args  # noqa: E402
from pldc_core.config import load_config  # noqa: E402

COMPOSITIONS = {"4 + 4": (4, 4), "2 + 4": (2, 4), "3 + 3": (3, 3), "2 + 6": (2, 6)}


def main() -> None:
    load_start = os.getloadavg()[0]
    args = step_bench_args("semi_batch.txt", config="quality-step.yaml")
    os.environ["PLDC_NO_PROGRESS"] = "1"
    base = ["records.enabled=false", "train.max_iters=100000", "train.device=cpu", "train.batch_labeled=4"]
    configs = {name: load_config(args.config, base + ["train.burn_in_iters=0", f"train.semi_batch_labeled={lab}",
                                                      f"train.batch_unlabeled={unl}"])
               for name, (lab, unl) in COMPOSITIONS.items()}
    configs["supervised, 4"] = load_config(args.config, base + ["pldc.enabled=false"])
    first = configs["4 + 4"]
    median, precision = median_step_seconds(configs, args.warmup, args.steps)
    lines = [f"bench_semi_batch: {Path(args.config).name} ({first.model.backbone} backbone, {first.model.num_queries} "
             f"queries, {first.data.image_size} px, {precision}), {args.steps} timed steps after {args.warmup} "
             "warm-up, median seconds per step",
             machine_line(load_start), "",
             f"{'step (labeled + unlabeled)':28s} {'s / step':>9s} {'vs 4 + 4':>9s}"]
    for name, seconds in median.items():
        lines.append(f"{name:28s} {seconds:9.3f} {seconds / median['4 + 4']:8.2f}x")
    save_report(lines, args.out)


if __name__ == "__main__":
    main()
