"""Import time of the reading side, in fresh interpreters: what a user waits for before `pldc report`.

    .venv/bin/python benchmarks/bench_imports.py [--rounds 5] [--out benchmarks/results/imports.txt]

Each module is imported in a new interpreter ``rounds`` times, alternating modules round by
round; the best and the median time are printed, and whether torch was loaded.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

from report_text import emit, machine_line

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("workbench.report", "workbench.thresholds", "apps.gradio_app.runs", "apps.gradio_app.app",
           "pldc_core.records.store")


def time_import(module: str) -> tuple[float, bool]:
    code = (f"import sys, time\nt = time.perf_counter()\nimport {module}\n"
            "print(time.perf_counter() - t, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    seconds, torch_loaded = out.stdout.split()
    return float(seconds), torch_loaded == "True"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    times: dict[str, list[float]] = {m: [] for m in MODULES}
    torch_loaded: dict[str, bool] = {}
    for _ in range(args.rounds):
        for module in MODULES:
            seconds, loaded = time_import(module)
            times[module].append(seconds)
            torch_loaded[module] = loaded
    lines = ["# Import time in a fresh interpreter",
             f"command: .venv/bin/python benchmarks/bench_imports.py --rounds {args.rounds}",
             machine_line(),
             "| module | best | median | loads torch |", "|---|---|---|---|"]
    for module in MODULES:
        lines.append(f"| `{module}` | {min(times[module]):.2f} s | {statistics.median(times[module]):.2f} s | "
                     f"{'yes' if torch_loaded[module] else 'no'} |")
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
