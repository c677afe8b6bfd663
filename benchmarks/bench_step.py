"""Step cost on cpu-quick, side by side in one run: a supervised step vs a PL-DC step of the same total batch.

    .venv/bin/python benchmarks/bench_step.py [--steps 12] [--warmup 3] [--out benchmarks/results/step.txt]

Needs the embedded dataset (`pldc data make-synthetic`). Each configuration runs ``warmup``
untimed steps then ``steps`` timed ones, interleaved round-robin so that machine load hits all
alike. The PL-DC step's parts come from the trainer's own timers (teacher forward, DDTF filter with
the PMUA uncertainty maps, DICC, unsupervised loss, EMA); "student" is the student's forward,
supervised loss and backward+optimizer step; "unsup_loss" is the criterion on the student's
unlabeled outputs (part of the student's forward/backward, reported apart). PMUA's own cost is the difference of the unsupervised
loss with and without pixel weights.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pldc_core.config import load_config  # noqa: E402
from pldc_core.training.data import build_data  # noqa: E402
from pldc_core.training.trainer import Trainer  # noqa: E402


# The trainer's timers that are pseudo-labelling rather than the student's forward/backward
# (the unsupervised loss is computed on the student's outputs, so it counts as the student's).
PSEUDO_LABELLING = ("teacher", "filter", "dicc", "ema")


def make_trainer(cfg, data, run_dir):
    trainer = Trainer(cfg, run_dir, hooks=[], data=data)
    trainer.start_data_streams()
    return trainer


def time_steps(trainers: dict, warmup: int, steps: int) -> tuple[dict, dict]:
    """Run the trainers' steps round-robin (so machine load hits all alike); per trainer, the
    seconds of each timed step and the step's own timers."""
    times = {name: [] for name in trainers}
    parts = {name: [] for name in trainers}
    for step in range(warmup + steps):
        for name, trainer in trainers.items():
            start = time.perf_counter()
            metrics = trainer.run_step()
            elapsed = time.perf_counter() - start
            trainer.iter += 1
            if step >= warmup:
                times[name].append(elapsed)
                parts[name].append(metrics["timings"])
    return times, parts


def median_step_seconds(configs: dict, warmup: int, steps: int) -> tuple[dict, str]:
    """One trainer per config on the first config's data, timed side by side (``time_steps``):
    each config's median seconds per step, and the first config's precision in words."""
    from pldc_core.training.trainer import cpu_amp_dtype

    first = next(iter(configs.values()))
    data = build_data(first)
    tmp = Path(tempfile.mkdtemp())
    trainers = {key: make_trainer(cfg, data, tmp / str(i)) for i, (key, cfg) in enumerate(configs.items())}
    times, _ = time_steps(trainers, warmup, steps)
    precision = "bfloat16 autocast" if cpu_amp_dtype(first.train.amp_cpu) is not None else "float32"
    return {key: statistics.median(t) for key, t in times.items()}, precision


def step_bench_args(result_name: str, config: str = "quality.yaml") -> argparse.Namespace:
    """The options of the benchmarks that time training steps of a config side by side:
    --config (default benchmarks/``config``), --steps, --warmup, --out (default
    benchmarks/results/``result_name``)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=str(ROOT / "benchmarks" / config))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / result_name))
    return parser.parse_args()


def machine_line(load_start: float, detail: str = "") -> str:
    """The report line that says where the timings come from: CPU, torch, threads, CPUs (then
    ``detail``), and the one-minute load average at the start (``load_start``) and now."""
    return (f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs{detail}; load average at the start "
            f"{load_start:.2f}, at the end {os.getloadavg()[0]:.2f}")


def save_report(lines: list[str], out: str | Path) -> None:
    """Print the report and write it to ``out``."""
    text = "\n".join(lines) + "\n"
    print(text)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text)


def main() -> None:
    load_start = os.getloadavg()[0]
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "step.txt"))
    args = parser.parse_args()
    os.environ["PLDC_NO_PROGRESS"] = "1"
    base = ["records.enabled=false", "train.burn_in_iters=0", "train.max_iters=100000", "pldc.dicc=false"]
    cfg_file = ROOT / "configs" / "cpu-quick.yaml"
    configs = {
        "supervised, 8 labeled": load_config(cfg_file, base + ["pldc.enabled=false", "train.batch_labeled=8"]),
        # thresholds 0: every teacher query becomes a pseudo-label (the most expensive case)
        "PL-DC 4+4, all queries kept": load_config(cfg_file, base + ["pldc.c_t=0", "pldc.m_t=0"]),
        "PL-DC 4+4, all kept, no PMUA": load_config(cfg_file, base + ["pldc.c_t=0", "pldc.m_t=0", "pldc.pmua=false"]),
        "PL-DC 4+4, paper thresholds": load_config(cfg_file, base),
    }
    data = build_data(configs["supervised, 8 labeled"])
    tmp = Path(tempfile.mkdtemp())
    trainers = {name: make_trainer(cfg, data, tmp / str(i)) for i, (name, cfg) in enumerate(configs.items())}
    times, parts = time_steps(trainers, args.warmup, args.steps)
    sup = statistics.median(times["supervised, 8 labeled"])
    lines = [f"bench_step: cpu-quick ({configs['supervised, 8 labeled'].model.backbone}, "
             f"{configs['supervised, 8 labeled'].model.num_queries} queries, 128 px), {args.steps} timed steps "
             f"after {args.warmup} warm-up, median seconds per step",
             machine_line(load_start), ""]
    lines.append(f"{'configuration':34s} {'s/step':>7s} {'x sup':>6s}  parts (share of the step)")
    for name in trainers:
        med = statistics.median(times[name])
        keys = sorted({k for p in parts[name] for k in p})
        share = {k: statistics.median([p.get(k, 0.0) for p in parts[name]]) / med for k in keys}
        overhead = sum(v for k, v in share.items() if k in PSEUDO_LABELLING)
        desc = ", ".join(f"{k} {v:.0%}" for k, v in share.items())
        if name != "supervised, 8 labeled":
            desc += f"; pseudo-labelling overhead (teacher+filter+dicc+ema) {overhead:.0%}"
        lines.append(f"{name:34s} {med:7.3f} {med / sup:6.2f}  {desc}")
    with_pmua = statistics.median([p.get("unsup_loss", 0) for p in parts["PL-DC 4+4, all queries kept"]])
    without = statistics.median([p.get("unsup_loss", 0) for p in parts["PL-DC 4+4, all kept, no PMUA"]])
    lines += ["", f"PMUA cost: unsupervised loss {with_pmua:.3f} s with pixel weights vs {without:.3f} s without "
              f"({with_pmua - without:+.3f} s per step); the uncertainty maps are computed inside 'filter'",
              "targets: PL-DC step <= 1.6x supervised (DICC off); pseudo-labelling overhead < 25% of the step"]
    save_report(lines, args.out)


if __name__ == "__main__":
    main()
