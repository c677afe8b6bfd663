"""Figures of ``workbench.dicc_report``: what DICC changed, per class and across checkpoints; CLIP alone on GT
crops (Table II); the class probabilities DICC fuses for one pseudo-label (Eq. 9)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.figures.charts import grouped_bars
from workbench.figures.style import MARGIN, MODEBAR, SERIES_COLORS, class_labels, empty, legend_below

FRACTION_AXIS = "precision / recall (0 to 1)"
# as the trend's lines: fixed green, broken red, neutral grey; changes that cannot be judged light grey
CHANGE_COLORS = {"fixed": SERIES_COLORS[2], "broken": SERIES_COLORS[3], "neutral": SERIES_COLORS[7],
                 "changed, on no GT": "#c7c7c7"}


def dicc_class_bars(per_class: pd.DataFrame, class_names: list[str] | None = None, top: int = 20,
                    empty_message: str = "DICC changed no class") -> go.Figure:
    """Per teacher class, how many DICC changes fixed, broke or left wrong the class."""
    title = "DICC changes per teacher class"
    changed = per_class[per_class["changed_from"] > 0] if not per_class.empty else per_class
    if changed.empty:
        return empty(title, empty_message)
    changed = changed.sort_values("changed_from", ascending=False, kind="stable").head(top)
    # the changes only: a class's unchanged pseudo-labels on no GT are not among them
    changed = changed.drop(columns="unjudged").rename(columns={"changed_unjudged": "changed, on no GT"})
    return grouped_bars(changed, "from_class", ["fixed", "broken", "neutral", "changed, on no GT"], title,
                        "pseudo-labels changed", x_labels=class_labels(changed["from_class"], class_names),
                        barmode="stack", xaxis_title="teacher class", colors=CHANGE_COLORS)


def dicc_trend(dicc: pd.DataFrame, kept_only: bool = True,
               empty_message: str = "DICC ran at no recorded checkpoint") -> go.Figure:
    """Fixed, broken, neutral and net class changes of DICC at each checkpoint (columns iteration, n_ran,
    fixed, broken, neutral, net), of the pseudo-labels the run kept (``kept_only``) or of all queries;
    ``empty_message`` says why there are none."""
    title = "DICC across checkpoints"
    if dicc.empty or dicc["n_ran"].sum() == 0:
        return empty(title, empty_message)
    dicc = dicc.sort_values("iteration", kind="stable")
    fig = go.Figure()
    for column, color in (("fixed", 2), ("broken", 3), ("neutral", 7), ("net", 0)):
        fig.add_trace(go.Scatter(x=dicc["iteration"].to_numpy(), y=dicc[column].to_numpy(), mode="lines+markers",
                                 name="net (fixed - broken)" if column == "net" else column,
                                 line=dict(color=SERIES_COLORS[color], dash="dot" if column == "net" else "solid")))
    scope = "the pseudo-labels kept by the run" if kept_only else "all queries"
    fig.update_layout(title=dict(text=title, subtitle=dict(text=scope)), xaxis_title="iteration",
                      yaxis_title="pseudo-labels", height=360,
                      legend=legend_below(-0.25), margin=dict(MARGIN, t=70), modebar=MODEBAR)
    return fig


def clip_pr_bars(per_class: pd.DataFrame, class_names: list[str] | None = None) -> go.Figure:
    """CLIP's precision and recall per class on GT crops; a class without a bar says why."""
    no_bar = []
    for support, predicted in zip(per_class["support"], per_class["predicted"]):
        why = []
        if support == 0:
            why.append("no GT crop")
        if predicted == 0:
            why.append("never predicted")
        no_bar.append(("no bar: " + ", ".join(why)) if why else "")
    fig = grouped_bars(per_class, "class", ["precision", "recall"], "CLIP on ground-truth crops", FRACTION_AXIS,
                       x_labels=class_labels(per_class["class"], class_names), no_bar=no_bar,
                       empty_message="no ground-truth crop was classified", xaxis_title="class")
    if any(no_bar):
        fig.update_layout(title=dict(subtitle=dict(
            text="no recall for a class without ground-truth crops; no precision for a class CLIP never predicted")))
    return fig


def clip_pr_by_mode(by_mode: dict[str, pd.DataFrame], class_names: list[str] | None = None) -> go.Figure:
    """Table II per DICC mode: ``by_mode`` maps a mode to its ``per_class`` table. One mode is
    ``clip_pr_bars``; several are compared in two panels, precision and recall, a bar per mode."""
    if len(by_mode) == 1:
        return clip_pr_bars(next(iter(by_mode.values())), class_names)
    title = "CLIP on ground-truth crops, per DICC mode"
    if not by_mode or all(frame.empty for frame in by_mode.values()):
        return empty(title, "no ground-truth crop was classified")
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.05,
                        subplot_titles=["precision", "recall"])
    for i, (mode, frame) in enumerate(by_mode.items()):
        labels = class_labels(frame["class"], class_names)
        for col, column in enumerate(("precision", "recall"), start=1):
            fig.add_trace(go.Bar(x=labels, y=frame[column].to_numpy(), name=mode, legendgroup=mode,
                                 showlegend=col == 1, marker_color=SERIES_COLORS[i % len(SERIES_COLORS)]),
                          row=1, col=col)
    fig.update_yaxes(range=[0, 1.02])
    fig.update_yaxes(title_text=FRACTION_AXIS, row=1, col=1)
    fig.update_xaxes(title_text="class")
    fig.update_layout(title=dict(text=title, subtitle=dict(
        text="no recall bar for a class without ground-truth crops; no precision bar for a class a mode never "
             "predicts")), barmode="group", height=440, legend=dict(title=dict(text="DICC mode")))
    return fig


def class_probability_bars(frame: pd.DataFrame, class_names: list[str], title: str) -> go.Figure:
    """One pseudo-label's probability per class: the teacher's, CLIP's and their fusion (Eq. 9), as
    horizontal bars (``frame``: class and any of teacher, clip, fused)."""
    if frame.empty:
        return empty(title, "no class probabilities recorded", height=260)
    names = class_labels(frame["class"], class_names)
    fig = go.Figure()
    colors = {"teacher": SERIES_COLORS[0], "clip": SERIES_COLORS[2], "fused": SERIES_COLORS[3]}
    labels = {"teacher": "teacher", "clip": "CLIP", "fused": "fused (Eq. 9)"}
    for column in ("teacher", "clip", "fused"):
        if column in frame:
            fig.add_trace(go.Bar(y=names, x=frame[column].to_numpy(np.float64), name=labels[column], orientation="h",
                                 marker_color=colors[column], hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_layout(title=dict(text=title, font_size=13), barmode="group", height=80 + 45 * len(frame),
                      xaxis=dict(title="probability (0 to 1)", range=[0, 1]), yaxis=dict(autorange="reversed"),
                      legend=legend_below(-0.3), margin=dict(MARGIN, l=90, t=50),
                      modebar=MODEBAR)
    return fig
