"""Collect the quality benchmark's results into benchmarks/results/quality.md.

    .venv/bin/python benchmarks/quality_table.py [OUT_DIR]   (default runs/quality)

Per variant: mask AP of the last checkpoint on all val images (teacher = the EMA model, and the
student), the share of teacher queries its filter kept over the semi-supervised steps, and the
pseudo-labels of its last records (kept per image, precision = share of kept that are ``Cor``).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pldc_core.records.store import list_record_iterations, load_records  # noqa: E402
from workbench.thresholds import what_if, what_if_coupled  # noqa: E402

ROWS = [
    ("burn_in", "after burn-in only (shared starting point)"),
    ("supervised", "supervised only"),
    ("coupled", "coupled threshold s_t, no PMUA (baseline)"),
    ("pldc", "PL-DC: DDTF + PMUA (no DICC)"),
    ("pldc_no_ddtf", "PL-DC without DDTF (coupled + PMUA)"),
    ("pldc_no_pmua", "PL-DC without PMUA (DDTF only)"),
]


def _eval(run: Path, model: str) -> dict | None:
    path = run / f"final_eval_{model}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _fmt(ev: dict | None, key: str) -> str:
    return "-" if ev is None else f"{ev[key]:.2f}"


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


def last_pseudo_labels(run: Path) -> str:
    """Kept per image and precision of the run's own filter on its last records."""
    iterations = list_record_iterations(run) if (run / "records").is_dir() else []
    if not iterations:
        return "-"
    rec = load_records(run, iterations[-1])
    t = rec.manifest["thresholds"]
    if t["filter"] == "coupled":
        point = what_if_coupled(rec.queries, rec.gt, t["s_t"])
    else:
        point = what_if(rec.queries, rec.gt, t["c_t"], t["m_t"])
    per_image = point["kept"] / max(len(rec.images), 1)
    precision = "-" if point["precision"] != point["precision"] else f"{point['precision']:.0%}"
    return f"{per_image:.2f} / {precision} @{iterations[-1]}"


def main(out_dir: str) -> None:
    out = Path(out_dir)
    thresholds = json.loads((out / "thresholds.json").read_text()) if (out / "thresholds.json").exists() else None
    lines = ["# Quality on the embedded benchmark (5% labels, seed 0)", "",
             "Reproduce: `bash benchmarks/bench_quality.sh` (config `benchmarks/quality.yaml`: one burn-in, then",
             "each variant resumes from the same burned-in checkpoint with the same seed and schedule and",
             "trains to the same `max_iters`). Mask AP (COCO, in %) of the last checkpoint on all val images,",
             "COCO size ranges scaled to the image size. Teacher = the EMA model the paper evaluates; the",
             "supervised run has none. Pseudo-labels: per image kept by the run's own filter and the share",
             "of those that are correct (`Cor`: right class, mask IoU > 0.5), from its last records.", ""]
    if thresholds:
        c = thresholds["chosen"]
        lines += [f"Thresholds (from the what-if grid on the burn-in's records at iteration {thresholds['iteration']}, "
                  f"see `benchmarks/pick_thresholds.py`): c_t {c['c_t']:g}, m_t {c['m_t']:g}, s_t {c['s_t']:g}.", ""]
    lines += ["| variant | teacher AP | AP50 | AP75 | student AP | AP50 | AP75 | queries kept | pseudo-labels / image, precision |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, desc in ROWS:
        run = out / name
        teacher, student = _eval(run, "teacher"), _eval(run, "student")
        if teacher is None and student is None:
            lines.append(f"| {desc} | not run |" + " - |" * 7)
            continue
        it = (teacher or student)["iteration"]
        lines.append(f"| {desc} (`{name}`, iteration {it}) | {_fmt(teacher, 'AP')} | {_fmt(teacher, 'AP50')} | "
                     f"{_fmt(teacher, 'AP75')} | {_fmt(student, 'AP')} | {_fmt(student, 'AP50')} | "
                     f"{_fmt(student, 'AP75')} | {kept_share(run) if name not in ('burn_in', 'supervised') else '-'} | "
                     f"{last_pseudo_labels(run) if name != 'supervised' else '-'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    dest = ROOT / "benchmarks" / "results" / "quality.md"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/quality")
