"""Collect the final mask AP of each quality-benchmark variant into benchmarks/results/quality.md."""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROWS = [
    ("burn_in", "after burn-in only (shared starting point)"),
    ("supervised", "supervised only (labeled data, same budget)"),
    ("coupled", "PL-DC, coupled threshold s_t (= without DDTF), PMUA"),
    ("pldc", "PL-DC: DDTF + PMUA (DICC off: no CLIP weights here)"),
    ("pldc_no_pmua", "PL-DC without PMUA (DDTF only)"),
]
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def last_eval(run: Path) -> dict | None:
    final = run / "final_eval.json"
    if final.exists():
        ev = json.loads(final.read_text())
        return {**ev, "iter": ev["iteration"]}
    path = run / "eval.jsonl"
    if not path.exists():
        return None
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return lines[-1] if lines else None


def kept_share(run: Path) -> str:
    path = run / "metrics.jsonl"
    if not path.exists():
        return "-"
    kept = queries = 0
    for line in path.read_text().splitlines():
        m = json.loads(line)
        if m.get("n_queries"):
            kept += m["n_kept"]
            queries += m["n_queries"]
    return f"{kept / queries:.1%}" if queries else "-"


def main(out_dir: str) -> None:
    out = Path(out_dir)
    cfg = (out / "pldc" / "config.yaml").read_text() if (out / "pldc" / "config.yaml").exists() else ""
    lines = ["# Quality on the embedded benchmark (5% labels, seed 0)", "",
             "Reproduce: `bash benchmarks/bench_quality.sh` (uses `configs/cpu-quick.yaml`; one burn-in, then each",
             "variant resumes from the same burned-in checkpoint with the overrides below and trains to the same",
             "`max_iters` or to the same `--stop-at`). Mask AP of the teacher (the EMA model; the student for the supervised run) on the",
             "val images listed by `data.eval_images`, COCO size ranges scaled to the image size.", "",
             "| variant | iteration | " + " | ".join(METRICS) + " | share of teacher queries kept |",
             "|---|---|" + "---|" * len(METRICS) + "---|"]
    for name, desc in ROWS:
        ev = last_eval(out / name)
        if ev is None:
            lines.append(f"| {desc} | not run | " + " | ".join("-" for _ in METRICS) + " | - |")
            continue
        vals = " | ".join(f"{ev.get(k, float('nan')):.2f}" for k in METRICS)
        lines.append(f"| {desc} (`{name}`) | {ev['iter']} | {vals} | {kept_share(out / name)} |")
    text = "\n".join(lines) + "\n"
    print(text)
    dest = ROOT / "benchmarks" / "results" / "quality.md"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/quality")
