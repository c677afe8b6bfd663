"""Plotly figures of the interactive workbench (the report's figures are ``workbench.figures``).

Each builder only draws data it is given. Points that can be clicked carry
``customdata = [image_id, query]`` (scatter) or the values that identify their group (bars),
so a front end can open what was clicked. Scatter points are SVG markers (not WebGL), so they
draw and respond to clicks in any browser, headless ones included; ``MAX_POINTS`` keeps that fast.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pldc_core.records.schema import ERROR_TYPES
from pldc_core.units import format_ap
from workbench import figures
from workbench.explain import ERROR_TYPE_NAMES, best_thresholds, error_label, error_rule, no_ground_truth
from workbench.figures import AP_AXIS_TITLE, ERROR_COLORS, SERIES_COLORS, subsample

MAX_POINTS = 3000
MAX_LINE_POINTS = 1500
SHADE = "rgba(110, 110, 110, 0.22)"
CURRENT = "#d62728"
# Small plots keep plotly's toolbar out of their titles: a vertical toolbar at the right edge, in a right
# margin of its own, with the buttons that matter for a line plot.
SMALL_PLOT_MODEBAR = dict(orientation="v", remove=["lasso2d", "select2d", "autoScale2d"])
SMALL_PLOT_MARGIN = dict(l=60, r=45, t=50, b=40)
SMALL_PLOT_LEGEND = dict(orientation="h", yanchor="top", y=-0.32)  # under the x-axis title, not over it


def empty(title: str, message: str, height: int = 320, wrap: int = 60) -> go.Figure:
    """``figures.empty`` in the app's size and margins, its message a little larger."""
    fig = figures.empty(title, message, height, wrap)
    fig.update_annotations(font_size=14)
    return fig.update_layout(margin=dict(l=30, r=45, t=60, b=30), modebar=SMALL_PLOT_MODEBAR)


def _hover_text(points: pd.DataFrame, class_names: list[str]) -> list[str]:
    names = np.asarray(class_names + ["?"], dtype=object)
    cls = points["pred_class"].to_numpy(np.int64)
    cls = np.where((cls >= 0) & (cls < len(class_names)), cls, len(class_names))
    iou = points["iou"].to_numpy(np.float64, na_value=np.nan)
    err = [f"{e} ({ERROR_TYPE_NAMES[e]})" if e in ERROR_TYPE_NAMES else "GT unknown"
           for e in points["error_type"].fillna("").astype(str)]
    return [f"{n}<br>IoU {'?' if np.isnan(i) else f'{i:.2f}'} · {e}" for n, i, e in zip(names[cls], iou, err)]


def _axes_row(n: int, gap: float = 0.07) -> list[tuple[float, float]]:
    """x domains of ``n`` side-by-side panels (what make_subplots computes, without its cost)."""
    width = (1 - gap * (n - 1)) / n
    return [(i * (width + gap), i * (width + gap) + width) for i in range(n)]


def threshold_scatter(queries: pd.DataFrame, thresholds, kept: int, class_names: list[str], color_by: str = "iou",
                      max_points: int = MAX_POINTS, seed: int = 0) -> go.Figure:
    """Class quality c against mask quality m of every query, coloured by IoU or by error type, with the
    filter's thresholds drawn and the area it rejects shaded. ``thresholds`` has ``filter``, ``c_t``,
    ``m_t``, ``s_t`` and ``describe()``; ``kept`` is how many queries (of all, not only those drawn) it keeps.

    Built as one figure spec (no incremental ``add_*`` calls): it is drawn anew for every checkpoint,
    colouring and coupled threshold; a DDTF threshold move only moves its marks (``threshold_scatter_update``)."""
    title = "Class quality c vs mask quality m"
    if queries.empty:
        return empty(title, "no queries recorded")
    points = subsample(queries, max_points, seed)
    traces, shapes = [], []
    if thresholds.filter == "coupled":
        s_t = float(thresholds.s_t)
        c = np.linspace(max(s_t, 1e-3), 1.0, 60)
        traces.append(dict(type="scatter", x=np.r_[0, 0, s_t, c, 1, 0], y=np.r_[0, 1, 1, s_t / c, 0, 0], fill="toself",
                           fillcolor=SHADE, line=dict(width=0), hoverinfo="skip", showlegend=False, mode="lines"))
        traces.append(dict(type="scatter", x=c, y=np.minimum(s_t / c, 1.0), mode="lines", name=f"s = c·m = {s_t:.2f}",
                           line=dict(color="black", dash="dash"), hoverinfo="skip"))
    else:
        shapes = _ddtf_marks(float(thresholds.c_t), float(thresholds.m_t))
    known = points["iou"].notna().to_numpy()
    custom = np.stack([points["image_id"].to_numpy(np.int64), points["query"].to_numpy(np.int64)], axis=1)
    text = np.asarray(_hover_text(points, class_names), dtype=object)
    hover = "image %{customdata[0]} · query %{customdata[1]}<br>c %{x:.3f} · m %{y:.3f}<br>%{text}<extra></extra>"
    c_values, m_values = points["c"].to_numpy(np.float64), points["m"].to_numpy(np.float64)

    def add(sel, name, marker):
        if sel.any():
            traces.append(dict(type="scatter", x=c_values[sel], y=m_values[sel], mode="markers", name=name,
                               marker=marker, customdata=custom[sel], text=text[sel], hovertemplate=hover))

    if color_by == "error":
        types = points["error_type"].fillna("").astype(str).to_numpy()
        for etype in ERROR_TYPES:
            add(types == etype, error_label(etype), dict(size=6, opacity=0.75, color=ERROR_COLORS[etype]))
    else:
        iou = points["iou"].to_numpy(np.float64, na_value=np.nan)
        add(known, "IoU with GT", dict(size=6, opacity=0.8, color=iou[known], colorscale="Viridis", cmin=0, cmax=1,
                                       colorbar=dict(title=dict(text="IoU"), thickness=12, len=0.75)))
    add(~known, "GT unknown", dict(size=5, opacity=0.5, color="#9a9a9a"))
    shown = f"{len(points):,} of {len(queries):,} shown" if len(points) < len(queries) else f"{len(queries):,} queries"
    axis = dict(range=[-0.01, 1.02], gridcolor="#e6e6e6", zeroline=False)
    layout = dict(title=dict(text=_scatter_title(thresholds, kept),
                             subtitle=dict(text=f"{shown}; shaded: filtered out; click a point to open it")),
                  xaxis=dict(axis, title=dict(text="class quality c")),
                  yaxis=dict(axis, title=dict(text="mask quality m")),
                  shapes=shapes, plot_bgcolor="white", height=520, uirevision="scatter",
                  legend=dict(orientation="h", y=-0.15), margin=dict(l=60, r=40, t=80, b=40), clickmode="event")
    return go.Figure(dict(data=traces, layout=layout))


def _scatter_title(thresholds, kept: int) -> str:
    return f"{kept:,} kept by {thresholds.describe()}"


def _ddtf_marks(c_t: float, m_t: float) -> list[dict]:
    """The scatter's shaded areas and labelled threshold lines under DDTF (shapes only: moving annotations
    costs a browser ten times more than moving shapes)."""
    line = dict(color="black", dash="dash", width=2)
    label = dict(textangle=0, font=dict(size=12))
    return [dict(type="rect", x0=-0.01, x1=c_t, y0=-0.01, y1=1.02, fillcolor=SHADE, line=dict(width=0), layer="below"),
            dict(type="rect", x0=c_t, x1=1.02, y0=-0.01, y1=m_t, fillcolor=SHADE, line=dict(width=0), layer="below"),
            dict(type="line", x0=c_t, x1=c_t, y0=0, y1=1, yref="paper", line=line,
                 label=dict(label, text=f"c_t {c_t:.2f}", textposition="end", yanchor="bottom")),
            dict(type="line", x0=0, x1=1, y0=m_t, y1=m_t, xref="paper", line=line,
                 label=dict(label, text=f"m_t {m_t:.2f}", textposition="start", xanchor="left",
                            yanchor="bottom"))]


def threshold_scatter_update(thresholds, kept: int) -> dict:
    """What a move of the DDTF thresholds changes in ``threshold_scatter``'s figure, as a ``Plotly.relayout``
    update of the figure on screen: the shaded areas, the labelled lines, the title. The points stay:
    redrawing ~1,000 SVG markers for every slider step cost more than everything else of the step."""
    return {"shapes": _ddtf_marks(float(thresholds.c_t), float(thresholds.m_t)),
            "title.text": _scatter_title(thresholds, kept)}


def _fmt(value, digits=2) -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


def what_if_figure(curves: dict[str, pd.DataFrame], point: dict, run_point: dict | None = None,
                   has_gt: bool = True, best: dict | None = None) -> go.Figure:
    """Kept, precision and recall as the thresholds move: ``curves`` from ``browse.Checkpoint.curves_at``
    ('c' and 'm' for DDTF, 's' for the coupled filter), the current setting ``point`` marked in red and the
    run's own setting ``run_point`` as a black cross. Built as one figure spec (redrawn on every slider move).

    Where precision is undefined the figure says why: no ground truth (``has_gt`` False), or nothing kept
    at this setting, then with the ``best`` setting by F1 as the fix."""
    panels = (("kept", "kept"), ("precision", "precision"), ("recall", "recall"))
    line_names = {"c": "vary c_t", "m": "vary m_t", "s": "vary s_t"}
    first_axis = next(iter(curves))
    traces, layout = [], {}
    for col, ((metric, label), domain) in enumerate(zip(panels, _axes_row(3)), start=1):
        suffix = "" if col == 1 else str(col)
        layout[f"xaxis{suffix}"] = dict(domain=domain, anchor=f"y{suffix}", range=[0, 1], title=dict(text="threshold"))
        layout[f"yaxis{suffix}"] = dict(anchor=f"x{suffix}", **({} if metric == "kept" else {"range": [0, 1.02]}))
        layout.setdefault("annotations", []).append(
            dict(text=label, x=sum(domain) / 2, xref="paper", y=1.0, yref="paper", yanchor="bottom", showarrow=False,
                 font=dict(size=13)))
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
    title = (f"What-if: {int(point.get('kept', 0)):,} kept, precision {_fmt(point.get('precision'))}, "
             f"recall {_fmt(point.get('recall'))}, F1 {_fmt(point.get('f1'))}")
    subtitle = "precision: share of the kept that are Cor; recall: share of the GT they cover"
    if run_point is not None:
        subtitle = (f"at the run's thresholds: {int(run_point.get('kept', 0)):,} kept, precision "
                    f"{_fmt(run_point.get('precision'))}, recall {_fmt(run_point.get('recall'))}")
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
                  margin=dict(l=50, r=20, t=90, b=40))
    return go.Figure(dict(data=traces, layout=layout))


def class_probability_figure(frame: pd.DataFrame, class_names: list[str], title: str) -> go.Figure:
    """Horizontal bars per class of the teacher's, CLIP's and the fused probability."""
    if frame.empty:
        return empty(title, "no class probabilities recorded", height=260)
    names = [class_names[k] if 0 <= k < len(class_names) else str(k) for k in frame["class"]]
    fig = go.Figure()
    colors = {"teacher": SERIES_COLORS[0], "clip": SERIES_COLORS[2], "fused": SERIES_COLORS[3]}
    labels = {"teacher": "teacher", "clip": "CLIP", "fused": "fused (Eq. 9)"}
    for column in ("teacher", "clip", "fused"):
        if column in frame:
            fig.add_trace(go.Bar(y=names, x=frame[column].to_numpy(np.float64), name=labels[column], orientation="h",
                                 marker_color=colors[column], hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_layout(title=dict(text=title, font_size=13), barmode="group", height=80 + 45 * len(frame),
                      xaxis=dict(title="probability", range=[0, 1]), yaxis=dict(autorange="reversed"),
                      legend=dict(orientation="h", y=-0.3), margin=dict(l=90, r=20, t=50, b=40))
    return fig


def error_trend_figure(errors: pd.DataFrame, subset: str = "all", current: int | None = None,
                       empty_message: str | None = None) -> go.Figure:
    """Error-type shares across checkpoints, one panel per object size (all, small, medium, large).

    ``errors``: ``browse.run_summaries``' table (iteration, subset, size, error_type, count, share).
    The current checkpoint's bars are outlined; ``empty_message`` says why there are none."""
    title = "Error types across checkpoints, by object size"
    frame = errors[errors["subset"] == subset] if not errors.empty else errors
    if frame.empty or frame["count"].sum() == 0:
        return empty(title, empty_message or no_ground_truth("error types"))
    sizes = ["all", "small", "medium", "large"]
    iterations = sorted(frame["iteration"].unique())
    labels = [str(i) for i in iterations]
    traces, layout = [], {"annotations": []}
    for col, (size, domain) in enumerate(zip(sizes, _axes_row(4, gap=0.03)), start=1):
        suffix = "" if col == 1 else str(col)
        layout[f"xaxis{suffix}"] = dict(domain=domain, anchor=f"y{suffix}", type="category",
                                        title=dict(text="iteration"))
        layout[f"yaxis{suffix}"] = dict(anchor=f"x{suffix}", range=[0, 1], tickformat=".0%",
                                        **({"title": dict(text="share")} if col == 1 else {"showticklabels": False}))
        layout["annotations"].append(dict(text=size, x=sum(domain) / 2, xref="paper", y=1.0, yref="paper",
                                          yanchor="bottom", showarrow=False, font=dict(size=13)))
        part = frame[frame["size"] == size]
        for etype in ERROR_TYPES:
            sel = part[part["error_type"] == etype].set_index("iteration").reindex(iterations)
            traces.append(dict(type="bar", x=labels, y=sel["share"].fillna(0).to_numpy(), name=error_label(etype),
                               legendgroup=etype, showlegend=col == 1, marker=dict(
                                   color=ERROR_COLORS[etype],
                                   line=dict(width=[2 if i == current else 0 for i in iterations], color="black")),
                               text=[f"n={int(n)}" for n in sel["count"].fillna(0)], textposition="none",
                               xaxis=f"x{suffix}", yaxis=f"y{suffix}",
                               hovertemplate=f"{etype}, {size}, iteration %{{x}}: %{{y:.1%}} (%{{text}})<br>"
                                             f"{error_rule(etype)}<extra></extra>"))
    layout.update(title=dict(text=title + (" (kept by the run's filter)" if subset == "kept" else " (all queries)")),
                  barmode="stack", height=420, legend=dict(orientation="h", y=-0.2),
                  margin=dict(l=60, r=20, t=70, b=40))
    return go.Figure(dict(data=traces, layout=layout))


def error_counts_figure(table: pd.DataFrame, title: str, empty_message: str | None = None) -> go.Figure:
    """Counts of each error type per object size at one checkpoint (stacked), clickable by size and type."""
    part = table[table["size"] != "all"] if not table.empty else table
    if part.empty or part["count"].sum() == 0:
        return empty(title, empty_message or no_ground_truth("error types"))
    fig = go.Figure()
    for etype in ERROR_TYPES:
        sel = part[part["error_type"] == etype]
        fig.add_trace(go.Bar(x=sel["size"].tolist(), y=sel["count"].to_numpy(), name=error_label(etype),
                             marker_color=ERROR_COLORS[etype], customdata=[[s, etype] for s in sel["size"]],
                             hovertemplate=f"{etype}, %{{x}}: %{{y}}<br>{error_rule(etype)}<extra></extra>"))
    fig.update_layout(title=title, barmode="stack", height=380, yaxis_title="pseudo-labels",
                      legend=dict(orientation="h", y=-0.2), margin=dict(l=60, r=20, t=60, b=40))
    return fig


def dicc_trend_figure(dicc: pd.DataFrame, empty_message: str = "DICC ran at no recorded checkpoint") -> go.Figure:
    """Fixed, broken and net class changes of DICC across checkpoints; ``empty_message`` says why there are none."""
    title = "DICC across checkpoints (pseudo-labels kept by the run)"
    if dicc.empty or dicc["n_ran"].sum() == 0:
        return empty(title, empty_message)
    fig = go.Figure()
    for i, column in enumerate(("fixed", "broken", "neutral", "net")):
        fig.add_trace(go.Scatter(x=dicc["iteration"].to_numpy(), y=dicc[column].to_numpy(), mode="lines+markers",
                                 name=column, line=dict(color=SERIES_COLORS[[2, 3, 7, 0][i]],
                                                        dash="dot" if column == "net" else "solid")))
    fig.update_layout(title=title, xaxis_title="iteration", yaxis_title="pseudo-labels", height=360,
                      legend=dict(orientation="h", y=-0.25), margin=dict(l=60, r=20, t=60, b=40))
    return fig


def _thin(frame: pd.DataFrame, max_points: int = MAX_LINE_POINTS) -> pd.DataFrame:
    """At most ``max_points`` rows: the mean of equal consecutive bins (a long log stays light)."""
    if len(frame) <= max_points:
        return frame
    bins = np.arange(len(frame)) * max_points // len(frame)
    numeric = frame.select_dtypes("number")
    return numeric.groupby(bins).mean()


def training_figures(metrics: pd.DataFrame, evals: pd.DataFrame, burn_in: int | None = None) -> tuple[go.Figure, ...]:
    """Three live figures of a run: its loss terms, its pseudo-label counts, its mask AP (%) at each evaluation
    (one marked trace per metric and evaluated model)."""
    def lines(frame, columns, title, yaxis, names=None, log=False, none_yet="nothing logged yet"):
        present = [c for c in columns if c in frame.columns and pd.to_numeric(frame[c], errors="coerce").notna().any()]
        if frame.empty or "iteration" not in frame.columns or not present:
            return empty(title, none_yet, height=300)
        thin = _thin(frame)
        fig = go.Figure()
        for i, column in enumerate(present):
            fig.add_trace(go.Scatter(x=thin["iteration"].to_numpy(), y=pd.to_numeric(thin[column], errors="coerce"),
                                     mode="lines", name=(names or {}).get(column, column),
                                     line_color=SERIES_COLORS[i % len(SERIES_COLORS)]))
        if burn_in and thin["iteration"].max() >= burn_in:
            fig.add_vline(x=burn_in, line_dash="dot", line_color="#555", annotation_text="end of burn-in")
        fig.update_layout(title=title, xaxis_title="iteration", yaxis_title=yaxis, height=300 + 18 * len(present),
                          yaxis_type="log" if log else None, legend=SMALL_PLOT_LEGEND,
                          margin=SMALL_PLOT_MARGIN, modebar=SMALL_PLOT_MODEBAR, uirevision=title)
        return fig

    losses = lines(metrics, ["loss", "loss_sup", "loss_unsup"], "Loss", "loss",
                   {"loss_sup": "supervised", "loss_unsup": "unsupervised (PL-DC)", "loss": "total"})
    counts = lines(metrics, ["n_queries", "n_kept", "n_kept_ddtf", "n_kept_coupled", "n_dicc_changed"],
                   "Pseudo-labels per step", "queries",
                   {"n_queries": "queries", "n_kept": "kept (run's filter)", "n_kept_ddtf": "pass DDTF",
                    "n_kept_coupled": "pass coupled", "n_dicc_changed": "changed by DICC"},
                   none_yet="none yet: the teacher makes pseudo-labels after the burn-in"
                   + (f" (iteration {burn_in})" if burn_in else ""))
    title = "Mask AP (%)"
    if evals.empty or "AP" not in evals.columns or "iteration" not in evals.columns:
        ap = empty(title, "no evaluation yet (eval.jsonl is written at each evaluation)", height=300)
    else:
        ap = go.Figure()
        models = evals["model"].fillna("model").astype(str) if "model" in evals.columns else \
            pd.Series("model", index=evals.index)
        dashes = ("solid", "dash", "dot")
        for i, column in enumerate(c for c in ("AP", "AP50", "AP75") if c in evals.columns):
            for k, model in enumerate(dict.fromkeys(models)):
                sel = evals[models == model].sort_values("iteration", kind="stable")
                values = pd.to_numeric(sel[column], errors="coerce").to_numpy(np.float64)
                ap.add_trace(go.Scatter(x=sel["iteration"].to_numpy(), y=values, mode="lines+markers",
                                        name=f"{column} · {model}",
                                        marker=dict(size=8, symbol=("circle", "diamond")[k % 2]),
                                        line=dict(color=SERIES_COLORS[i], dash=dashes[k % len(dashes)]),
                                        text=[format_ap(v) for v in values],
                                        hovertemplate=f"{model}, iteration %{{x}}: {column} %{{text}}<extra></extra>"))
        ap.update_layout(title=title, xaxis_title="iteration", height=300 + 18 * len(ap.data),
                         yaxis=dict(title=dict(text=AP_AXIS_TITLE), ticksuffix="%"),
                         legend=SMALL_PLOT_LEGEND, margin=SMALL_PLOT_MARGIN, modebar=SMALL_PLOT_MODEBAR)
    return losses, counts, ap


def compare_metrics_figure(points: dict[str, dict]) -> go.Figure:
    """The what-if metrics of the same thresholds at several checkpoints, side by side."""
    title = "The same thresholds at each checkpoint"
    metrics = ["precision", "recall", "f1", "class_accuracy", "mean_iou"]
    fig = make_subplots(rows=1, cols=2, column_widths=[0.75, 0.25], subplot_titles=["quality of the kept set",
                                                                                    "pseudo-labels kept"])
    for i, (label, point) in enumerate(points.items()):
        fig.add_trace(go.Bar(x=metrics, y=[point.get(k, np.nan) for k in metrics], name=label, legendgroup=label,
                             marker_color=SERIES_COLORS[i]), row=1, col=1)
        fig.add_trace(go.Bar(x=["kept"], y=[point.get("kept", 0)], name=label, legendgroup=label, showlegend=False,
                             marker_color=SERIES_COLORS[i]), row=1, col=2)
    fig.update_yaxes(range=[0, 1], row=1, col=1)
    nothing = [label for label, point in points.items() if not point.get("kept")]
    subtitle = (f"{' and '.join(nothing)}: nothing kept at these thresholds, so no precision, class accuracy or "
                "mean IoU to draw" if nothing else "")
    fig.update_layout(title=dict(text=title, subtitle=dict(text=subtitle)), barmode="group", height=340,
                      legend=dict(orientation="h", y=-0.2), margin=dict(l=50, r=20, t=70, b=40))
    return fig


def compare_errors_figure(tables: dict[str, pd.DataFrame], title: str = "Error types by object size",
                          empty_message: str | None = None) -> go.Figure:
    """Error-type shares per object size at several checkpoints: one group of stacked bars per checkpoint."""
    rows = []
    for label, table in tables.items():
        if not table.empty:
            rows.append(table.assign(group=[f"{label}<br>{s}" for s in table["size"]]))
    if not rows or sum(t["count"].sum() for t in rows) == 0:
        return empty(title, empty_message or no_ground_truth("error types"))
    frame = pd.concat(rows, ignore_index=True)
    fig = go.Figure()
    for etype in ERROR_TYPES:
        sel = frame[frame["error_type"] == etype]
        fig.add_trace(go.Bar(x=sel["group"].tolist(), y=sel["share"].fillna(0).to_numpy(), name=error_label(etype),
                             marker_color=ERROR_COLORS[etype],
                             hovertemplate=f"%{{x}}: %{{y:.1%}}<br>{error_rule(etype)}<extra></extra>"))
    fig.update_layout(title=title, barmode="stack", height=380, yaxis=dict(title="share", tickformat=".0%"),
                      legend=dict(orientation="h", y=-0.3), margin=dict(l=60, r=20, t=60, b=40))
    return fig


def curation_figure(counts: pd.DataFrame, class_names: list[str]) -> go.Figure:
    """Decisions per class (accepted, rejected, relabelled to): ``counts`` has class, action, count."""
    title = "Curation decisions per class"
    if counts.empty:
        return empty(title, "no decisions yet: accept, reject or relabel pseudo-labels to curate them", height=300)
    fig = go.Figure()
    colors = {"accept": "#2ca02c", "reject": "#d62728", "relabel": "#1f77b4"}
    for action in ("accept", "reject", "relabel"):
        sel = counts[counts["action"] == action]
        if sel.empty:
            continue
        fig.add_trace(go.Bar(x=[class_names[k] if 0 <= k < len(class_names) else str(k) for k in sel["class"]],
                             y=sel["count"].to_numpy(), name={"relabel": "relabelled to"}.get(action, action + "ed"),
                             marker_color=colors[action]))
    fig.update_layout(title=title, barmode="group", height=320, yaxis_title="pseudo-labels",
                      legend=dict(orientation="h", y=-0.25), margin=dict(l=60, r=20, t=60, b=40))
    return fig
