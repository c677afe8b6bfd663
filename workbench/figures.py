"""Plotly figures over the analysis results (``png.write_png`` draws any of them as a PNG).

Each builder takes the data an analysis returned and only draws it. Figures stay light for
large tables: scatter plots draw a seeded random subsample (the title says how many of how
many), heatmaps keep the most confused classes.
"""
from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pldc_core.records.schema import ERROR_TYPES
from pldc_core.units import format_ap
from workbench.explain import error_label, error_rule, no_ground_truth
from workbench.quality import MIN_ROWS as MIN_CORRELATION_ROWS

ERROR_COLORS = {"Cor": "#2ca02c", "Sim": "#ff7f0e", "Oth": "#d62728", "Loc": "#9467bd",
                "BG": "#7f7f7f", "Both": "#8c564b"}
SERIES_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22", "#17becf"]
SCORE_LABELS = {"s": "instance score s = c·m", "c": "class quality c", "m": "mask quality m"}
MAX_SCATTER_POINTS = 4000


def class_labels(labels, class_names: list[str] | None) -> list[str]:
    """The names of class indices (``background`` for -1, the index itself when unnamed)."""
    out = []
    for k in labels:
        k = int(k)
        if k < 0:
            out.append("background")
        elif class_names is not None and k < len(class_names):
            out.append(class_names[k])
        else:
            out.append(str(k))
    return out


def empty(title: str, message: str, height: int = 300, wrap: int = 90) -> go.Figure:
    """A figure with no data that says why (``message``, broken into lines of at most ``wrap`` characters)
    in its middle."""
    fig = go.Figure()
    lines = textwrap.wrap(message, wrap, break_long_words=False, break_on_hyphens=False) or [""]
    fig.add_annotation(text="<br>".join(lines), x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False)
    fig.update_layout(title=title, xaxis_visible=False, yaxis_visible=False, height=height)
    return fig


def subsample(frame: pd.DataFrame, max_points: int = MAX_SCATTER_POINTS, seed: int = 0) -> pd.DataFrame:
    """At most ``max_points`` rows, chosen at random with ``seed`` (order kept)."""
    if len(frame) <= max_points:
        return frame
    take = np.sort(np.random.default_rng(seed).choice(len(frame), size=max_points, replace=False))
    return frame.iloc[take]


def quality_scatter(scatter: pd.DataFrame, thresholds: dict | None = None,
                    max_points: int = MAX_SCATTER_POINTS, seed: int = 0) -> go.Figure:
    """Fig. 2: s, c and m against IoU, coloured by error type, with the run's thresholds."""
    title = "Quality scores vs IoU with the best GT"
    if scatter.empty:
        return empty(title, "no queries with known ground truth")
    points = subsample(scatter, max_points, seed)
    fig = make_subplots(rows=1, cols=3, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[SCORE_LABELS[s] for s in ("s", "c", "m")])
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
    fig.update_xaxes(range=[0, 1.02])
    fig.update_yaxes(range=[0, 1.02], title_text="IoU", row=1, col=1)
    shown = f"{len(points):,} of {len(scatter):,} queries" + (f", sampled with seed {seed}" if len(points) < len(scatter) else "")
    fig.update_layout(title=f"{title} ({shown}; dashed: the run's thresholds)", height=420)
    return fig


def grouped_bars(frame: pd.DataFrame, x: str, ys: list[str], title: str, yaxis_title: str = "",
                 x_labels: list[str] | None = None, barmode: str = "group",
                 empty_message: str = "nothing to show", no_bar: list[str] | None = None) -> go.Figure:
    """One bar trace per column of ``ys`` over the categories in column ``x``.

    ``no_bar``, one entry per category ('' for none), says why a category has no bar (a NaN value);
    it is written under the category's name, so that a missing bar is never left unexplained."""
    if frame.empty:
        return empty(title, empty_message)
    labels = x_labels if x_labels is not None else [str(v) for v in frame[x]]
    if no_bar is not None:
        labels = [f"{label}<br><i>{why}</i>" if why else label for label, why in zip(labels, no_bar)]
    fig = go.Figure([go.Bar(x=labels, y=frame[y].to_numpy(), name=y,
                            marker_color=ERROR_COLORS.get(y, SERIES_COLORS[i % len(SERIES_COLORS)]))
                     for i, y in enumerate(ys)])
    fig.update_layout(title=title, barmode=barmode, yaxis_title=yaxis_title, height=400)
    return fig


def correlation_bars(overall: pd.DataFrame) -> go.Figure:
    """Pearson and Spearman correlation of s, c, m with IoU."""
    return grouped_bars(overall, "score", ["pearson", "spearman"], "Correlation with IoU",
                        "correlation", x_labels=[SCORE_LABELS[s] for s in overall["score"]],
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
                       f"{method.title()} correlation with IoU per predicted class", "correlation",
                       x_labels=class_labels(frame["pred_class"], class_names), no_bar=no_bar)
    if any(no_bar):
        fig.update_layout(title=dict(subtitle=dict(
            text=f"no bar: fewer than {MIN_CORRELATION_ROWS} queries of the class with known ground truth, "
                 "or a score that never varies")))
    return fig


def threshold_heatmap(sweep: pd.DataFrame, metric: str = "f1", best: dict | None = None,
                      run: dict | None = None, empty_message: str | None = None) -> go.Figure:
    """A metric of the DDTF sweep over (c_t, m_t), with the best pair and the run's pair marked.

    The marks are open outlines around their cell, so the cell's value stays readable; the legend
    sits under the plot, clear of the colour bar."""
    title = f"DDTF threshold sweep: {metric}"
    if sweep.empty or sweep[metric].isna().all():
        return empty(title, empty_message or f"{metric} needs ground truth")
    grid = sweep.pivot(index="m_t", columns="c_t", values=metric)
    z = grid.to_numpy(dtype=float)
    fig = go.Figure(go.Heatmap(z=z, x=grid.columns.to_numpy(float), y=grid.index.to_numpy(float),
                               colorscale="Viridis", colorbar=dict(title=dict(text=metric)),
                               text=np.round(z, 2), texttemplate="%{text}", showlegend=False,
                               hovertemplate=f"c_t %{{x}} · m_t %{{y}}: {metric} %{{z:.3f}}<extra></extra>"))
    for point, name, symbol, color, size in ((best, "best by F1", "square-open", "#d62728", 34),
                                             (run, "the run's pair", "circle-open", "#ff00ff", 42)):
        if point is not None:
            value = point.get(metric)
            shown = "n/a" if value is None or np.isnan(value) else f"{value:.3f}"
            fig.add_trace(go.Scatter(x=[point["c_t"]], y=[point["m_t"]], mode="markers", name=name,
                                     marker=dict(symbol=symbol, size=size, color=color, line=dict(width=3)),
                                     hovertemplate=f"{name}: c_t %{{x}} · m_t %{{y}}: {metric} {shown}"
                                                   "<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="c_t", yaxis_title="m_t", height=520,
                      legend=dict(orientation="h", x=0, xanchor="left", y=-0.16, yanchor="top"),
                      margin=dict(b=110))
    return fig


def threshold_curves(coupled: pd.DataFrame, run_s_t: float | None = None) -> go.Figure:
    """The coupled sweep: precision, recall, F1, class accuracy, and the number kept, vs s_t."""
    title = "Coupled threshold sweep (s >= s_t)"
    if coupled.empty:
        return empty(title, "no thresholds")
    fig = make_subplots(rows=1, cols=2, subplot_titles=["quality of the kept set", "pseudo-labels kept"])
    for i, metric in enumerate(("precision", "recall", "f1", "class_accuracy")):
        fig.add_trace(go.Scatter(x=coupled["s_t"].to_numpy(), y=coupled[metric].to_numpy(),
                                 mode="lines+markers", name=metric, line_color=SERIES_COLORS[i]),
                      row=1, col=1)
    fig.add_trace(go.Scatter(x=coupled["s_t"].to_numpy(), y=coupled["kept"].to_numpy(),
                             mode="lines+markers", name="kept", line_color=SERIES_COLORS[4]), row=1, col=2)
    if run_s_t is not None:
        for col in (1, 2):
            fig.add_vline(x=float(run_s_t), line_dash="dash", line_color="#000000", row=1, col=col)
    fig.update_xaxes(title_text="s_t")
    fig.update_layout(title=title, height=400)
    return fig


def confusion_heatmap(confusion, class_names: list[str] | None = None, normalized: bool = True,
                      max_classes: int = 30, empty_message: str | None = None) -> go.Figure:
    """Fig. 3: pseudo-label class (rows) vs GT class (columns), background last.

    With more than ``max_classes`` classes, only those with the most off-diagonal mass are
    kept (the paper shows 29 + background). With no pseudo-label to count, the figure says
    ``empty_message`` (why, and what to look at instead) rather than drawing an empty matrix.
    """
    title = "Confusion: pseudo-label class vs GT class" + (" (after DICC)" if confusion.use_dicc else "")
    if not confusion.has_gt:
        return empty(title, no_ground_truth("the confusion matrix", plural=False))
    if confusion.n_pseudo_labels == 0:
        return empty(title, empty_message or "no pseudo-label to count")
    counts = confusion.counts
    labels = [k for k in counts.index if k >= 0]
    if len(labels) > max_classes:
        off = counts.to_numpy().copy()
        np.fill_diagonal(off, 0)
        mass = off.sum(0)[:-1] + off.sum(1)[:-1]
        labels = sorted(np.argsort(-mass, kind="stable")[:max_classes].tolist())
    labels = labels + [-1]
    table = (confusion.normalized if normalized else counts).loc[labels, labels]
    names = class_labels(labels, class_names)
    z = table.to_numpy(dtype=float)
    fig = go.Figure(go.Heatmap(z=z, x=names, y=names, colorscale="Blues",
                               colorbar_title="row share" if normalized else "count",
                               hovertemplate="pred %{y}<br>GT %{x}<br>%{z}<extra></extra>",
                               text=np.round(z, 2) if len(labels) <= 15 else None,
                               texttemplate="%{text}" if len(labels) <= 15 else None))
    fig.update_layout(title=title + (" — row-normalised" if normalized else ""),
                      xaxis_title="GT class", yaxis_title="pseudo-label class",
                      yaxis_autorange="reversed", height=max(420, 22 * len(labels) + 160))
    return fig


def stacked_shares(table: pd.DataFrame, x: str, title: str, value: str = "share",
                   empty_message: str = "no predictions with a known error type") -> go.Figure:
    """Fig. 5: stacked bars of the error types' shares (or counts) over column ``x``; ``empty_message``
    says why there are none."""
    if table.empty or table[value].fillna(0).eq(0).all():
        return empty(title, empty_message)
    fig = go.Figure()
    for etype in ERROR_TYPES:
        sel = table[table["error_type"] == etype]
        fig.add_trace(go.Bar(x=[str(v) for v in sel[x]], y=sel[value].fillna(0).to_numpy(),
                             name=error_label(etype), marker_color=ERROR_COLORS[etype],
                             hovertemplate=f"%{{x}}: %{{y:.3f}}<br>{error_rule(etype)}<extra></extra>"))
    fig.update_layout(title=title, barmode="stack", yaxis_title=value, xaxis_title=x, height=400)
    return fig


def line_figure(frame: pd.DataFrame, x: str, y: str, color: str | None = None, title: str = "",
                yaxis_title: str | None = None, xaxis_title: str | None = None,
                empty_message: str = "nothing to show") -> go.Figure:
    """Lines of ``y`` over ``x``, one per value of ``color`` (trends, curves); ``empty_message`` says why
    there are none."""
    if frame.empty or frame[y].isna().all():
        return empty(title, empty_message)
    fig = go.Figure()
    groups = frame.groupby(color, sort=False) if color else [(y, frame)]
    for i, (name, group) in enumerate(groups):
        group = group.sort_values(x, kind="stable")
        fig.add_trace(go.Scatter(x=group[x].to_numpy(), y=group[y].to_numpy(), mode="lines+markers",
                                 name=str(name), line_color=SERIES_COLORS[i % len(SERIES_COLORS)]))
    fig.update_layout(title=title, xaxis_title=xaxis_title or x, yaxis_title=yaxis_title or y, height=380)
    return fig


def dicc_class_bars(per_class: pd.DataFrame, class_names: list[str] | None = None, top: int = 20,
                    empty_message: str = "DICC changed no class") -> go.Figure:
    """Per teacher class, how many DICC changes fixed, broke or left wrong the class."""
    title = "DICC changes per teacher class"
    changed = per_class[per_class["changed_from"] > 0] if not per_class.empty else per_class
    if changed.empty:
        return empty(title, empty_message)
    changed = changed.sort_values("changed_from", ascending=False, kind="stable").head(top)
    return grouped_bars(changed, "from_class", ["fixed", "broken", "neutral", "unjudged"], title,
                        "pseudo-labels", x_labels=class_labels(changed["from_class"], class_names),
                        barmode="stack")


def clip_pr_bars(per_class: pd.DataFrame, class_names: list[str] | None = None) -> go.Figure:
    """Table II: CLIP's precision and recall per class on GT crops; a class without a bar says why."""
    no_bar = []
    for support, predicted in zip(per_class["support"], per_class["predicted"]):
        why = []
        if support == 0:
            why.append("no GT crop")
        if predicted == 0:
            why.append("never predicted")
        no_bar.append(("no bar: " + ", ".join(why)) if why else "")
    fig = grouped_bars(per_class, "class", ["precision", "recall"], "CLIP on ground-truth crops",
                       x_labels=class_labels(per_class["class"], class_names), no_bar=no_bar,
                       empty_message="no ground-truth crop was classified")
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
    fig.update_layout(title=dict(text=title, subtitle=dict(
        text="no recall bar for a class without ground-truth crops; no precision bar for a class a mode never "
             "predicts")), barmode="group", height=440)
    return fig


def training_curves(log: pd.DataFrame, columns: list[str], title: str,
                    empty_message: str = "nothing logged") -> go.Figure:
    """One panel per logged column, against the iteration; ``empty_message`` says why there is none."""
    columns = [c for c in columns if c in log.columns and pd.to_numeric(log[c], errors="coerce").notna().any()]
    if log.empty or "iteration" not in log.columns or not columns:
        return empty(title, empty_message)
    fig = make_subplots(rows=len(columns), cols=1, shared_xaxes=True, subplot_titles=columns,
                        vertical_spacing=min(0.08, 0.5 / len(columns)))
    for i, column in enumerate(columns, start=1):
        values = pd.to_numeric(log[column], errors="coerce")
        fig.add_trace(go.Scatter(x=log["iteration"].to_numpy(), y=values.to_numpy(), mode="lines",
                                 name=column, showlegend=False,
                                 line_color=SERIES_COLORS[(i - 1) % len(SERIES_COLORS)]), row=i, col=1)
    fig.update_xaxes(title_text="iteration", row=len(columns), col=1)
    fig.update_layout(title=title, height=160 * len(columns) + 120)
    return fig


AP_AXIS_TITLE = "mask AP (%)"


def evaluation_figure(evals: pd.DataFrame, metrics=("AP", "AP50", "AP75", "APs", "APm", "APl"),
                      empty_message: str = "no evaluation logged (eval.jsonl is absent or empty)") -> go.Figure:
    """Mask AP (in percent) at each evaluation: one panel per metric, one trace per evaluated model
    (student, teacher), points marked and named in a legend."""
    title = "Evaluation: mask AP (%) at each evaluation"
    present = [m for m in metrics if m in evals.columns and pd.to_numeric(evals[m], errors="coerce").notna().any()]
    if evals.empty or "iteration" not in evals.columns or not present:
        return empty(title, empty_message)
    models = evals["model"].fillna("model").astype(str) if "model" in evals.columns else \
        pd.Series("model", index=evals.index)
    order = list(dict.fromkeys(models))
    cols = min(3, len(present))
    rows = -(-len(present) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=present, horizontal_spacing=0.08,
                        vertical_spacing=0.18 if rows > 1 else 0.1)
    for k, metric in enumerate(present):
        row, col = k // cols + 1, k % cols + 1
        for i, model in enumerate(order):
            sel = evals[models == model].sort_values("iteration", kind="stable")
            values = pd.to_numeric(sel[metric], errors="coerce").to_numpy(float)
            fig.add_trace(go.Scatter(x=sel["iteration"].to_numpy(), y=values, mode="lines+markers", name=model,
                                     legendgroup=model, showlegend=k == 0, marker=dict(size=9),
                                     line_color=SERIES_COLORS[i % len(SERIES_COLORS)],
                                     text=[format_ap(v) for v in values],
                                     hovertemplate=f"{model}, iteration %{{x}}: {metric} %{{text}}<extra></extra>"),
                          row=row, col=col)
        fig.update_yaxes(title_text=AP_AXIS_TITLE if col == 1 else None, ticksuffix="%", row=row, col=col)
        fig.update_xaxes(title_text="iteration" if row == rows else None, row=row, col=col)
    fig.update_layout(title=title, height=300 * rows + 120, legend=dict(title=dict(text="evaluated model")))
    return fig
