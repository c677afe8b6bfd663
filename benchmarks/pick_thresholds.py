"""Pick the quality benchmark's thresholds from a run's last pseudo-label records.

    .venv/bin/python benchmarks/pick_thresholds.py RUN_DIR [--out thresholds.json]

Prints config overrides (``pldc.c_t=.. pldc.m_t=.. pldc.s_t=..``) on one line: the DDTF pair and
the coupled threshold with the best F1 in the workbench's what-if grids (``workbench.thresholds``)
on the records of RUN_DIR's last checkpoint. Each filter gets its own best point, chosen the same
way, so neither is compared at a setting tuned for the other. The paper's thresholds (c_t 0.85,
m_t 0.9, s_t 0.765) are for a pretrained R50 with 100 queries; a small model trained from scratch
is calibrated differently, which is what the grid shows. The records are of unlabeled training
images whose annotations are held back for analysis: using them to pick thresholds is a choice a
user without those annotations cannot make (say so wherever the results are quoted).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pldc_core.atomic import write_json  # noqa: E402
from pldc_core.records.store import list_record_iterations, load_records  # noqa: E402
from workbench.thresholds import threshold_study  # noqa: E402

PAPER = {"c_t": 0.85, "m_t": 0.9, "s_t": 0.765}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--out")
    args = parser.parse_args()
    iterations = list_record_iterations(args.run_dir)
    if not iterations:
        print(f"{args.run_dir}: no pseudo-label records (records.enabled and a checkpoint are needed)", file=sys.stderr)
        return 1
    records = load_records(args.run_dir, iterations[-1])
    study = threshold_study(records.queries, records.gt, {"filter": "ddtf", **PAPER})
    if not study.has_gt or study.best_ddtf is None or study.best_coupled is None:
        print(f"{records.path}: the records have no ground truth to choose thresholds with", file=sys.stderr)
        return 1
    chosen = {"c_t": study.best_ddtf["c_t"], "m_t": study.best_ddtf["m_t"], "s_t": study.best_coupled["s_t"]}
    summary = {"records": str(records.path), "iteration": iterations[-1], "num_gt": study.num_gt,
               "chosen": chosen, "best_ddtf": study.best_ddtf, "best_coupled": study.best_coupled,
               "paper_ddtf": study.run_ddtf, "paper_coupled": study.run_coupled}
    if args.out:
        write_json(args.out, summary)
    print(" ".join(f"pldc.{k}={v:g}" for k, v in chosen.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
