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
from pldc_core.method.filters import KEEP_COLUMNS
from pldc_core.records.schema import Manifest
from pldc_core.records.store import RecordError, list_record_iterations, load_records
from pldc_core.run_dir import CLIP_TABLE_FILE, RunDir
from pldc_core.units import format_metrics
from workbench.figures import confusion as confusion_figures
from workbench.figures import dicc as dicc_figures
from workbench.figures import errors as error_figures
from workbench.figures import quality as quality_figures
from workbench.figures import thresholds as threshold_figures
from workbench.figures import training as training_figures
from workbench.figures import uncertainty as uncertainty_figures
from workbench.figures.style import class_labels, empty
from workbench.confusion import Confusion, confusion_matrix, most_confused
from workbench.dicc_report import (ClipPrecisionRecall, DiccReport, clip_precision_recall_by_mode, dicc_report,
                                   mode_summary, read_clip_table)
from workbench.error_breakdown import ErrorBreakdown, dominant_error, error_breakdown
from workbench.explain import (dicc_reason, error_glossary, error_label, filter_label, no_ground_truth,
                               nothing_kept)
from workbench.png import write_png
from workbench.quality import QualityReport, better_predictor, quality_vs_iou
from workbench.thresholds import ThresholdStudy, threshold_study
from workbench.trends import (ANALYSIS_COLUMNS, Trends, burn_in_of, checkpoint_trends, num_classes_of, per_class_ap,
                              read_jsonl)
from workbench.uncertainty import (UncertaintyVsIoU, decoded_maps, distance_profile, region_means,
                                   sample_rows, uncertainty_vs_iou)

PROFILE_SAMPLE = 64   # masks decoded for the uncertainty-vs-distance profile
MAP_COLUMNS = ["image_id", "query", "mask_rle", "height", "width", "unc_png", "keep_ddtf", "keep_coupled"]


@dataclass
class ReportData:
    """Everything the report shows: one checkpoint's analyses, the trends and the logs."""

    run_dir: Path
    iteration: int
    manifest: Manifest
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
    scope_kept_by: str | None   # rows of the kept-only analyses (confusion, uncertainty): kept, or all (None)
    regions: pd.DataFrame
    unc_iou: UncertaintyVsIoU
    profile: pd.DataFrame
    trends: Trends
    metrics: pd.DataFrame
    evals: pd.DataFrame
    clip: dict[str, ClipPrecisionRecall] | None = None  # per DICC mode (pldc clip-crops)
    n_kept: int = 0             # pseudo-labels the run's filter kept at this checkpoint
    dicc_in_run: bool = True    # DICC was on at some recorded checkpoint of the run
    burn_in: int | None = None  # the iteration the run's burn-in ends at (its config.yaml)

    @property
    def filter_name(self) -> str:
        return "DDTF" if self.kept_by == "ddtf" else "coupled"

    @property
    def best_point(self) -> dict | None:
        """The best what-if setting of the run's own filter (by F1)."""
        t = self.thresholds
        return t.best_coupled if self.kept_by == "coupled" else t.best_ddtf

    def nothing_kept(self, fix: str) -> str:
        """Why a view of the kept pseudo-labels is empty at this checkpoint, with ``fix``."""
        return nothing_kept(self.manifest.thresholds, self.iteration, self.best_point, fix)

    @property
    def scope(self) -> str:
        if self.scope_kept_by is None:
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
    q, gt = rec.queries, rec.gt
    n_classes = num_classes_of(rec.info, q, gt)
    names = rec.info.class_names or [str(i) for i in range(n_classes)]
    kept_by = rec.info.thresholds.kept_by
    dicc_ran = bool((q["corrected_class"] >= 0).any())
    n_kept = int(q[KEEP_COLUMNS[kept_by]].sum())

    # Uncertainty and the confusion matrix are read on the kept pseudo-labels (what PMUA weighs and
    # the student learns from); when the run's filter kept nothing at this checkpoint, on all
    # queries instead, and the report says so.
    scope_kept_by = kept_by if n_kept else None
    maps = load_records(run_dir, iteration=iteration, columns=MAP_COLUMNS).queries
    maps = maps[maps["unc_png"].notna() & maps["mask_rle"].notna()]
    profile = distance_profile(decoded_maps(sample_rows(maps, PROFILE_SAMPLE, seed=0, kept_by=scope_kept_by)))

    dicc_on = []

    def checkpoints():
        for it in available:
            other = rec if it == iteration else load_records(run_dir, iteration=it, columns=ANALYSIS_COLUMNS)
            dicc_on.append(other.info.dicc_enabled)
            yield it, other

    trends = checkpoint_trends(checkpoints())
    return ReportData(
        run_dir=run_dir, iteration=int(iteration), manifest=rec.info, class_names=names, kept_by=kept_by,
        n_queries=len(q), quality=quality_vs_iou(q),
        thresholds=threshold_study(q, gt, rec.manifest.get("thresholds")),
        confusion=confusion_matrix(q, gt, n_classes, kept_by=scope_kept_by),
        confusion_dicc=confusion_matrix(q, gt, n_classes, use_dicc=True, kept_by=scope_kept_by) if dicc_ran else None,
        errors_all=error_breakdown(q), errors_kept=error_breakdown(q, kept_by=kept_by),
        dicc=dicc_report(q), scope_kept_by=scope_kept_by, regions=region_means(q, kept_by=scope_kept_by),
        unc_iou=uncertainty_vs_iou(q, kept_by=scope_kept_by), profile=profile,
        trends=trends, metrics=read_jsonl(RunDir(run_dir).metrics), evals=read_jsonl(RunDir(run_dir).evals),
        clip=clip_precision_recall_by_mode(clip_table, n_classes) if clip_table is not None else None,
        n_kept=n_kept, dicc_in_run=dicc_ran or any(dicc_on), burn_in=burn_in_of(run_dir))


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


def _last_evaluation(evals: pd.DataFrame) -> str:
    """The latest evaluation's mask AP, each with its unit ('' without any)."""
    if evals.empty or "AP" not in evals.columns or "iteration" not in evals.columns:
        return ""
    last = evals.dropna(subset=["AP"]).tail(1)
    if last.empty:
        return ""
    row = last.iloc[0].to_dict()
    model = f", {html.escape(str(row['model']))}" if isinstance(row.get("model"), str) else ""
    return f"Last evaluation (iteration {int(row['iteration']):,}{model}): {format_metrics(row)}."


def summary_lines(d: ReportData) -> list[str]:
    """The few sentences at the top of the report."""
    filt = d.filter_name
    m = d.manifest
    lines = [f"Checkpoint {d.iteration:,} of run {html.escape(m.run or d.run_dir.name)} ({m.phase or '?'}): "
             f"{d.n_queries:,} teacher queries on {m.num_images if m.num_images is not None else '?'} images; "
             f"the run filters with {filt}."]
    last = _last_evaluation(d.evals)
    if last:
        lines.append(last)
    if d.n_kept == 0:
        lines.append(html.escape(d.nothing_kept("the confusion matrix and the uncertainty analyses below count "
                                                "all queries instead")))
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
            text += (f"; <b>the dominant error is {error_label(dom_kept[0])}</b>, {_pct(dom_kept[1])} of them."
                     if dom_kept else ".")
            lines.append(text)
        if dom_all:
            lines.append(f"Over all queries, the dominant error is {error_label(dom_all[0])}, "
                         f"{_pct(dom_all[1])} of them.")
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
    if not d.dicc_in_run:
        lines.append(dicc_reason(False, d.n_kept))
    elif d.dicc.ran:
        text = f"DICC ran on {s['n_ran']:,} pseudo-labels and changed {s['n_changed']:,}"
        if d.dicc.has_gt:
            text += (f": fixed {s['fixed']:,}, broke {s['broken']:,}, {s['neutral']:,} wrong to wrong "
                     f"(class accuracy {_pct(s['accuracy_before'])} to {_pct(s['accuracy_after'])}"
                     + (f"; CLIP alone {_pct(s['clip_accuracy'])}" if s["clip_accuracy"] == s["clip_accuracy"] else "")
                     + ").")
        lines.append(text + ("" if d.dicc.has_gt else ".") + _dicc_elsewhere(d))
    else:
        lines.append(dicc_reason(True, d.n_kept, d.manifest.phase))
    regions = d.regions.set_index("region")["mean_u"].dropna()
    if len(regions):
        top = regions.idxmax()
        where = {"inside": "inside the masks", "boundary": "on the mask boundaries",
                 "overlap": "where masks overlap"}[top]
        lines.append(f"Uncertainty is highest {where} (mean u of {d.scope}: "
                     + ", ".join(f"{r} {_f(v)}" for r, v in regions.items()) + ").")
    return lines


def _dicc_elsewhere(d: ReportData) -> str:
    """Where this checkpoint's DICC changed nothing but other recorded checkpoints did: how many, and where
    the most (DICC can overturn a kept class only early in the phase: METHOD.md)."""
    if d.dicc.summary["n_changed"] or d.trends.dicc.empty:
        return ""
    other = d.trends.dicc[d.trends.dicc["iteration"] != d.iteration]
    if not other["n_changed"].sum():
        return ""
    most = other.loc[other["n_changed"].idxmax()]
    return (f" Across the other recorded checkpoints it changed {int(other['n_changed'].sum()):,} (fixed "
            f"{int(other['fixed'].sum()):,}, broke {int(other['broken'].sum()):,}), the most at iteration "
            f"{int(most['iteration']):,}: DICC can overturn a kept class only early in the semi-supervised phase.")


def _table(frame: pd.DataFrame, names: list[str] | None = None, class_columns=()) -> str:
    frame = frame.copy()
    for col in class_columns:
        frame[col] = class_labels(frame[col], names)
    return frame.to_html(index=False, border=0, classes="table", na_rep="n/a",
                         float_format=lambda v: f"{v:.3f}")


def _why(text: str) -> str:
    """One line saying why a view is empty (or shows something else than its title says)."""
    return f'<p class="why">{html.escape(text)}</p>'


def sections(d: ReportData) -> list[tuple[str, str, list[tuple[str, object]]]]:
    """(title, intro text, [(name, figure or html)]) per report section.

    Every view that has nothing to show says why in one line and what to look at instead."""
    names, t, th = d.class_names, d.trends, d.manifest.thresholds.as_dict()
    out = []
    q = d.quality
    no_gt = no_ground_truth("correlations with IoU")
    out.append(("Quality scores vs IoU (Fig. 2)",
                "Each point is a teacher query on an image with known annotations; y is the IoU of its mask "
                "with the best-matching GT; colours are the error types (Fig. 5): " + error_glossary(),
                [("quality_scatter", quality_figures.quality_scatter(q.scatter, th) if q.has_gt
                  else empty("Quality scores vs IoU with the best GT", no_gt)),
                 ("quality_correlation", quality_figures.correlation_bars(q.overall) if q.has_gt
                  else empty("Correlation with IoU", no_gt)),
                 ("quality_per_class", quality_figures.class_correlation_bars(q.per_class, names) if q.has_gt
                  else empty("Correlation with IoU per class", no_gt))]))

    s = d.thresholds
    compare = pd.DataFrame([{"point": k, **{c: p.get(c, np.nan) for c in
                             ("m_t", "c_t", "s_t", "kept", "precision", "recall", "f1", "class_accuracy", "mean_iou")}}
                            for k, p in (("best DDTF", s.best_ddtf), ("run DDTF", s.run_ddtf),
                                         ("best coupled", s.best_coupled), ("run coupled", s.run_coupled))
                            if p is not None])
    heat = {metric: threshold_figures.threshold_heatmap(s.ddtf, metric, s.best_ddtf, s.run_ddtf,
                                                        empty_message=no_ground_truth(metric, plural=False))
            for metric in ("f1", "precision", "recall", "kept")}
    out.append(("Threshold what-if (Table 4a at the pseudo-label level)",
                f"Precision: share of kept pseudo-labels that are correct (Cor). Recall: share of the {s.num_gt:,} GT "
                "instances covered by a kept Cor pseudo-label. Class accuracy: kept pseudo-labels on a GT "
                "(IoU > 0.5) with the right class. Square: the best pair by F1; circle: the run's pair.",
                [(f"thresholds_{metric}", fig) for metric, fig in heat.items()]
                + [("thresholds_coupled", threshold_figures.threshold_curves(s.coupled, th.get("s_t"))),
                   ("thresholds_table", _table(compare))]))

    out.append(_confusion_section(d))

    kept_none = d.nothing_kept("the breakdown of all queries is next to this one")
    no_types = no_ground_truth("error types")
    trend_kept = t.errors[t.errors["kept_by"] == d.kept_by]
    out.append(("Error breakdown (Fig. 5)",
                "By object size. " + error_glossary(),
                [("errors_kept", error_figures.error_bars(
                    d.errors_kept.table, "size", f"Error types of the {d.filter_name}-kept pseudo-labels",
                    empty_message=no_types if not d.errors_all.has_gt else kept_none)),
                 ("errors_all", error_figures.error_bars(d.errors_all.table, "size", "Error types of all queries",
                                                         empty_message=no_types)),
                 ("errors_trend", error_figures.error_trend(
                     trend_kept, kept=True, current=d.iteration,
                     empty_message=no_types if not t.errors["count"].any() else
                     f"The run's {filter_label(d.kept_by)} kept no pseudo-label with known ground truth at any "
                     "recorded checkpoint: see the breakdown of all queries above."))]))

    out.append(_dicc_section(d))

    no_maps = "no query with a recorded uncertainty map at this checkpoint"
    out.append(("Uncertainty (Eq. 10)",
                f"Over {d.scope}: mean pixel uncertainty u inside the mask, on its inner boundary band and "
                "where it overlaps another kept mask; its relation to IoU; and u by distance to the mask edge "
                f"on a sample of {d.profile.attrs.get('n_masks', 0)} masks.",
                [("uncertainty_regions", uncertainty_figures.region_bars(d.regions, no_maps)),
                 ("uncertainty_iou", uncertainty_figures.iou_by_uncertainty(
                     d.unc_iou.curve, no_ground_truth("IoUs") if not q.has_gt else no_maps)),
                 ("uncertainty_profile", uncertainty_figures.distance_profile(d.profile, no_maps))]))

    accuracy = t.confusion if d.dicc_in_run else t.confusion[~t.confusion["use_dicc"].astype(bool)]
    accuracy = accuracy.assign(labels=accuracy["use_dicc"].map({False: "teacher", True: "after DICC"}))
    kept_never = (f"the run's {filter_label(d.kept_by)} kept no pseudo-label on a GT at any recorded checkpoint")
    trends = [
        ("trend_quality", quality_figures.correlation_trend(t.quality, no_gt)),
        ("trend_thresholds", threshold_figures.f1_trend(t.thresholds, no_ground_truth("F1", plural=False))),
        ("trend_class_accuracy", confusion_figures.class_accuracy_trend(
            accuracy, no_ground_truth("class accuracy", plural=False) if not q.has_gt else kept_never))]
    if d.dicc_in_run:
        trends.append(("trend_dicc", dicc_figures.dicc_trend(t.dicc, kept_only=False)))
    trends.append(("trend_uncertainty", uncertainty_figures.uncertainty_trend(
        t.uncertainty, kept_never.replace(" on a GT", ""))))
    out.append(("Across checkpoints", "" if d.dicc_in_run else dicc_reason(False, d.n_kept), trends))

    no_log = "no training log: the run folder has no metrics.jsonl (records made with `pldc pseudo-labels`?)"
    terms = [c for c in d.metrics.columns if "loss" in c and c not in training_figures.LOSSES]
    items = [("training_losses", training_figures.loss_figure(d.metrics, d.burn_in, no_log))]
    if terms:
        items.append(("training_loss_terms", training_figures.training_curves(d.metrics, terms, "Loss terms")))
    items += [("training_counts", training_figures.count_figure(d.metrics, d.burn_in, no_log)),
              ("training_settings", training_figures.training_curves(
                  d.metrics, training_figures.SETTINGS, "DICC weight, learning rate, speed",
                  training_figures.LOG_NAMES, burn_in=d.burn_in,
                  empty_message=no_log if d.metrics.empty else "metrics.jsonl logs no DICC weight, lr or time")),
              ("training_eval", training_figures.evaluation_figure(d.evals)),
              ("training_eval_per_class", training_figures.per_class_figure(per_class_ap(d.evals)))]
    out.append(("Training", "From metrics.jsonl and eval.jsonl.", items))
    return out


def _confusion_section(d: ReportData) -> tuple[str, str, list]:
    names = d.class_names
    if d.scope_kept_by is None:
        scope = "All queries"
        items = [("confusion_scope", _why(d.nothing_kept("the matrices below count all queries instead")))]
    else:
        scope = f"{d.filter_name}-kept pseudo-labels"
        items = []
    suffix = "" if d.scope_kept_by is not None else " — all queries"
    items.append(("confusion", confusion_figures.confusion_heatmap(d.confusion, names).update_layout(
        title_text=f"Confusion: pseudo-label class vs GT class{suffix}")))
    if d.confusion_dicc is not None:
        items.append(("confusion_dicc", confusion_figures.confusion_heatmap(d.confusion_dicc, names).update_layout(
            title_text=f"Confusion: pseudo-label class vs GT class (after DICC){suffix}")))
    pairs = most_confused(d.confusion, top=10)
    if not d.confusion.has_gt:
        items.append(("confusion_pairs", _why(no_ground_truth("confused pairs"))))
    elif pairs.empty:
        items.append(("confusion_pairs", _why(
            f"No confused pair: every one of the {d.confusion.n_pseudo_labels:,} pseudo-labels that lies on a GT "
            "(IoU > 0.5) has that GT's class.")))
    else:
        items.append(("confusion_pairs", _table(pairs, names, ("pred_class", "gt_class"))))
    return ("Confusion of pseudo-label classes (Fig. 3)",
            f"{scope}. A pseudo-label on a GT (IoU > 0.5) counts in that GT's column, any other in the background "
            "column; GT instances no pseudo-label matched fill the background row. Rows are normalised.", items)


def _clip_items(by_mode: dict[str, ClipPrecisionRecall], names: list[str]) -> list:
    """CLIP on GT crops: a table of the modes' mean figures (percent) and the per-class bars."""
    summary = mode_summary(by_mode)
    for column in ("accuracy_pct", "mean_precision_pct", "mean_recall_pct"):
        summary[column] = ["n/a" if np.isnan(v) else f"{v:.1f}%" for v in summary[column]]
    summary.columns = ["DICC mode", "GT crops", "accuracy", "mean precision", "classes predicted", "mean recall"]
    return [("clip_modes", _table(summary)),
            ("clip_pr", dicc_figures.clip_pr_by_mode({m: pr.per_class for m, pr in by_mode.items()}, names))]


def _dicc_section(d: ReportData) -> tuple[str, str, list]:
    names = d.class_names
    title = "DICC: class corrections"
    clip = _clip_items(d.clip, names) if d.clip is not None else []
    if not d.dicc_in_run or not d.dicc.ran:
        return title, dicc_reason(d.dicc_in_run, d.n_kept, d.manifest.phase), clip
    items = [("dicc_summary", _table(pd.DataFrame([d.dicc.summary]))),
             ("dicc_classes", dicc_figures.dicc_class_bars(
                 d.dicc.per_class, names, empty_message=f"DICC ran on {d.dicc.summary['n_ran']:,} pseudo-labels "
                                                        "and kept every teacher class"))]
    if len(d.dicc.transitions):
        items.append(("dicc_transitions", _table(d.dicc.transitions.head(15), names, ("from_class", "to_class"))))
    return (title, "Judged against the GT a pseudo-label covers (IoU > 0.5): fixed = wrong to right, broken = right "
                   "to wrong, neutral = wrong to another wrong.", items + clip)


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
.summary{background:#f3f6fa;border-left:4px solid #1f77b4;padding:.6em 1.2em}
.summary li{margin:.3em 0}.table{border-collapse:collapse;font-size:.85em;margin:1em 0}
.table td,.table th{padding:.2em .6em;border-bottom:1px solid #ddd;text-align:right}
h2{margin-top:2em;border-bottom:1px solid #ccc}.intro{color:#555}
.why{background:#fff8e1;border-left:4px solid #f0a500;padding:.4em 1em}"""


def render_html(d: ReportData, secs) -> str:
    """The report page; plotly.js is inlined once in the head."""
    title = f"PL-DC report: {d.manifest.run or d.run_dir.name}, iteration {d.iteration:,}"
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
                        help="parquet or CSV with columns gt_class, clip_pred and optionally mode (CLIP on GT "
                             "crops per DICC mode, Table II; "
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
    print(f"pldc report: wrote {path} (open it in a browser; the figures as PNG are in {path.parent / 'figures'})"
          if not args.no_png else f"pldc report: wrote {path} (open it in a browser)")
    return 0
