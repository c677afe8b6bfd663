"""Figures of ``workbench.quality``: do s, c or m predict mask IoU? (Fig. 2)"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pldc_core.records.schema import ERROR_TYPES
from workbench.explain import error_label, error_rule
from workbench.figures.charts import grouped_bars, line_figure, subsample
from workbench.figures.style import ERROR_COLORS, class_labels, empty
from workbench.quality import MIN_ROWS as MIN_CORRELATION_ROWS

SCORE_LABELS = {"s": "instance score s = c·m", "c": "class quality c", "m": "mask quality m"}
CORRELATION_AXIS = "correlation with IoU (-1 to 1)"
MAX_SCATTER_POINTS = 4000


def quality_scatter(scatter: pd.DataFrame, thresholds: dict | None = None,
                    max_points: int = MAX_SCATTER_POINTS, seed: int = 0) -> go.Figure:
    """s, c and m against IoU, coloured by error type, with the run's thresholds (``{"c_t", "m_t", "s_t"}``).

    A seeded random subsample of at most ``max_points`` queries is drawn; the title says how many."""
    title = "Quality scores vs IoU with the best GT"
    if scatter.empty:
        return empty(title, "no queries with known ground truth")
    points = subsample(scatter, max_points, seed)
    fig = make_subplots(rows=1, cols=3, shared_yaxes=True, horizontal_spacing=0.04)
    types = points["error_type"].fillna("unknown") if "error_type" in points else pd.Series("all", index=points.index)
    for col, score in enumerate(("s", "c", "m"), start=1):
        for etype in [t for t in ERROR_TYPES if (types == t).any()]:
            sel = points[types == etype]
            fig.add_trace(go.Scattergl(x=sel[score].to_numpy(), y=sel["iou"].to_numpy(), mode="markers",
                                       name=error_label(etype), legendgroup=etype, showlegend=col == 1,
                                       hovertemplate=f"{score} %{{x:.3f}} · IoU %{{y:.3f}}<br>"
                                                     f"{error_rule(etype)}<extra></extra>",
                                       marker=dict(size=4, opacity=0.5, color=ERROR_COLORS[etype])),
                          row=1, col=col)
        line = (thresholds or {}).get(f"{score}_t")
        if line is not None:
            fig.add_vline(x=float(line), line_dash="dash", line_color="#000000", row=1, col=col)
        fig.update_xaxes(title_text=SCORE_LABELS[score], row=1, col=col)
    fig.update_xaxes(range=[0, 1.02])
    fig.update_yaxes(range=[0, 1.02], title_text="mask IoU with the best GT", row=1, col=1)
    shown = f"{len(points):,} of {len(scatter):,} queries"
    if len(points) < len(scatter):
        shown += f", sampled with seed {seed}"
    fig.update_layout(title=f"{title} ({shown}; dashed: the run's thresholds)", height=420)
    return fig


def correlation_bars(overall: pd.DataFrame) -> go.Figure:
    """Pearson and Spearman correlation of s, c, m with IoU."""
    return grouped_bars(overall, "score", ["pearson", "spearman"], "Correlation with IoU", CORRELATION_AXIS,
                        x_labels=[SCORE_LABELS[s] for s in overall["score"]],
                        empty_message="no queries with known ground truth")


def class_correlation_bars(per_class: pd.DataFrame, class_names: list[str] | None = None,
                           top: int = 30, method: str = "spearman") -> go.Figure:
    """Per predicted class, the correlation of c and of m with IoU (classes with most rows first).

    A class without a bar says why: too few of its queries have known ground truth, or a score is
    constant over them."""
    if per_class.empty:
        return empty("Correlation with IoU per class", "no queries with known ground truth")
    wide = per_class.pivot_table(index="pred_class", columns="score", values=[method, "n"], dropna=False)
    wide = wide.sort_values(("n", "c"), ascending=False, kind="stable").head(top)
    frame = pd.DataFrame({"pred_class": wide.index, "c": wide[(method, "c")].to_numpy(),
                          "m": wide[(method, "m")].to_numpy(), "n": wide[("n", "c")].to_numpy()})
    no_bar = []
    for c, m, n in zip(frame["c"], frame["m"], frame["n"]):
        if not (np.isnan(c) or np.isnan(m)):
            no_bar.append("")
        elif n < MIN_CORRELATION_ROWS:
            no_bar.append(f"no bar: {int(n)} with GT")
        else:
            no_bar.append("no bar: constant " + " and ".join(s for s, v in (("c", c), ("m", m)) if np.isnan(v)))
    fig = grouped_bars(frame, "pred_class", ["c", "m"],
                       f"{method.title()} correlation with IoU per predicted class", CORRELATION_AXIS,
                       x_labels=class_labels(frame["pred_class"], class_names), no_bar=no_bar,
                       xaxis_title="predicted class")
    if any(no_bar):
        fig.update_layout(title=dict(subtitle=dict(
            text=f"no bar: fewer than {MIN_CORRELATION_ROWS} queries of the class with known ground truth, "
                 "or a score that never varies")))
    return fig


def correlation_trend(quality: pd.DataFrame, empty_message: str) -> go.Figure:
    """Spearman correlation of s, c and m with IoU at each checkpoint (``Trends.quality``)."""
    return line_figure(quality, "iteration", "spearman", "score", "Spearman correlation with IoU",
                       CORRELATION_AXIS, "iteration", empty_message=empty_message,
                       names=SCORE_LABELS)
