"""The pixel decoder's deformable attention, dense (pldc_core.model.deformable_attention) against
transformers' grid_sample computation, side by side in one run.

    .venv/bin/python benchmarks/bench_deformable_attention.py [--config benchmarks/quality.yaml]
        [--steps 20] [--warmup 3] [--out benchmarks/results/deformable_attention.txt]

Needs the embedded dataset (`pldc data make-synthetic`). Two measurements, each interleaved
round-robin so that machine load hits both alike, medians reported:
  1. the attention alone, forward + backward, at the shapes of the config's student batch;
  2. whole training steps (supervised, and PL-DC from the shipped 5% detector so that the teacher
     keeps realistic pseudo-labels), one trainer per computation, switching the computation before
     each step.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_step import machine_line, make_trainer, save_report, step_bench_args  # noqa: E402
from pldc_core.config import load_config  # noqa: E402
from pldc_core.model import deformable_attention  # noqa: E402
from pldc_core.training.data import build_data  # noqa: E402

COMPUTATIONS = ("grid_sample", "dense")


def use(computation: str) -> None:
    """Route the pixel decoder through ``computation``."""
    (deformable_attention.install if computation == "dense" else deformable_attention.uninstall)()


def attention_inputs(cfg, batch: int):
    """Random inputs at the shapes the config's pixel decoder gives its attention (points and levels
    as transformers' defaults: 4 points on the 3 coarsest levels, strides 32/16/8)."""
    size, heads, dim = cfg.data.image_size, cfg.model.num_heads, cfg.model.hidden_dim
    shapes = [(size // s, size // s) for s in (32, 16, 8)]
    tokens = sum(h * w for h, w in shapes)
    value = torch.randn(batch, tokens, heads, dim // heads, requires_grad=True)
    loc = (torch.rand(batch, tokens, heads, len(shapes), 4, 2) * 1.2 - 0.1).requires_grad_()
    weights = torch.softmax(torch.randn(batch, tokens, heads, len(shapes) * 4), -1)
    weights = weights.view(batch, tokens, heads, len(shapes), 4).detach().requires_grad_()
    return value, shapes, loc, weights


def time_attention(cfg, warmup: int, steps: int) -> dict[str, list[float]]:
    from transformers.models.mask2former import modeling_mask2former as m2f

    value, shapes, loc, weights = attention_inputs(cfg, cfg.train.batch_labeled + cfg.train.batch_unlabeled)
    grad = torch.randn(value.shape[0], value.shape[1], cfg.model.hidden_dim)
    times = {c: [] for c in COMPUTATIONS}
    for step in range(warmup + steps):
        for computation in COMPUTATIONS:
            use(computation)
            start = time.perf_counter()
            m2f.multi_scale_deformable_attention(value, shapes, loc, weights).backward(grad)
            if step >= warmup:
                times[computation].append(time.perf_counter() - start)
    return times


def time_training(trainers: dict, warmup: int, steps: int) -> dict[str, list[float]]:
    times = {name: [] for name in trainers}
    for step in range(warmup + steps):
        for (recipe, computation), trainer in trainers.items():
            use(computation)
            start = time.perf_counter()
            trainer.run_step()
            trainer.iter += 1
            if step >= warmup:
                times[(recipe, computation)].append(time.perf_counter() - start)
    return times


def main() -> None:
    load_start = os.getloadavg()[0]
    args = step_bench_args("deformable_attention.txt")
    os.environ["PLDC_NO_PROGRESS"] = "1"
    base = ["records.enabled=false", "train.max_iters=100000", "train.device=cpu", "train.burn_in_iters=0",
            f"model.init_weights={ROOT / 'weights' / 'synthetic-5pct-detector.pt'}"]
    recipes = {"supervised": ["pldc.enabled=false"], "PL-DC": []}
    configs = {(recipe, c): load_config(args.config, base + extra) for recipe, extra in recipes.items()
               for c in COMPUTATIONS}
    first = next(iter(configs.values()))
    attention = time_attention(first, args.warmup, args.steps)
    data = build_data(first)
    tmp = Path(tempfile.mkdtemp())
    trainers = {key: make_trainer(cfg, data, tmp / str(i)) for i, (key, cfg) in enumerate(configs.items())}
    steps = time_training(trainers, args.warmup, args.steps)
    deformable_attention.install()

    def row(label: str, slow: list[float], fast: list[float]) -> str:
        s, f = statistics.median(slow), statistics.median(fast)
        return f"{label:34s} {s:12.4f} {f:8.4f} {s / f:8.2f}x"

    lines = [f"bench_deformable_attention: {Path(args.config).name} ({first.model.num_heads} heads, "
             f"{first.model.hidden_dim}-dim, {first.data.image_size} px), {args.steps} timed repetitions after "
             f"{args.warmup} warm-up, median seconds",
             machine_line(load_start), "",
             f"{'':34s} {'grid_sample s':>12s} {'dense s':>8s} {'speed-up':>9s}",
             row(f"attention alone, forward+backward, batch {first.train.batch_labeled + first.train.batch_unlabeled}",
                 attention["grid_sample"], attention["dense"])]
    for recipe in recipes:
        lines.append(row(f"{recipe} training step", steps[(recipe, "grid_sample")], steps[(recipe, "dense")]))
    save_report(lines, args.out)


if __name__ == "__main__":
    main()
