"""`pldc report RUN`: one self-contained HTML report of a run's records, and a folder of PNGs.

The HTML embeds plotly.js once (in the head; no CDN, it opens offline) and every figure as a
div. The PNGs are the same figures drawn by ``png.write_png``. The report opens with a
summary: which of c and m predicts IoU better, which error type dominates, the best threshold
pair against the run's, what DICC did, where uncertainty concentrates.
"""
from __future__ import annotations

import argparse
import html
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.io as pio
from plotly.offline import get_plotlyjs

from pldc_core.atomic import atomic_dir, write_text
from pldc_core.method.filters import KEEP_COLUMNS, Thresholds
from pldc_core.records.schema import Manifest
from pldc_core.records.store import RecordError, list_record_iterations, load_records
from pldc_core.run_dir import CLIP_TABLE_FILE, RunDir
from workbench import figures
from workbench.confusion import Confusion, confusion_matrix, most_confused
from workbench.dicc_report import (ClipPrecisionRecall, DiccReport, clip_precision_recall, dicc_report,
                                   read_clip_table)
from workbench.error_breakdown import ErrorBreakdown, dominant_error, error_breakdown
from workbench.png import write_png
from workbench.quality import QualityReport, better_predictor, quality_vs_iou
from workbench.thresholds import ThresholdStudy, threshold_study
from workbench.trends import ANALYSIS_COLUMNS, Trends, checkpoint_trends, num_classes_of, read_jsonl
from workbench.uncertainty import (UncertaintyVsIoU, decoded_maps, distance_profile, region_means,
                                   sample_rows, uncertainty_vs_iou)

PROFILE_SAMPLE = 64   # masks decoded for the uncertainty-vs-distance profile
MAP_COLUMNS = ["image_id", "query", "mask_rle", "height", "width", "unc_png", "keep_ddtf", "keep_coupled"]


@dataclass
class ReportData:
    """Everything the report shows: one checkpoint's analyses, the trends and the logs."""

    run_dir: Path
    iteration: int
    manifest: dict
    class_names: list[str]
    kept_by: str
    n_queries: int
    quality: QualityReport
    thresholds: ThresholdStudy
    confusion: Confusion
    confusion_dicc: Confusion | None
    errors_all: ErrorBreakdown
    errors_kept: ErrorBreakdown
    dicc: DiccReport
    unc_kept_by: str | None     # the rows the uncertainty analyses read: kept ones, or all (None)
    regions: pd.DataFrame
    unc_iou: UncertaintyVsIoU
    profile: pd.DataFrame
    trends: Trends
    metrics: pd.DataFrame
    evals: pd.DataFrame
    clip: ClipPrecisionRecall | None = None

    @property
    def filter_name(self) -> str:
        return "DDTF" if self.kept_by == "ddtf" else "coupled"

    @property
    def unc_scope(self) -> str:
        if self.unc_kept_by is None:
            return f"all queries ({self.filter_name} kept none)"
        return f"the {self.filter_name}-kept pseudo-labels"


def collect(run_dir: str | Path, iteration: int | None = None,
            clip_table: pd.DataFrame | None = None) -> ReportData:
    """Load a run's records and compute every analysis of the report."""
    run_dir = Path(run_dir)
    available = list_record_iterations(run_dir)
    if not available:
        raise FileNotFoundError(f"{run_dir}: no complete pseudo-label records under {run_dir / 'records'}")
    if iteration is None:
        iteration = available[-1]
    if iteration not in available:
        raise ValueError(f"{run_dir}: no records for iteration {iteration} (available: {available})")
    rec = load_records(run_dir, iteration=iteration, columns=ANALYSIS_COLUMNS)
    q, gt, manifest = rec.queries, rec.gt, rec.manifest
    n_classes = num_classes_of(manifest, q, gt)
    names = Manifest.of(manifest).class_names or [str(i) for i in range(n_classes)]
    kept_by = Thresholds.of_manifest(manifest).kept_by
    dicc_ran = bool((q["corrected_class"] >= 0).any())

    # Uncertainty is read on the kept pseudo-labels (what PMUA weighs); when the run's filter kept
    # nothing at this checkpoint, on all queries instead, and the report says so.
    unc_kept_by = kept_by if q[KEEP_COLUMNS[kept_by]].any() else None
    maps = load_records(run_dir, iteration=iteration, columns=MAP_COLUMNS).queries
    maps = maps[maps["unc_png"].notna() & maps["mask_rle"].notna()]
    profile = distance_profile(decoded_maps(sample_rows(maps, PROFILE_SAMPLE, seed=0, kept_by=unc_kept_by)))

    def checkpoints():
        for it in available:
            yield it, (rec if it == iteration else load_records(run_dir, iteration=it, columns=ANALYSIS_COLUMNS))

    return ReportData(
        run_dir=run_dir, iteration=int(iteration), manifest=manifest, class_names=names, kept_by=kept_by,
        n_queries=len(q), quality=quality_vs_iou(q),
        thresholds=threshold_study(q, gt, manifest.get("thresholds")),
        confusion=confusion_matrix(q, gt, n_classes, kept_by=kept_by),
        confusion_dicc=confusion_matrix(q, gt, n_classes, use_dicc=True, kept_by=kept_by) if dicc_ran else None,
        errors_all=error_breakdown(q), errors_kept=error_breakdown(q, kept_by=kept_by),
        dicc=dicc_report(q), unc_kept_by=unc_kept_by, regions=region_means(q, kept_by=unc_kept_by),
        unc_iou=uncertainty_vs_iou(q, kept_by=unc_kept_by), profile=profile,
        trends=checkpoint_trends(checkpoints()),
        metrics=read_jsonl(RunDir(run_dir).metrics), evals=read_jsonl(RunDir(run_dir).evals),
        clip=clip_precision_recall(clip_table, n_classes) if clip_table is not None else None)


def _pct(x: float) -> str:
    return "n/a" if x is None or np.isnan(x) else f"{100 * x:.0f}%"


def _f(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or np.isnan(x) else f"{x:.{digits}f}"


def _point(p: dict | None) -> str:
    if p is None:
        return "n/a"
    where = f"s_t = {p['s_t']:.3g}" if "s_t" in p and "m_t" not in p else f"m_t = {p['m_t']:.3g}, c_t = {p['c_t']:.3g}"
    return (f"{where}: F1 {_f(p['f1'])} (precision {_f(p['precision'])}, recall {_f(p['recall'])}, "
            f"{int(p['kept']):,} kept)")


def summary_lines(d: ReportData) -> list[str]:
    """The few sentences at the top of the report."""
    filt = d.filter_name
    lines = [f"Checkpoint {d.iteration:,} of run {html.escape(str(d.manifest.get('run', d.run_dir.name)))} "
             f"({d.manifest.get('phase', '?')}): {d.n_queries:,} teacher queries on "
             f"{d.manifest.get('num_images', '?')} images; the run filters with {filt}."]
    if not d.quality.has_gt:
        lines.append("These records hold no ground truth: correlations with IoU, precision/recall, the "
                     "confusion matrix and the error types are not available. Kept counts, DICC's changes "
                     "and uncertainty are shown.")
    else:
        overall = d.quality.overall.set_index("score")
        best = better_predictor(d.quality.overall)
        if best is not None:
            other = "c" if best == "m" else "m"
            lines.append(f"<b>{best} predicts IoU better than {other}</b>: Spearman {_f(overall.loc[best, 'spearman'])} "
                         f"vs {_f(overall.loc[other, 'spearman'])} (s: {_f(overall.loc['s', 'spearman'])}; "
                         f"{int(overall.loc['s', 'n']):,} queries with GT).")
        kept_share = d.errors_kept.overall()
        dom_kept, dom_all = dominant_error(d.errors_kept), dominant_error(d.errors_all)
        if d.errors_kept.n:
            text = (f"Of the {d.errors_kept.n:,} pseudo-labels {filt} kept, {_pct(kept_share['Cor'])} are correct (Cor)")
            text += f"; <b>the dominant error is {dom_kept[0]}</b> ({_pct(dom_kept[1])})." if dom_kept else "."
            lines.append(text)
        if dom_all:
            lines.append(f"Over all queries, the dominant error is {dom_all[0]} ({_pct(dom_all[1])}).")
        t = d.thresholds
        run = t.run_ddtf if t.run_filter != "coupled" else t.run_coupled
        if t.best_ddtf is not None and t.best_ddtf["f1"] > 0:
            lines.append(f"<b>Best DDTF pair by F1</b>: {_point(t.best_ddtf)}. "
                         f"<b>The run's</b> {_point(run)}.")
            if t.best_coupled is not None:
                lines.append(f"Best coupled threshold: {_point(t.best_coupled)}.")
        elif t.best_ddtf is not None:
            lines.append("No threshold pair of the grid keeps a correct (Cor) pseudo-label: F1 is 0 "
                         f"everywhere. The run's {_point(run)}.")
    s = d.dicc.summary
    if d.dicc.ran:
        text = f"DICC ran on {s['n_ran']:,} pseudo-labels and changed {s['n_changed']:,}"
        if d.dicc.has_gt:
            text += (f": fixed {s['fixed']:,}, broke {s['broken']:,}, {s['neutral']:,} wrong to wrong "
                     f"(class accuracy {_pct(s['accuracy_before'])} to {_pct(s['accuracy_after'])}).")
        lines.append(text + ("" if d.dicc.has_gt else "."))
    else:
        lines.append("DICC did not run at this checkpoint.")
    regions = d.regions.set_index("region")["mean_u"].dropna()
    if len(regions):
        top = regions.idxmax()
        where = {"inside": "inside the masks", "boundary": "on the mask boundaries",
                 "overlap": "where masks overlap"}[top]
        lines.append(f"Uncertainty is highest {where} (mean u of {d.unc_scope}: "
                     + ", ".join(f"{r} {_f(v)}" for r, v in regions.items()) + ").")
    return lines


def _table(frame: pd.DataFrame, names: list[str] | None = None, class_columns=()) -> str:
    frame = frame.copy()
    for col in class_columns:
        frame[col] = figures.class_labels(frame[col], names)
    return frame.to_html(index=False, border=0, classes="table", na_rep="n/a",
                         float_format=lambda v: f"{v:.3f}")


def sections(d: ReportData) -> list[tuple[str, str, list[tuple[str, object]]]]:
    """(title, intro html, [(name, figure or html table)]) per report section."""
    names, t, th = d.class_names, d.trends, d.manifest.get("thresholds") or {}
    out = []
    q = d.quality
    out.append(("Quality scores vs IoU (Fig. 2)",
                "Each point is a teacher query on an image with known annotations; y is the IoU of its mask "
                "with the best-matching GT.",
                [("quality_scatter", figures.quality_scatter(q.scatter, th)),
                 ("quality_correlation", figures.correlation_bars(q.overall)),
                 ("quality_per_class", figures.class_correlation_bars(q.per_class, names))]))

    s = d.thresholds
    compare = pd.DataFrame([{"point": k, **{c: p.get(c, np.nan) for c in
                             ("m_t", "c_t", "s_t", "kept", "precision", "recall", "f1", "class_accuracy", "mean_iou")}}
                            for k, p in (("best DDTF", s.best_ddtf), ("run DDTF", s.run_ddtf),
                                         ("best coupled", s.best_coupled), ("run coupled", s.run_coupled))
                            if p is not None])
    out.append(("Threshold what-if (Table 4a at the pseudo-label level)",
                f"Precision: share of kept pseudo-labels that are Cor. Recall: share of the {s.num_gt:,} GT "
                "instances covered by a kept Cor pseudo-label. Class accuracy: kept pseudo-labels on a GT "
                "(IoU > 0.5) with the right class.",
                [("thresholds_f1", figures.threshold_heatmap(s.ddtf, "f1", s.best_ddtf, s.run_ddtf)),
                 ("thresholds_precision", figures.threshold_heatmap(s.ddtf, "precision", s.best_ddtf, s.run_ddtf)),
                 ("thresholds_recall", figures.threshold_heatmap(s.ddtf, "recall", s.best_ddtf, s.run_ddtf)),
                 ("thresholds_kept", figures.threshold_heatmap(s.ddtf, "kept", s.best_ddtf, s.run_ddtf)),
                 ("thresholds_coupled", figures.threshold_curves(s.coupled, th.get("s_t"))),
                 ("thresholds_table", _table(compare))]))

    conf_items = [("confusion", figures.confusion_heatmap(d.confusion, names))]
    if d.confusion_dicc is not None:
        conf_items.append(("confusion_dicc", figures.confusion_heatmap(d.confusion_dicc, names)))
    pairs = most_confused(d.confusion, top=10)
    conf_items.append(("confusion_pairs", _table(pairs, names, ("pred_class", "gt_class"))))
    out.append(("Confusion of pseudo-label classes (Fig. 3)",
                f"{d.filter_name}-kept pseudo-labels. A pseudo-label on a GT (IoU > 0.5) counts in that GT's "
                "column, any other in the background column; GT instances no pseudo-label matched fill the "
                "background row. Rows are normalised.", conf_items))

    out.append(("Error breakdown (Fig. 5)",
                "Cor / Sim (similar class, same supercategory) / Oth (other class) / Loc (right class, "
                "IoU <= 0.5) / BG (no overlap) / Both (wrong class and poor mask), by object size.",
                [("errors_kept", figures.stacked_shares(d.errors_kept.table, "size",
                                                        f"Error types of the {d.filter_name}-kept pseudo-labels")),
                 ("errors_all", figures.stacked_shares(d.errors_all.table, "size", "Error types of all queries")),
                 ("errors_trend", figures.stacked_shares(
                     t.errors[(t.errors["kept_by"] == d.kept_by) & (t.errors["size"] == "all")], "iteration",
                     "Error types of the kept pseudo-labels across checkpoints"))]))

    dicc_items = [("dicc_summary", _table(pd.DataFrame([d.dicc.summary]))),
                  ("dicc_classes", figures.dicc_class_bars(d.dicc.per_class, names)),
                  ("dicc_transitions", _table(d.dicc.transitions.head(15), names, ("from_class", "to_class")))]
    if d.clip is not None:
        dicc_items.append(("clip_pr", figures.clip_pr_bars(d.clip.per_class, names)))
    out.append(("DICC: class corrections",
                "Judged against the GT a pseudo-label covers (IoU > 0.5): fixed = wrong to right, broken = right "
                "to wrong, neutral = wrong to another wrong.", dicc_items))

    out.append(("Uncertainty (Eq. 10)",
                f"Over {d.unc_scope}: mean pixel uncertainty u inside the mask, on its inner boundary band and "
                "where it overlaps another kept mask; its relation to IoU; and u by distance to the mask edge "
                f"on a sample of {d.profile.attrs.get('n_masks', 0)} masks.",
                [("uncertainty_regions", figures.grouped_bars(d.regions, "region", ["mean_u", "median_u"],
                                                              "Uncertainty by region", "u")),
                 ("uncertainty_iou", figures.line_figure(d.unc_iou.curve, "mean_u", "mean_iou", "region",
                                                         "Mean IoU by uncertainty bin", "mean IoU",
                                                         "mean u of the bin")),
                 ("uncertainty_profile", figures.line_figure(d.profile, "distance", "mean_u", None,
                                                             "Uncertainty by distance to the mask edge", "mean u",
                                                             "pixels from the edge (negative: outside)"))]))

    dicc_long = t.dicc.melt(id_vars="iteration", value_vars=["fixed", "broken", "neutral"],
                            var_name="outcome", value_name="count")
    accuracy = t.confusion.assign(labels=t.confusion["use_dicc"].map({False: "teacher", True: "after DICC"}))
    out.append(("Across checkpoints", "", [
        ("trend_quality", figures.line_figure(t.quality, "iteration", "spearman", "score",
                                              "Spearman correlation with IoU", "Spearman")),
        ("trend_thresholds", figures.line_figure(t.thresholds, "iteration", "f1", "point", "F1: best vs the run's")),
        ("trend_class_accuracy", figures.line_figure(accuracy, "iteration", "class_accuracy", "labels",
                                                     "Class accuracy of the kept pseudo-labels on a GT")),
        ("trend_dicc", figures.line_figure(dicc_long, "iteration", "count", "outcome", "DICC outcomes")),
        ("trend_uncertainty", figures.line_figure(t.uncertainty, "iteration", "mean_u", "region",
                                                  "Mean uncertainty by region")),
    ]))

    losses = [c for c in d.metrics.columns if "loss" in c]
    counts = [c for c in d.metrics.columns if c.startswith("n_") or c in ("dicc_w", "lr", "sec_per_iter")]
    aps = [c for c in d.evals.columns if c.upper().startswith("AP")]
    out.append(("Training", "From metrics.jsonl and eval.jsonl.", [
        ("training_losses", figures.training_curves(d.metrics, losses, "Losses")),
        ("training_counts", figures.training_curves(d.metrics, counts, "Pseudo-labels, DICC weight, lr, speed")),
        ("training_eval", figures.training_curves(d.evals, aps, "Evaluation (mask AP)")),
    ]))
    return out


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
.summary{background:#f3f6fa;border-left:4px solid #1f77b4;padding:.6em 1.2em}
.summary li{margin:.3em 0}.table{border-collapse:collapse;font-size:.85em;margin:1em 0}
.table td,.table th{padding:.2em .6em;border-bottom:1px solid #ddd;text-align:right}
h2{margin-top:2em;border-bottom:1px solid #ccc}.intro{color:#555}"""


def render_html(d: ReportData, secs) -> str:
    """The report page; plotly.js is inlined once in the head."""
    title = f"PL-DC report: {d.manifest.get('run', d.run_dir.name)}, iteration {d.iteration:,}"
    body = [f"<h1>{html.escape(title)}</h1>", '<section class="summary"><h2>Summary</h2><ul>']
    body += [f"<li>{line}</li>" for line in summary_lines(d)]
    body.append("</ul></section>")
    for heading, intro, items in secs:
        body.append(f"<section><h2>{html.escape(heading)}</h2>")
        if intro:
            body.append(f'<p class="intro">{html.escape(intro)}</p>')
        for name, item in items:
            if isinstance(item, str):
                body.append(item)
            else:
                body.append(pio.to_html(item, full_html=False, include_plotlyjs=False, div_id=f"fig-{name}",
                                        config={"displaylogo": False, "responsive": True}))
        body.append("</section>")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style>"
            f"<script type=\"text/javascript\">{get_plotlyjs()}</script></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_report(run_dir: str | Path, out_dir: str | Path | None = None, iteration: int | None = None,
                 png: bool = True, clip_table: pd.DataFrame | None = None) -> Path:
    """Write ``OUT/report.html`` (self-contained) and ``OUT/figures/*.png``; returns the HTML path.

    ``out_dir`` defaults to ``RUN/report``; ``iteration`` to the latest recorded checkpoint.
    """
    data = collect(run_dir, iteration, clip_table)
    out_dir = Path(out_dir) if out_dir is not None else Path(run_dir) / "report"
    secs = sections(data)
    if png:
        with atomic_dir(out_dir / "figures") as tmp:
            for _, _, items in secs:
                for name, item in items:
                    if not isinstance(item, str):
                        write_png(item, tmp / f"{name}.png")
    path = out_dir / "report.html"
    write_text(path, render_html(data, secs))
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory (holds records/iter_*/)")
    parser.add_argument("--out", default=None, help="output folder (default: RUN/report)")
    parser.add_argument("--iteration", type=int, default=None,
                        help="checkpoint to analyse in detail (default: the latest recorded)")
    parser.add_argument("--no-png", action="store_true", help="write the HTML only")
    parser.add_argument("--clip-table", default=None,
                        help="parquet or CSV with columns gt_class, clip_pred (CLIP on GT crops, Table II; "
                             "default: RUN/clip_gt_crops.parquet when `pldc clip-crops RUN` wrote it)")


def run(args: argparse.Namespace) -> int:
    try:
        clip_table = None
        default_table = Path(args.run) / CLIP_TABLE_FILE
        if args.clip_table or default_table.is_file():
            clip_table = read_clip_table(args.clip_table or default_table)
        path = write_report(args.run, args.out, args.iteration, png=not args.no_png, clip_table=clip_table)
    except (FileNotFoundError, ValueError, RecordError) as exc:
        print(f"pldc report: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0
