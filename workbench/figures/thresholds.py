"""Figures of ``workbench.thresholds``: what the filter would keep, and how well, at other thresholds (Table 4a).

The report draws the sweeps (a heat map over (c_t, m_t), the coupled filter's curves over s_t); the app
draws the what-if around the sliders' setting and the same thresholds at several checkpoints.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.explain import best_thresholds
from workbench.figures.charts import axes_row, line_figure
from workbench.figures.style import MARGIN, MODEBAR, SERIES_COLORS, empty, legend_below, number

CURRENT = "#d62728"
FRACTION_AXIS = "fraction (0 to 1)"
AXIS_NAMES = {"c_t": "class threshold c_t", "m_t": "mask threshold m_t", "s_t": "score threshold s_t"}


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
    unit = "pseudo-labels kept" if metric == "kept" else metric
    fig = go.Figure(go.Heatmap(z=z, x=grid.columns.to_numpy(float), y=grid.index.to_numpy(float),
                               colorscale="Viridis", colorbar=dict(title=dict(text=unit)),
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
    fig.update_layout(title=title, xaxis_title=AXIS_NAMES["c_t"], yaxis_title=AXIS_NAMES["m_t"], height=520,
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
    fig.update_xaxes(title_text=AXIS_NAMES["s_t"])
    fig.update_yaxes(title_text=FRACTION_AXIS, row=1, col=1)
    fig.update_yaxes(title_text="pseudo-labels", row=1, col=2)
    fig.update_layout(title=title, height=400)
    return fig


def what_if_figure(curves: dict[str, pd.DataFrame], point: dict, run_point: dict | None = None,
                   has_gt: bool = True, best: dict | None = None) -> go.Figure:
    """Kept, precision and recall as the thresholds move: ``curves`` maps the threshold that varies ('c' and
    'm' for DDTF, 's' for the coupled filter) to its sweep through the current setting ``point``, which is
    marked in red; the run's own setting ``run_point`` is a black cross. Built as one figure spec (an app
    redraws it on every slider move).

    Where precision is undefined the figure says why: no ground truth (``has_gt`` False), or nothing kept
    at this setting, then with the ``best`` setting by F1 as the fix."""
    panels = (("kept", "kept", "pseudo-labels"), ("precision", "precision", None), ("recall", "recall", None))
    line_names = {"c": "vary c_t", "m": "vary m_t", "s": "vary s_t"}
    first_axis = next(iter(curves))
    traces, layout = [], {"annotations": []}
    for col, ((metric, label, unit), domain) in enumerate(zip(panels, axes_row(3)), start=1):
        suffix = "" if col == 1 else str(col)
        layout[f"xaxis{suffix}"] = dict(domain=domain, anchor=f"y{suffix}", range=[0, 1], title=dict(text="threshold"))
        layout[f"yaxis{suffix}"] = dict(anchor=f"x{suffix}", **({"title": dict(text=unit)} if unit else {}),
                                        **({} if metric == "kept" else {"range": [0, 1.02]}))
        layout["annotations"].append(dict(text=label, x=sum(domain) / 2, xref="paper", y=1.0, yref="paper",
                                          yanchor="bottom", showarrow=False, font=dict(size=13)))
        for i, (axis, frame) in enumerate(curves.items()):
            traces.append(dict(type="scatter", x=frame[f"{axis}_t"].to_numpy(np.float64),
                               y=frame[metric].to_numpy(np.float64), mode="lines", name=line_names[axis],
                               legendgroup=axis, showlegend=col == 1, xaxis=f"x{suffix}", yaxis=f"y{suffix}",
                               line=dict(color=SERIES_COLORS[i], dash="solid" if i == 0 else "dot")))
            for p, name, marker in ((point, "current", dict(color=CURRENT, size=11)),
                                    (run_point, "the run's", dict(color="black", size=11, symbol="x"))):
                if p is None or p.get(f"{axis}_t") is None or p.get(metric) is None:
                    continue
                traces.append(dict(type="scatter", x=[p[f"{axis}_t"]], y=[p[metric]], mode="markers", name=name,
                                   legendgroup=name, showlegend=col == 1 and axis == first_axis, marker=marker,
                                   xaxis=f"x{suffix}", yaxis=f"y{suffix}",
                                   hovertemplate=f"{name}: {metric} %{{y:.3f}}<extra></extra>"))
    title = (f"What-if: {int(point.get('kept', 0)):,} kept, precision {number(point.get('precision'))}, "
             f"recall {number(point.get('recall'))}, F1 {number(point.get('f1'))}")
    subtitle = "precision: share of the kept that are Cor (correct); recall: share of the GT they cover"
    if run_point is not None:
        subtitle = (f"at the run's thresholds: {int(run_point.get('kept', 0)):,} kept, precision "
                    f"{number(run_point.get('precision'))}, recall {number(run_point.get('recall'))}")
    if point.get("precision") is None or np.isnan(point.get("precision", np.nan)):
        if not has_gt:
            why = "precision and recall need ground truth,<br>and these records hold none"
        else:
            why = "nothing is kept at these thresholds:<br>no precision (0 of 0 kept are correct)"
            hint = best_thresholds(best)
            if hint:
                why += "<br>" + hint.replace("the best what-if thresholds by F1, ", "best by F1: ")
        layout["annotations"].append(dict(text=why, x=0.69, y=0.5, xref="paper", yref="paper", showarrow=False,
                                          bgcolor="rgba(255,255,255,0.85)", font=dict(size=12)))
    layout.update(title=dict(text=title, font=dict(size=14), subtitle=dict(text=subtitle, font=dict(size=11))),
                  height=350, uirevision="whatif", legend=dict(orientation="h", y=-0.25),
                  margin=dict(MARGIN, t=90), modebar=MODEBAR)
    return go.Figure(dict(data=traces, layout=layout))


def what_if_by_checkpoint(points: dict[str, dict]) -> go.Figure:
    """The what-if metrics of the same thresholds at several checkpoints (``points``: label -> metrics), side
    by side."""
    title = "The same thresholds at each checkpoint"
    metrics = ["precision", "recall", "f1", "class_accuracy", "mean_iou"]
    fig = make_subplots(rows=1, cols=2, column_widths=[0.75, 0.25], subplot_titles=["quality of the kept set",
                                                                                    "pseudo-labels kept"])
    for i, (label, point) in enumerate(points.items()):
        fig.add_trace(go.Bar(x=metrics, y=[point.get(k, np.nan) for k in metrics], name=label, legendgroup=label,
                             marker_color=SERIES_COLORS[i]), row=1, col=1)
        fig.add_trace(go.Bar(x=["kept"], y=[point.get("kept", 0)], name=label, legendgroup=label, showlegend=False,
                             marker_color=SERIES_COLORS[i]), row=1, col=2)
    fig.update_yaxes(range=[0, 1], title_text=FRACTION_AXIS, row=1, col=1)
    fig.update_yaxes(title_text="pseudo-labels", row=1, col=2)
    nothing = [label for label, point in points.items() if not point.get("kept")]
    subtitle = (f"{' and '.join(nothing)}: nothing kept at these thresholds, so no precision, class accuracy or "
                "mean IoU to draw" if nothing else "")
    fig.update_layout(title=dict(text=title, subtitle=dict(text=subtitle)), barmode="group", height=340,
                      legend=legend_below(-0.2), margin=dict(MARGIN, t=70), modebar=MODEBAR)
    return fig


def f1_trend(points: pd.DataFrame, empty_message: str) -> go.Figure:
    """F1 of the best thresholds and of the run's at each checkpoint (``Trends.thresholds``)."""
    names = {"best_ddtf": "best DDTF pair", "run_ddtf": "the run's DDTF pair",
             "best_coupled": "best coupled s_t", "run_coupled": "the run's s_t"}
    return line_figure(points, "iteration", "f1", "point", "F1: best vs the run's", "F1 (0 to 1)", "iteration",
                       empty_message=empty_message, names=names)
