"""Benchmark of the workbench analyses on 1,000,000 query records.

Fabricates one checkpoint of 1M query rows (``pldc_core.records.fabricated_run.fabricate_query_table``),
writes it with the real record writer, then times:

- loading it with ``pldc_core.records.store.load_records`` (the analysis columns, as the report
  loads them; and every column), target < 3 s;
- confusion matrix + error breakdown + a 10 x 10 DDTF threshold grid, target < 5 s in total;
- for reference: the whole threshold study (both grids and the run's points), a single
  what-if point (one slider move), quality correlations, the DICC report, uncertainty regions.

Each step runs ``--repeats`` times; the table gives the best and the median wall time, and the
peak memory the step allocated through Python/numpy (tracemalloc, measured in a separate run
of the step, so tracing does not slow the timed runs). The process's peak RSS is printed last.

    .venv/bin/python benchmarks/bench_analysis.py [--rows 1000000] [--repeats 3] [--out FILE]
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for the project's packages when run as a script

from pldc_core.records.fabricated_run import fabricate_large_checkpoint  # noqa: E402
from pldc_core.records.store import load_records  # noqa: E402
from workbench.confusion import confusion_matrix  # noqa: E402
from workbench.dicc_report import dicc_report  # noqa: E402
from workbench.error_breakdown import error_breakdown  # noqa: E402
from workbench.quality import correlations  # noqa: E402
from workbench.thresholds import sweep_ddtf, threshold_study, what_if  # noqa: E402
from workbench.trends import ANALYSIS_COLUMNS  # noqa: E402
from workbench.uncertainty import region_means  # noqa: E402

NUM_CLASSES = 80
ITERATION = 1000


def measure(fn, repeats: int) -> dict:
    """Best and median seconds over ``repeats`` runs, then the traced peak of one more run."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"best_s": min(times), "median_s": statistics.median(times), "peak_mib": peak / 2 ** 20}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "analysis.txt"))
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        start = time.perf_counter()
        fabricate_large_checkpoint(run_dir, ITERATION, args.rows, num_classes=NUM_CLASSES)
        setup_s = time.perf_counter() - start
        size_mib = sum(f.stat().st_size for f in run_dir.rglob("*.parquet")) / 2 ** 20

        rows = {}
        rows["load: analysis columns"] = measure(
            lambda: load_records(run_dir, ITERATION, columns=ANALYSIS_COLUMNS), args.repeats)
        rows["load: all columns"] = measure(lambda: load_records(run_dir, ITERATION), args.repeats)
        rec = load_records(run_dir, ITERATION, columns=ANALYSIS_COLUMNS)
        q, gt = rec.queries, rec.gt
        rows["confusion (teacher + after DICC)"] = measure(
            lambda: (confusion_matrix(q, gt, NUM_CLASSES), confusion_matrix(q, gt, NUM_CLASSES, use_dicc=True)),
            args.repeats)
        rows["error breakdown (all + kept)"] = measure(
            lambda: (error_breakdown(q), error_breakdown(q, kept_by="ddtf")), args.repeats)
        rows["threshold grid 10 x 10 (DDTF)"] = measure(lambda: sweep_ddtf(q, gt), args.repeats)
        target = ["confusion (teacher + after DICC)", "error breakdown (all + kept)", "threshold grid 10 x 10 (DDTF)"]
        rows["threshold study (both grids + run)"] = measure(
            lambda: threshold_study(q, gt, rec.manifest["thresholds"]), args.repeats)
        rows["what-if, one point (slider)"] = measure(lambda: what_if(q, gt, 0.85, 0.9), args.repeats)
        rows["quality correlations"] = measure(lambda: correlations(q), args.repeats)
        rows["DICC report"] = measure(lambda: dicc_report(q), args.repeats)
        rows["uncertainty regions"] = measure(lambda: region_means(q, kept_by="ddtf"), args.repeats)

    total = sum(rows[k]["median_s"] for k in target)
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    lines = [
        f"# bench_analysis.py  {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
        f"# {args.rows:,} query rows ({len(gt):,} GT), {NUM_CLASSES} classes; parquet {size_mib:.0f} MiB; "
        f"fabricate + write {setup_s:.1f} s",
        f"# {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"numpy {np.__version__}, pandas {pd.__version__}, pyarrow {pa.__version__}",
        "# The machine is shared with other engineers' jobs: times are wall clock, best and median of "
        f"{args.repeats}. peak = tracemalloc peak of one run of the step (Python + numpy allocations; "
        "arrow's own pool is not traced).",
        "",
        f"{'step':<40}{'best s':>9}{'median s':>10}{'peak MiB':>10}",
    ]
    for name, r in rows.items():
        lines.append(f"{name:<40}{r['best_s']:>9.3f}{r['median_s']:>10.3f}{r['peak_mib']:>10.0f}")
    lines += ["",
              f"load (analysis columns), median: {rows['load: analysis columns']['median_s']:.2f} s   (target < 3 s)",
              f"confusion + error breakdown + 10x10 grid, medians summed: {total:.2f} s   (target < 5 s)",
              f"process peak RSS: {rss_mib:,.0f} MiB"]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
