"""A markdown table of mask AP (%) against iteration for several runs, from their eval.jsonl.

    .venv/bin/python benchmarks/learning_curves.py LABEL=RUN_DIR [LABEL=RUN_DIR ...]

Each run's evaluations during training (``eval.jsonl``: the student during burn-in or supervised
training, the teacher afterwards) become one row; columns are the iterations any run evaluated at.
The evaluation subset is the run's ``data.eval_images``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def curve(run_dir: Path) -> dict[int, float]:
    """Iteration -> mask AP (%) of ``run_dir``'s evaluations (the last one wins for an iteration)."""
    path = run_dir / "eval.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no evaluations in this run folder")
    points = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if "AP" in record:
            points[int(record["iter"])] = float(record["AP"])
    return points


def table(curves: dict[str, dict[int, float]]) -> str:
    iterations = sorted({i for c in curves.values() for i in c})
    head = "| run | " + " | ".join(str(i) for i in iterations) + " |"
    rule = "|---|" + "---|" * len(iterations)
    rows = ["| " + label + " | " + " | ".join(f"{c[i]:.1f}" if i in c else "-" for i in iterations) + " |"
            for label, c in curves.items()]
    return "\n".join([head, rule, *rows])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="LABEL=RUN_DIR")
    args = ap.parse_args()
    curves = {}
    for item in args.runs:
        label, sep, run = item.partition("=")
        if not sep:
            print(f"learning_curves: {item!r}: expected LABEL=RUN_DIR", file=sys.stderr)
            return 2
        curves[label] = curve(Path(run))
    print(table(curves))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
