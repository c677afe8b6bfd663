"""bfloat16 autocast on the CPU (`train.amp_cpu`) against float32, side by side in one run.

    .venv/bin/python benchmarks/bench_cpu_amp.py [--config benchmarks/quality.yaml] [--steps 20] [--warmup 3]
        [--out benchmarks/results/cpu_amp.txt]

Needs the embedded dataset (`pldc data make-synthetic`). Four trainers on the same data: a
supervised step and a PL-DC step of the config's recipe (4 labeled, 4 + 4, DICC as configured),
each in float32 and in bfloat16 autocast. Steps are interleaved round-robin so that machine load
hits all alike; the table gives the median seconds per step and bfloat16's speed-up. Whether the
speed-up costs accuracy is a training question: benchmarks/results/quality.md ("Probes of
2026-12-02") and the note in benchmarks/results/cpu_amp.txt.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_step import machine_line, make_trainer, save_report, step_bench_args, time_steps  # noqa: E402
from pldc_core.config import load_config  # noqa: E402
from pldc_core.training.data import build_data  # noqa: E402
from pldc_core.training.trainer import cpu_has_native_bf16  # noqa: E402


def main() -> None:
    load_start = os.getloadavg()[0]
    args = step_bench_args("cpu_amp.txt")
    os.environ["PLDC_NO_PROGRESS"] = "1"
    base = ["records.enabled=false", "train.max_iters=100000", "train.device=cpu"]
    recipes = {"supervised": ["pldc.enabled=false"], "PL-DC": ["train.burn_in_iters=0"]}
    configs = {f"{recipe}, {precision}": load_config(args.config, base + extra + [f"train.amp_cpu={precision == 'bfloat16'}"])
               for recipe, extra in recipes.items() for precision in ("float32", "bfloat16")}
    first = next(iter(configs.values()))
    data = build_data(first)
    tmp = Path(tempfile.mkdtemp())
    trainers = {name: make_trainer(cfg, data, tmp / str(i)) for i, (name, cfg) in enumerate(configs.items())}
    times, _ = time_steps(trainers, args.warmup, args.steps)
    median = {name: statistics.median(t) for name, t in times.items()}
    lines = [f"bench_cpu_amp: {Path(args.config).name} ({first.model.backbone} backbone, {first.model.num_queries} "
             f"queries, {first.data.image_size} px), {args.steps} timed steps after {args.warmup} warm-up, "
             "median seconds per step",
             machine_line(load_start, f", native bfloat16: {'yes' if cpu_has_native_bf16() else 'no'}"), "",
             f"{'step':12s} {'float32 s':>10s} {'bfloat16 s':>11s} {'speed-up':>9s}"]
    for recipe in recipes:
        fp32, bf16 = median[f"{recipe}, float32"], median[f"{recipe}, bfloat16"]
        lines.append(f"{recipe:12s} {fp32:10.3f} {bf16:11.3f} {fp32 / bf16:8.2f}x")
    save_report(lines, args.out)


if __name__ == "__main__":
    main()
