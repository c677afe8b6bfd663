"""Figures of a run's logs: the losses, the pseudo-labels per step and the training settings from
``metrics.jsonl``, the mask AP (%) from ``eval.jsonl`` (tables of ``trends.read_jsonl``)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pldc_core.units import format_ap
from workbench.figures.charts import thin
from workbench.figures.style import AP_AXIS_TITLE, MARGIN, MODEBAR, SERIES_COLORS, empty, legend_below
from workbench.trends import evaluated_models

LOSSES = ("loss", "loss_sup", "loss_unsup")
COUNTS = ("n_queries", "n_kept", "n_kept_ddtf", "n_kept_coupled", "n_dicc_changed")
SETTINGS = ("dicc_w", "lr", "sec_per_iter")
EVAL_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
LOG_NAMES = {"loss": "total", "loss_sup": "supervised", "loss_unsup": "unsupervised (PL-DC)",
             "n_queries": "queries", "n_kept": "kept (run's filter)", "n_kept_ddtf": "pass DDTF",
             "n_kept_coupled": "pass coupled", "n_dicc_changed": "changed by DICC",
             "dicc_w": "DICC weight w", "lr": "learning rate", "sec_per_iter": "time per iteration"}
LOG_UNITS = {"dicc_w": "w (0 to 1)", "lr": "learning rate", "sec_per_iter": "seconds"}


def _present(frame: pd.DataFrame, columns) -> list[str]:
    return [c for c in columns if c in frame.columns and pd.to_numeric(frame[c], errors="coerce").notna().any()]


def _unit(column: str) -> str:
    if column in LOG_UNITS:
        return LOG_UNITS[column]
    return "loss" if "loss" in column else ("queries per step" if column.startswith("n_") else column)


def training_curves(log: pd.DataFrame, columns, title: str, names: dict | None = None, panels: bool = True,
                    yaxis_title: str | None = None, burn_in: int | None = None,
                    empty_message: str = "nothing logged") -> go.Figure:
    """Logged ``columns`` against the iteration: one panel per column, titled with its unit (``panels``), or
    all in one panel with a legend (named through ``names``). A long log is thinned to bin means; the end
    of the burn-in (iteration ``burn_in``) is marked once reached; ``empty_message`` says why nothing is drawn."""
    columns = _present(log, columns)
    if log.empty or "iteration" not in log.columns or not columns:
        return empty(title, empty_message)
    points = thin(log)
    names = names or {}
    if panels:
        fig = make_subplots(rows=len(columns), cols=1, shared_xaxes=True,
                            subplot_titles=[names.get(c, c) for c in columns],
                            vertical_spacing=min(0.08, 0.5 / len(columns)))
    else:
        fig = go.Figure()
    for i, column in enumerate(columns, start=1):
        values = pd.to_numeric(points[column], errors="coerce").to_numpy()
        trace = go.Scatter(x=points["iteration"].to_numpy(), y=values, mode="lines", name=names.get(column, column),
                           showlegend=not panels, line_color=SERIES_COLORS[(i - 1) % len(SERIES_COLORS)])
        if panels:
            fig.add_trace(trace, row=i, col=1)
            fig.update_yaxes(title_text=_unit(column), row=i, col=1)
        else:
            fig.add_trace(trace)
    if burn_in and points["iteration"].max() >= burn_in:
        fig.add_vline(x=burn_in, line_dash="dot", line_color="#555", annotation_text="end of burn-in")
    if panels:
        fig.update_xaxes(title_text="iteration", row=len(columns), col=1)
        fig.update_layout(title=title, height=160 * len(columns) + 120, modebar=MODEBAR)
    else:
        fig.update_layout(title=title, xaxis_title="iteration", yaxis_title=yaxis_title or _unit(columns[0]),
                          height=300 + 18 * len(columns), legend=legend_below(), margin=MARGIN, modebar=MODEBAR,
                          uirevision=title)
    return fig


def loss_figure(metrics: pd.DataFrame, burn_in: int | None = None,
                empty_message: str = "nothing logged yet") -> go.Figure:
    """The total, supervised and unsupervised loss in one panel."""
    return training_curves(metrics, LOSSES, "Loss", LOG_NAMES, panels=False, yaxis_title="loss", burn_in=burn_in,
                           empty_message=empty_message)


def count_figure(metrics: pd.DataFrame, burn_in: int | None = None, no_log: str | None = None) -> go.Figure:
    """The teacher's queries per step and how many each filter kept and DICC changed, in one panel. Before
    any pseudo-label it says that they come after the burn-in; with no log at all, ``no_log`` (when given)."""
    why = no_log if metrics.empty and no_log else (
        "none yet: the teacher makes pseudo-labels after the burn-in" + (f" (iteration {burn_in})" if burn_in else ""))
    return training_curves(metrics, COUNTS, "Pseudo-labels per step", LOG_NAMES, panels=False,
                           yaxis_title="queries per step", burn_in=burn_in, empty_message=why)


def evaluation_figure(evals: pd.DataFrame, metrics=EVAL_METRICS, panels: bool = True,
                      title: str = "Evaluation: mask AP (%) at each evaluation",
                      empty_message: str = "no evaluation logged (eval.jsonl is absent or empty)") -> go.Figure:
    """Mask AP (in percent) at each evaluation, one marked trace per evaluated model (student, teacher): one
    panel per metric, traces named by model (``panels``), or all metrics in one panel, traces named
    'metric · model' (a metric's colour, a model's dash and marker)."""
    present = _present(evals, metrics)
    if evals.empty or "iteration" not in evals.columns or not present:
        return empty(title, empty_message)
    models = evaluated_models(evals)
    order = list(dict.fromkeys(models))
    cols = min(3, len(present)) if panels else 1
    rows = -(-len(present) // cols) if panels else 1
    if panels:
        fig = make_subplots(rows=rows, cols=cols, subplot_titles=present, horizontal_spacing=0.08,
                            vertical_spacing=0.18 if rows > 1 else 0.1)
    else:
        fig = go.Figure()
    for k, metric in enumerate(present):
        row, col = (k // cols + 1, k % cols + 1) if panels else (None, None)
        for i, model in enumerate(order):
            sel = evals[models == model].sort_values("iteration", kind="stable")
            values = pd.to_numeric(sel[metric], errors="coerce").to_numpy(np.float64)
            style = (dict(marker=dict(size=9), line=dict(color=SERIES_COLORS[i % len(SERIES_COLORS)]))
                     if panels else dict(marker=dict(size=8, symbol=("circle", "diamond")[i % 2]),
                                         line=dict(color=SERIES_COLORS[k], dash=("solid", "dash", "dot")[i % 3])))
            fig.add_trace(go.Scatter(x=sel["iteration"].to_numpy(), y=values, mode="lines+markers",
                                     name=model if panels else f"{metric} · {model}",
                                     legendgroup=model if panels else None, showlegend=k == 0 if panels else None,
                                     text=[format_ap(v) for v in values],
                                     hovertemplate=f"{model}, iteration %{{x}}: {metric} %{{text}}<extra></extra>",
                                     **style), row=row, col=col)
        if panels:
            fig.update_yaxes(title_text=AP_AXIS_TITLE if col == 1 else None, ticksuffix="%", row=row, col=col)
            fig.update_xaxes(title_text="iteration" if row == rows else None, row=row, col=col)
    if panels:
        fig.update_layout(title=title, height=300 * rows + 120, legend=dict(title=dict(text="evaluated model")),
                          modebar=MODEBAR)
    else:
        fig.update_layout(title=title, xaxis_title="iteration", height=300 + 18 * len(fig.data),
                          yaxis=dict(title=dict(text=AP_AXIS_TITLE), ticksuffix="%"),
                          legend=legend_below(), margin=MARGIN, modebar=MODEBAR)
    return fig


def per_class_figure(table: pd.DataFrame, title: str = "Mask AP (%) per class",
                     empty_message: str = "no per-class AP logged (eval.jsonl predates it, or is absent)") -> go.Figure:
    """Each class's AP at the first and the last evaluation (grouped bars, classes by their last AP,
    highest first) of the model evaluated last (a table of ``trends.per_class_ap``). COCO's AP is the
    mean of the last bars, so a class near zero pulls it down as much as a common class."""
    if table.empty:
        return empty(title, empty_message)
    model = table.sort_values("last_iteration", kind="stable")["model"].iloc[-1]
    sel = table[table["model"] == model]
    sel = sel.assign(_order=sel["last"].fillna(-1.0)).sort_values("_order", ascending=False, kind="stable")
    first_it, last_it = int(sel["first_iteration"].iloc[0]), int(sel["last_iteration"].iloc[0])
    shown = [("last", last_it, SERIES_COLORS[0])]
    if first_it != last_it:
        shown.insert(0, ("first", first_it, SERIES_COLORS[1]))
    fig = go.Figure()
    for column, iteration, color in shown:
        fig.add_trace(go.Bar(x=sel["class"], y=sel[column], name=f"iteration {iteration}", marker=dict(color=color),
                             text=[format_ap(v) for v in sel[column]],
                             hovertemplate="%{x}: AP %{text}" + f" at iteration {iteration}<extra></extra>"))
    fig.update_layout(title=f"{title}: the {model} at its last evaluation"
                      + (f" and at its first (iteration {first_it})" if first_it != last_it else ""),
                      barmode="group", xaxis_title="class",
                      yaxis=dict(title=dict(text=AP_AXIS_TITLE), ticksuffix="%", rangemode="tozero"),
                      height=420, legend=legend_below(), margin=MARGIN, modebar=MODEBAR)
    return fig
