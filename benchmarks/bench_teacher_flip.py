"""What a teacher that also labels the mirrored images (``pldc.teacher_flip``) costs per PL-DC step,
side by side in one run.

    .venv/bin/python benchmarks/bench_teacher_flip.py [--config benchmarks/quality-30min-b3000.yaml]
        [--steps 20] [--warmup 3] [--out benchmarks/results/teacher_flip.txt]

Needs the embedded dataset (`pldc data make-synthetic`). Two trainers of the config's PL-DC step,
the teacher labelling each unlabeled image once (the paper) and each image and its mirror
(docs/METHOD.md, "A teacher that looks twice"), in the config's precision; steps are interleaved
round-robin so that machine load hits both alike. The ratio says how many fewer PL-DC steps fit
in the same time budget.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_step import machine_line, median_step_seconds, save_report, step_bench_args  # noqa: E402
from pldc_core.config import load_config  # noqa: E402

TEACHERS = {"one view": "false", "image + mirror": "true"}


def main() -> None:
    load_start = os.getloadavg()[0]
    args = step_bench_args("teacher_flip.txt", config="quality-30min-b3000.yaml")
    os.environ["PLDC_NO_PROGRESS"] = "1"
    base = ["records.enabled=false", "train.max_iters=100000", "train.device=cpu", "train.burn_in_iters=0"]
    configs = {name: load_config(args.config, base + [f"pldc.teacher_flip={flag}"]) for name, flag in TEACHERS.items()}
    first = configs["one view"]
    median, precision = median_step_seconds(configs, args.warmup, args.steps)
    plain = median["one view"]
    lines = [f"bench_teacher_flip: {Path(args.config).name} ({first.model.backbone} backbone, "
             f"{first.model.num_queries} queries, {first.data.image_size} px, {precision}), PL-DC steps of "
             f"{first.train.semi_batch_labeled or first.train.batch_labeled} labeled + {first.train.batch_unlabeled} "
             f"unlabeled images, {args.steps} timed steps after {args.warmup} warm-up, median seconds per step",
             machine_line(load_start), "",
             f"{'teacher':16s} {'step (s)':>9s} {'vs one view':>12s}"]
    for name in TEACHERS:
        lines.append(f"{name:16s} {median[name]:9.3f} {median[name] / plain:11.2f}x")
    save_report(lines, args.out)


if __name__ == "__main__":
    main()
