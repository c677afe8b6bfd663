"""Benchmark of the workbench's interactive callbacks on checkpoints of 100,000 pseudo-label records.

Fabricates a run with two checkpoints of ``--rows`` query records each
(``pldc_core.records.fabricated_run.fabricate_query_table``: the real schema, written with the real record
writer; masks and uncertainty PNGs are left empty, the callbacks timed here never read them),
then times the callbacks of the tabs of ``apps.gradio_app.demo.App`` as the app calls them, including the
JSON serialisation of the figures and the table that Gradio then sends:

- checkpoint switch, cold: the Pseudo-labels tab for a checkpoint not yet loaded (reads the
  records, computes the threshold grids, draws the scatter and the what-if, lists the table);
- checkpoint switch, warm: back to a checkpoint still in the cache;
- slider move: ``PseudoLabelsTab.move``, what a threshold step sends (the what-if and the scatter's
  marks; the whole scatter for the coupled filter), on the 0.01 grid as the sliders step, and off the
  grid (typed into the number box: computed exactly);
- for reference: the other tabs' refresh on the current checkpoint.

Target: a slider move and a checkpoint switch under 0.5 s.

    .venv/bin/python benchmarks/bench_app.py [--rows 100000] [--repeats 5] [--out benchmarks/results/app.txt]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for the project's packages when run as a script

from apps.gradio_app import browse  # noqa: E402
from apps.gradio_app.context import AppSettings  # noqa: E402
from apps.gradio_app.demo import App  # noqa: E402
from pldc_core.records.fabricated_run import THRESHOLDS, fabricate_large_checkpoint  # noqa: E402

NUM_CLASSES = 80
ITERATIONS = (5000, 10000)
TARGET_S = 0.5


def serialise(outputs) -> None:
    """What Gradio does with the outputs before sending them: figures and tables to JSON."""
    for out in outputs:
        if hasattr(out, "to_json"):
            out.to_json()


def timed(fn) -> float:
    start = time.perf_counter()
    serialise(fn())
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "app.txt"))
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        runs_root = Path(tmp) / "runs"
        run = runs_root / "bench"
        t0 = time.perf_counter()
        for k, iteration in enumerate(ITERATIONS):
            fabricate_large_checkpoint(run, iteration, args.rows, num_classes=NUM_CLASSES, seed=k)
        fabricate_s = time.perf_counter() - t0
        wb = App(AppSettings(runs_root, Path(tmp) / "data"))
        t = THRESHOLDS
        tab = ("IoU", "any", "any", "all", "s", True)

        def pl(iteration, c_t=t["c_t"], m_t=t["m_t"]):
            return wb.pseudo_labels.show("bench", iteration, "ddtf", c_t, m_t, t["s_t"], *tab)

        def step(iteration, c_t=t["c_t"], m_t=t["m_t"], filter_name="ddtf", s_t=t["s_t"]):
            return wb.pseudo_labels.move("bench", iteration, filter_name, c_t, m_t, s_t, *tab)

        rows = []
        cold = []
        for _ in range(args.repeats):
            browse._cache.clear()
            pl(ITERATIONS[1])  # the checkpoint shown before the switch
            cold.append(timed(lambda: pl(ITERATIONS[0])))
        rows.append(("checkpoint switch, cold (load + grids + figures)", cold))
        rows.append(("checkpoint switch, warm (cached)",
                     [timed(lambda: pl(ITERATIONS[i % 2])) for i in range(args.repeats)]))
        grid_values = np.round(np.linspace(0.5, 0.95, args.repeats), 2)
        rows.append(("slider move (c_t on the 0.01 grid)", [timed(lambda v=v: step(ITERATIONS[0], c_t=v))
                                                             for v in grid_values]))
        rows.append(("slider move (m_t on the 0.01 grid)", [timed(lambda v=v: step(ITERATIONS[0], m_t=v))
                                                             for v in grid_values]))
        rows.append(("threshold off the grid (typed, exact what-if)",
                     [timed(lambda v=v: step(ITERATIONS[0], c_t=v + 0.005)) for v in grid_values]))
        coupled = [timed(lambda v=v: step(ITERATIONS[0], filter_name="coupled", s_t=v)) for v in grid_values]
        rows.append(("slider move (coupled s_t)", coupled))
        reference = [
            ("Confusion tab refresh", lambda: wb.confusion.show("bench", ITERATIONS[0], "row share", "after DICC",
                                                            "kept by the run")),
            ("Errors tab refresh (trend over both checkpoints)", lambda: wb.errors.show("bench", ITERATIONS[0],
                                                                                   "kept by the run")),
            ("DICC tab refresh", lambda: wb.dicc.show("bench", ITERATIONS[0])),
            ("table filter change (class + error type)", lambda: wb.pseudo_labels.browse(
                "bench", ITERATIONS[0], "ddtf", t["c_t"], t["m_t"], t["s_t"], 3, "Cor", "all", "iou", True)),
        ]
        first_errors = timed(reference[1][1])  # the trend reads every checkpoint once, then is cached
        for name, fn in reference:
            rows.append((name, [timed(fn) for _ in range(args.repeats)]))
        rows.append(("Errors tab, first open (reads every checkpoint)", [first_errors]))

    load = os.getloadavg()
    lines = [f"# bench_app: workbench callbacks on {args.rows:,} query records per checkpoint",
             f"# {datetime.now(timezone.utc).isoformat(timespec='seconds')}  {platform.platform()}  "
             f"python {platform.python_version()}  cpus {os.cpu_count()}  load avg {load[0]:.1f} {load[1]:.1f}",
             f"# fabricating and writing {len(ITERATIONS)} checkpoints took {fabricate_s:.1f} s (not timed below)",
             "# each time includes serialising the returned figures to JSON; target < "
             f"{TARGET_S} s for a slider move and a checkpoint switch",
             f"{'step':<55} {'best s':>8} {'median s':>9} {'max s':>8}  target"]
    for name, times in rows:
        targeted = name.startswith(("checkpoint switch", "slider move"))
        verdict = ("ok" if statistics.median(times) < TARGET_S else "SLOW") if targeted else "-"
        lines.append(f"{name:<55} {min(times):>8.3f} {statistics.median(times):>9.3f} {max(times):>8.3f}  {verdict}")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
