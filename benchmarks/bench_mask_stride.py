"""What the finer mask grid (``model.mask_stride: 2``) costs per training step, side by side in one run.

    .venv/bin/python benchmarks/bench_mask_stride.py [--config benchmarks/quality-30min-b3000.yaml]
        [--steps 20] [--warmup 3] [--out benchmarks/results/mask_stride.txt]

Needs the embedded dataset (`pldc data make-synthetic`). Four trainers: a supervised (burn-in)
step and a PL-DC step of the config, each with the final masks at stride 4 (Mask2Former) and at
stride 2 (docs/METHOD.md, "A finer mask grid"), in the config's precision; steps are interleaved
round-robin so that machine load hits all alike. The ratio says how many fewer steps a run can
take at stride 2 in the same time budget.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_step import machine_line, median_step_seconds, save_report, step_bench_args  # noqa: E402
from pldc_core.config import load_config  # noqa: E402

STEPS = {"supervised": ["pldc.enabled=false"], "PL-DC": ["train.burn_in_iters=0"]}


def main() -> None:
    load_start = os.getloadavg()[0]
    args = step_bench_args("mask_stride.txt", config="quality-30min-b3000.yaml")
    os.environ["PLDC_NO_PROGRESS"] = "1"
    base = ["records.enabled=false", "train.max_iters=100000", "train.device=cpu"]
    configs = {(step, stride): load_config(args.config, base + extra + [f"model.mask_stride={stride}"])
               for step, extra in STEPS.items() for stride in (4, 2)}
    first = configs["PL-DC", 4]
    median, precision = median_step_seconds(configs, args.warmup, args.steps)
    lines = [f"bench_mask_stride: {Path(args.config).name} ({first.model.backbone} backbone, "
             f"{first.model.num_queries} queries, {first.data.image_size} px, {precision}), {args.steps} timed steps "
             f"after {args.warmup} warm-up, median seconds per step",
             machine_line(load_start), "",
             f"{'step':12s} {'stride 4 (s)':>13s} {'stride 2 (s)':>13s} {'stride 2 / 4':>13s}"]
    for step in STEPS:
        coarse, fine = median[step, 4], median[step, 2]
        lines.append(f"{step:12s} {coarse:13.3f} {fine:13.3f} {fine / coarse:12.2f}x")
    save_report(lines, args.out)


if __name__ == "__main__":
    main()
