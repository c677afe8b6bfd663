"""Collect the quality benchmark's results into benchmarks/results/quality.md (or ``--results``).

    .venv/bin/python benchmarks/quality_table.py [OUT_DIR] [--also LABEL=DIR ...] [--results FILE.md]
        [--title TEXT] [--command TEXT] [--config PATH]          (default OUT_DIR: runs/q30b3000)

Reads OUT_DIR/seedS/<variant>/ as ``bench_quality.py`` leaves them. Mask AP is in percent.
Headline: supervised-only (student) against PL-DC (teacher, the EMA model the paper evaluates, and
student) per split seed, their mean and spread, the relative gain, and the teacher's pseudo-labels
right after burn-in (kept per image at the run's thresholds, share `Cor`); where the supervised
runs kept an EMA of their weights too (``train.ema_from_start``), PL-DC's teacher against that.
``--also LABEL=DIR`` adds the same tables for another output folder of the benchmark (e.g. an
earlier recipe), under its own heading.
Data orders: where ``bench_quality.py --orders`` trained the main variants again with other
``train.seed`` values, each order's runs, each seed's mean over its orders and the gain from those
means (how much of the headline is the draw of one data order).
Ablations: every variant on each seed that has them. Pseudo-labels: kept per image by the run's
own filter and the share that are ``Cor`` (right class, mask IoU > 0.5), from the last records;
DICC: fixed/broken among the kept pseudo-labels DICC ran on in those records.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pldc_core import atomic  # noqa: E402
from pldc_core.config import load_config  # noqa: E402
from pldc_core.records.store import list_record_iterations, load_records  # noqa: E402
from pldc_core.run_dir import read_history  # noqa: E402
from workbench.dicc_report import dicc_report  # noqa: E402
from workbench.thresholds import what_if, what_if_coupled  # noqa: E402

ROWS = [
    ("burn_in", "after burn-in only (shared starting point)"),
    ("supervised", "supervised only"),
    ("coupled", "coupled threshold s_t, no DICC, no PMUA (baseline)"),
    ("pldc", "PL-DC: DDTF + DICC + PMUA (DICC crops the largest part of each mask)"),
    ("pldc_no_ddtf", "PL-DC without DDTF (coupled + DICC + PMUA)"),
    ("pldc_no_dicc", "PL-DC without DICC (DDTF + PMUA)"),
    ("pldc_no_pmua", "PL-DC without PMUA (DDTF + DICC)"),
    ("pldc_box_crop", "PL-DC, DICC cropping the whole mask's box (the paper)"),
]
TARGET_GAIN = 0.25
ANALYSIS = "## What this shows"
DICC_ON = ("pldc", "pldc_no_ddtf", "pldc_no_pmua", "pldc_box_crop")  # the variants meant to run DICC


def _eval(run: Path, model: str) -> dict | None:
    path = run / f"final_eval_{model}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _pct(ev: dict | None, key: str = "AP") -> str:
    return "-" if ev is None else f"{ev[key]:.2f}%"


def kept_share(run: Path, until: int) -> str:
    """Share of the teacher's queries the run's filter kept over its semi-supervised steps to ``until``."""
    path = run / "metrics.jsonl"
    if not path.exists():
        return "-"
    kept = queries = 0
    for line in path.read_text().splitlines():
        m = json.loads(line)
        if m.get("n_queries") and m["iter"] <= until:
            kept += m["n_kept"]
            queries += m["n_queries"]
    return f"{kept / queries:.1%}" if queries else "-"


def last_pseudo_labels(run: Path, until: int) -> tuple[str, str]:
    """(kept per image / precision, DICC fixed / broken) of the run's own filter on its last records
    up to iteration ``until``."""
    iterations = list_record_iterations(run) if (run / "records").is_dir() else []
    iterations = [i for i in iterations if i <= until]
    if not iterations:
        return "-", "-"
    rec = load_records(run, iterations[-1])
    t = rec.manifest["thresholds"]
    if t["filter"] == "coupled":
        point = what_if_coupled(rec.queries, rec.gt, t["s_t"])
    else:
        point = what_if(rec.queries, rec.gt, t["c_t"], t["m_t"])
    per_image = point["kept"] / max(len(rec.images), 1)
    precision = "-" if point["precision"] != point["precision"] else f"{point['precision']:.0%}"
    dicc = dicc_report(rec.queries, kept_by=t["filter"])
    fixed = f"{dicc.summary['fixed']} / {dicc.summary['broken']}" if dicc.ran else "off"
    return f"{per_image:.2f} / {precision} Cor @{iterations[-1]}", fixed


def _mean_spread(values: list[float]) -> str:
    """Mean, sd and range of two or more APs in %."""
    return f"{statistics.mean(values):.2f}% (sd {statistics.stdev(values):.2f}, {min(values):.2f}-{max(values):.2f})"


def burn_in_pseudo_labels(seed_dir: Path) -> str:
    """The burn-in's last records at the PL-DC run's thresholds: kept per image and share ``Cor``."""
    burn, pldc = seed_dir / "burn_in", seed_dir / "pldc"
    iterations = list_record_iterations(burn) if (burn / "records").is_dir() else []
    config = pldc / "config.yaml"
    if not iterations or not config.exists():
        return "-"
    p = load_config(config).pldc
    rec = load_records(burn, iterations[-1])
    point = what_if(rec.queries, rec.gt, p.c_t, p.m_t)
    precision = "-" if point["precision"] != point["precision"] else f"{point['precision']:.0%}"
    return f"{point['kept'] / max(len(rec.images), 1):.2f} / {precision} Cor @{iterations[-1]}"


def _verdict(gain: float, pldc: list[float], supervised: list[float]) -> str:
    return "met" if gain >= TARGET_GAIN and min(pldc) > max(supervised) else "not met"


def headline(out: Path, seeds: list[Path]) -> list[str]:
    lines = ["| split seed | supervised AP (student) | PL-DC AP (teacher) | PL-DC AP (student) | gain (teacher) | "
             "gain (student) | after burn-in: pseudo-labels / image, Cor |",
             "|---|---|---|---|---|---|---|"]
    sup, tea, stu = [], [], []
    for seed_dir in seeds:
        s = _eval(seed_dir / "supervised", "student")
        t, st = _eval(seed_dir / "pldc", "teacher"), _eval(seed_dir / "pldc", "student")
        gain_t = f"{t['AP'] / s['AP'] - 1:+.0%}" if s and t else "-"
        gain_s = f"{st['AP'] / s['AP'] - 1:+.0%}" if s and st else "-"
        lines.append(f"| {seed_dir.name[4:]} | {_pct(s)} | {_pct(t)} | {_pct(st)} | {gain_t} | {gain_s} | "
                     f"{burn_in_pseudo_labels(seed_dir)} |")
        if s and t and st:
            sup.append(s["AP"])
            tea.append(t["AP"])
            stu.append(st["AP"])
    if len(sup) >= 2:  # a mean of one seed would only repeat its row
        gain = statistics.mean(tea) / statistics.mean(sup) - 1
        lines.append(f"| mean (sd, range) | {_mean_spread(sup)} | {_mean_spread(tea)} | {_mean_spread(stu)} | "
                     f"{gain:+.0%} | {statistics.mean(stu) / statistics.mean(sup) - 1:+.0%} | |")
        lines.append("")
        orders = sum(len(order_rows(seed_dir)) > 1 for seed_dir in seeds)
        where = (f" This verdict rests on one data order per seed; {orders} of the {len(sup)} seeds also ran in "
                 "other orders, and \"Data orders\" below gives the verdict on each seed's mean over its orders."
                 if orders else "")
        lines.append(f"Target (PL-DC teacher beats supervised-only's student by >= {TARGET_GAIN:.0%} relative AP, "
                     f"mean of {len(sup)} split seeds, beyond the seed spread): **{_verdict(gain, tea, sup)}** "
                     f"(gain {gain:+.1%}; lowest PL-DC seed {min(tea):.2f}% vs highest supervised seed "
                     f"{max(sup):.2f}%).{where}")
        lines += ema_control(seeds, tea)
    else:
        lines += ["", "Fewer than 2 split seeds have both runs finished: no mean or spread yet."]
    return lines + [""]


def _setup(entry: dict) -> str:
    threads = entry.get("threads")
    processes = entry.get("processes", 1)
    return (f"{entry.get('precision', '?')} on {entry.get('device_name') or entry.get('device', '?')}"
            + (f", {threads} thread{'s' if threads != 1 else ''}" if threads else "")
            + (f" x {processes} processes" if processes > 1 else ""))


def setup_of(run: Path) -> str | None:
    """How a run's steps were trained, from its history.jsonl: one setup (precision, device, threads),
    or each setup with the step it started at where a resume changed it (steps before the first entry:
    "not recorded"); None where nothing is recorded."""
    parts: list[tuple[int, str]] = []
    for entry in read_history(run):
        setup = _setup(entry)
        if not parts or parts[-1][1] != setup:
            parts.append((entry.get("iter", 0), setup))
    if not parts:
        return None
    if parts[0][0] > 0:  # e.g. a variant resumed from a burn-in trained before runs kept a history
        parts.insert(0, (0, "not recorded"))
    if len(parts) == 1:
        return parts[0][1]
    return ", then ".join(f"{setup} from step {start}" for start, setup in parts)


def training_setups(seeds: list[Path]) -> list[str]:
    """How the tables' runs were trained (precision, device, threads), from each run's history: one line
    where every run agrees, else the runs grouped by setup. The same recipe trained in float32 and in
    bfloat16 ends at different APs, so tables from different machines are compared knowing it."""
    known = {name for name, _ in ROWS}
    by_setup: dict[str, list[str]] = {}
    for seed_dir in seeds:
        for run in sorted(p for p in seed_dir.iterdir() if p.is_dir() and variant_of(p.name) in known):
            setup = setup_of(run) or "not recorded (trained before runs kept a history.jsonl)"
            by_setup.setdefault(setup, []).append(f"{seed_dir.name}/{run.name}")
    if not by_setup:
        return []
    if len(by_setup) == 1:
        setup, runs = next(iter(by_setup.items()))
        return [f"Trained (each run's `history.jsonl`): all {len(runs)} runs {setup}.", ""]
    lines = ["Trained (each run's `history.jsonl`):", ""]
    lines += [f"- {setup}: {', '.join(runs)}" for setup, runs in by_setup.items()]
    return lines + [""]


def ema_control(seeds: list[Path], teachers: list[float]) -> list[str]:
    """PL-DC's teacher against supervised-only's own EMA models, where the supervised runs kept one
    (``train.ema_from_start``): at the end of the same schedule, and at the end of the shared burn-in
    (``final_eval_teacher.json`` in each burn-in folder), each seed's better one the strictest baseline:
    the gain that is the pseudo-labels', not the weight averaging's or the stopping point's."""
    found = {}
    for where, label in (("supervised", "at the end of the same schedule"), ("burn_in", "after the burn-in")):
        evals = [_eval(seed_dir / where, "teacher") for seed_dir in seeds]
        if evals and all(e is not None for e in evals):
            found[label] = [e["AP"] for e in evals]
    if not found:
        return []
    lines = [""]
    for label, aps in found.items():
        gain = statistics.mean(teachers) / statistics.mean(aps) - 1
        lines.append(f"Control: supervised-only's EMA of its weights (PL-DC's teacher rate) {label}: "
                     f"{' / '.join(f'{a:.2f}%' for a in aps)}, mean {statistics.mean(aps):.2f}%; PL-DC's teacher "
                     f"beats it by {gain:+.1%} (lowest PL-DC seed {min(teachers):.2f}% vs highest {max(aps):.2f}%).")
    if len(found) > 1:
        best = [max(v) for v in zip(*found.values())]
        gain = statistics.mean(teachers) / statistics.mean(best) - 1
        lines.append(f"Against each seed's better supervised-only EMA ({' / '.join(f'{a:.2f}%' for a in best)}): "
                     f"{gain:+.1%}.")
    return lines


def per_class(seeds: list[Path]) -> list[str]:
    """Each class's mask AP, supervised-only's student against PL-DC's teacher (the headline's runs),
    mean over the split seeds whose final evaluations hold ``AP_per_class`` (``pldc eval --out``)."""
    pairs = [(_eval(seed_dir / "supervised", "student"), _eval(seed_dir / "pldc", "teacher")) for seed_dir in seeds]
    pairs = [(s, t) for s, t in pairs if s and t and "AP_per_class" in s and "AP_per_class" in t]
    lines = ["## Per class: where the gain is", ""]
    if not pairs:
        return lines + ["No per-class AP: the final evaluations were written before `pldc eval` recorded it.", ""]
    lines += [f"Mask AP of each class in %, mean of {len(pairs)} split seed{'s' if len(pairs) > 1 else ''} "
              "(min-max); COCO's AP is the mean of these over the classes.", "",
              "| class | supervised AP (student) | PL-DC AP (teacher) | difference |", "|---|---|---|---|"]
    for name in pairs[0][0]["AP_per_class"]:
        sup = [s["AP_per_class"][name] for s, _ in pairs]
        tea = [t["AP_per_class"][name] for _, t in pairs]
        if any(math.isnan(v) for v in sup + tea):
            lines.append(f"| {name} | n/a | n/a | no ground truth in the val images |")
            continue
        lines.append(f"| {name} | {_mean_range(sup)} | {_mean_range(tea)} | "
                     f"{statistics.mean(tea) - statistics.mean(sup):+.2f} points |")
    return lines + [""]


def _mean_range(values: list[float]) -> str:
    text = f"{statistics.mean(values):.2f}%"
    return text if len(values) == 1 else f"{text} ({min(values):.2f}-{max(values):.2f})"


ORDER = "_order"   # a main variant rerun in another data order: ``<variant>_order<T>``


def order_run_name(variant: str, order: int | str) -> str:
    """The run folder of ``variant`` trained again with ``train.seed=order``."""
    return f"{variant}{ORDER}{order}"


def variant_of(run_name: str) -> str:
    """The variant behind a run folder's name (itself, or what a data-order rerun repeats)."""
    return run_name.partition(ORDER)[0]


def _order_of(run: Path) -> int | None:
    saved = run / "config.yaml"
    return load_config(saved, saved=True).train.seed if saved.exists() else None


def order_rows(seed_dir: Path) -> list[tuple[int | None, float, float]]:
    """``(train.seed, supervised-only AP, PL-DC teacher AP)`` of each data order of a split seed whose
    two runs are finished: the main runs' own order first, then ``<variant>_order<T>``."""
    reruns = sorted(p.name for p in seed_dir.glob(order_run_name("pldc", "*")) if p.is_dir())
    names = [("supervised", "pldc")] + [
        (order_run_name("supervised", name.removeprefix(order_run_name("pldc", ""))), name) for name in reruns]
    rows = []
    for sup_name, pldc_name in names:
        s, t = _eval(seed_dir / sup_name, "student"), _eval(seed_dir / pldc_name, "teacher")
        if s and t:
            rows.append((_order_of(seed_dir / pldc_name), s["AP"], t["AP"]))
    return rows


def data_orders(seeds: list[Path]) -> list[str]:
    """Supervised-only and PL-DC over the data orders of each split seed (``order_rows``): one row per
    order, each seed's mean, and the gain of the means over seeds with the target's verdict on them.
    No order runs: no section."""
    per_seed = {seed_dir.name[4:]: rows for seed_dir in seeds if len(rows := order_rows(seed_dir)) > 1}
    if not per_seed:
        return []
    lines = ["## Data orders: the same split, the batches drawn in another order", "",
             "Each order resumes the same burn-in with another `train.seed` (`bench_quality.py --orders`).", "",
             "| split seed | data order (`train.seed`) | supervised AP (student) | PL-DC AP (teacher) | "
             "gain (teacher) |",
             "|---|---|---|---|---|"]
    gains, sup_means, tea_means = [], [], []
    for seed, rows in per_seed.items():
        for order, s, t in rows:
            gains.append(t / s - 1)
            lines.append(f"| {seed} | {order if order is not None else '-'} | {s:.2f}% | {t:.2f}% | {t / s - 1:+.0%} |")
        sup_means.append(statistics.mean(r[1] for r in rows))
        tea_means.append(statistics.mean(r[2] for r in rows))
        lines.append(f"| {seed} | mean of {len(rows)} | {_mean_spread([r[1] for r in rows])} | "
                     f"{_mean_spread([r[2] for r in rows])} | {tea_means[-1] / sup_means[-1] - 1:+.0%} |")
    lines += ["", f"One run's gain over these orders: sd {100 * statistics.stdev(gains):.1f} percentage points, "
                  f"{min(gains):+.0%} to {max(gains):+.0%}."]
    if len(per_seed) >= 2:
        gain = statistics.mean(tea_means) / statistics.mean(sup_means) - 1
        lines.append(f"With each split seed at the mean of its orders ({', '.join(per_seed)}): PL-DC's teacher "
                     f"{statistics.mean(tea_means):.2f}% against supervised-only {statistics.mean(sup_means):.2f}%, "
                     f"gain **{gain:+.1%}**.")
        lines.append(f"Target on these means (>= {TARGET_GAIN:.0%}, beyond the seed spread): "
                     f"**{_verdict(gain, tea_means, sup_means)}** (lowest PL-DC seed mean {min(tea_means):.2f}% vs "
                     f"highest supervised seed mean {max(sup_means):.2f}%).")
    return lines + [""]


def _evals_by_iteration(run: Path) -> dict[int, dict[str, dict]]:
    """``{iteration: {model: eval}}`` of every ``final_eval_*.json`` in a run folder."""
    found: dict[int, dict[str, dict]] = {}
    for path in run.glob("final_eval_*.json"):
        ev = json.loads(path.read_text())
        found.setdefault(int(ev["iteration"]), {})[ev["model"]] = ev
    return found


def ablations(seed_dir: Path) -> list[str]:
    """One table per evaluated iteration of the seed's variants, the burn-in first in each."""
    thresholds = seed_dir / "thresholds.json"
    lines = [f"### Split seed {seed_dir.name[4:]}", ""]
    if thresholds.exists():
        t = json.loads(thresholds.read_text())
        b, p = t["best_ddtf"], t["paper_ddtf"]
        lines += [f"What-if on the burn-in's records (iteration {t['iteration']}): at the paper's thresholds "
                  f"(c_t 0.85, m_t 0.9) DDTF keeps {p['kept']} pseudo-labels, {p['precision']:.0%} `Cor`; the "
                  f"best-F1 pair (c_t {b['c_t']:g}, m_t {b['m_t']:g}) keeps {b['kept']}, {b['precision']:.0%} `Cor`.",
                  ""]
    runs = {name: _evals_by_iteration(seed_dir / name) for name, _ in ROWS}
    burn = runs.pop("burn_in")
    iterations = sorted({it for by_it in runs.values() for it in by_it})
    for it in iterations:
        lines += [f"Iteration {it}:", "",
                  "| variant | teacher AP | AP50 | AP75 | student AP | AP50 | AP75 | queries kept | "
                  "pseudo-labels / image, Cor | DICC fixed / broken |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for name, desc in ROWS:
            by_it = burn if name == "burn_in" else runs[name]
            at = max(burn) if name == "burn_in" and burn else it
            if at not in by_it:
                continue
            run = seed_dir / name
            teacher, student = by_it[at].get("teacher"), by_it[at].get("student")
            pls, dicc = last_pseudo_labels(run, at) if name != "supervised" else ("-", "-")
            kept = kept_share(run, at) if name not in ("burn_in", "supervised") else "-"
            if dicc == "off" and name in DICC_ON:  # e.g. a CLIP that does not know the class words
                desc += "; DICC was off in this run"
            lines.append(f"| {desc} (`{name}`, iteration {at}) | {_pct(teacher)} | {_pct(teacher, 'AP50')} | "
                         f"{_pct(teacher, 'AP75')} | {_pct(student)} | {_pct(student, 'AP50')} | "
                         f"{_pct(student, 'AP75')} | {kept} | {pls} | {dicc} |")
        lines.append("")
    return lines


def _seeds(out: Path) -> list[Path]:
    return sorted((p for p in out.glob("seed*") if p.is_dir()), key=lambda p: int(p.name[4:]))


TITLE = "Quality on the embedded benchmark (5% labels)"
COMMAND = ".venv/bin/python benchmarks/bench_quality.py"
CONFIG = "benchmarks/quality-30min-b3000.yaml"


def main(out_dir: str, also: list[tuple[str, str]] = (), title: str = TITLE, command: str = COMMAND,
         config: str = CONFIG) -> str:
    out = Path(out_dir)
    lines = [f"# {title}", "",
             f"Reproduce: `{command}` (config `{config}`; per",
             "split seed one supervised burn-in, then each variant resumes from that burned-in checkpoint with",
             "the same data order, schedule and iteration budget). Mask AP in % (COCO, size ranges scaled to",
             "the image) of the last checkpoint on every val image.", "",
             "## Supervised only vs PL-DC, per split seed", ""]
    lines += headline(out, _seeds(out))
    lines += training_setups(_seeds(out))
    lines += data_orders(_seeds(out))
    lines += per_class(_seeds(out))
    lines += ["## Every variant", ""]
    for seed_dir in _seeds(out):
        lines += ablations(seed_dir)
    for label, other in also:
        lines += [f"## {label}", "", "### Supervised only vs PL-DC, per split seed", ""]
        lines += headline(Path(other), _seeds(Path(other)))
        lines += training_setups(_seeds(Path(other)))
        for seed_dir in _seeds(Path(other)):
            lines += ["#" + line if line.startswith("### ") else line for line in ablations(seed_dir)]
    text = "\n".join(lines) + "\n"
    print(text)
    return text


def write(text: str, dest: Path = ROOT / "benchmarks" / "results" / "quality.md") -> None:
    """Replace the generated part of ``dest``, keeping its written analysis (from ANALYSIS on).

    A file without that heading is kept whole as ``<name>.bak`` before it is rewritten: its text
    may be an analysis under another heading, which a rewrite must not lose."""
    kept = ""
    if dest.exists():
        old = dest.read_text()
        at = old.find(ANALYSIS)
        if at >= 0:
            kept = old[at:]
        elif old.strip():
            backup = dest.with_name(dest.name + ".bak")
            atomic.write_text(backup, old)
            print(f"{dest} has no '{ANALYSIS}' section: its previous text is kept in {backup}", file=sys.stderr)
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(dest, text + ("\n" + kept if kept else ""))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", default="runs/q30b3000")
    parser.add_argument("--also", action="append", default=[], metavar="LABEL=DIR",
                        help="add another output folder's tables under the heading LABEL")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "quality.md",
                        help="the markdown file written (its hand-written analysis is kept)")
    parser.add_argument("--title", default=TITLE)
    parser.add_argument("--command", default=COMMAND, help="the command the file says reproduces it")
    parser.add_argument("--config", default=CONFIG, help="the config the file names")
    args = parser.parse_args()
    write(main(args.out, [tuple(a.split("=", 1)) for a in args.also], args.title, args.command, args.config),
          args.results)
