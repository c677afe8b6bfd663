"""Which queries a filter keeps: class quality c against mask quality m of every query, with the thresholds.

Points carry ``customdata = [image_id, query]``, so a front end can open what was clicked. They are SVG
markers (not WebGL), so they draw and respond to clicks in any browser, headless ones included;
``MAX_POINTS`` keeps that fast. Under DDTF the thresholds are shapes only (``ddtf_marks``), which a front
end can move without redrawing the points.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from pldc_core.records.schema import ERROR_TYPES
from workbench.explain import ERROR_TYPE_NAMES, error_label
from workbench.figures.charts import subsample
from workbench.figures.style import ERROR_COLORS, MODEBAR, empty

MAX_POINTS = 2000
SHADE = "rgba(110, 110, 110, 0.22)"


def _hover_text(points: pd.DataFrame, class_names: list[str]) -> list[str]:
    names = np.asarray(class_names + ["?"], dtype=object)
    cls = points["pred_class"].to_numpy(np.int64)
    cls = np.where((cls >= 0) & (cls < len(class_names)), cls, len(class_names))
    iou = points["iou"].to_numpy(np.float64, na_value=np.nan)
    err = [f"{e} ({ERROR_TYPE_NAMES[e]})" if e in ERROR_TYPE_NAMES else "GT unknown"
           for e in points["error_type"].fillna("").astype(str)]
    return [f"{n}<br>IoU {'?' if np.isnan(i) else f'{i:.2f}'} · {e}" for n, i, e in zip(names[cls], iou, err)]


def keep_scatter(queries: pd.DataFrame, thresholds, kept: int, class_names: list[str], color_by: str = "iou",
                 max_points: int = MAX_POINTS, seed: int = 0) -> go.Figure:
    """c against m of every query, coloured by IoU or by error type, with the filter's thresholds drawn and the
    area it rejects shaded. ``thresholds`` has ``filter``, ``c_t``, ``m_t``, ``s_t`` and ``describe()``;
    ``kept`` is how many queries (of all, not only those drawn) it keeps.

    Built as one figure spec (no incremental ``add_*`` calls): an app draws it anew for every checkpoint,
    colouring and coupled threshold."""
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
        shapes = ddtf_marks(float(thresholds.c_t), float(thresholds.m_t))
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
    layout = dict(title=dict(text=scatter_title(thresholds, kept),
                             subtitle=dict(text=f"{shown}; shaded: filtered out; click a point to open it")),
                  xaxis=dict(axis, title=dict(text="class quality c")),
                  yaxis=dict(axis, title=dict(text="mask quality m")),
                  shapes=shapes, plot_bgcolor="white", height=520, uirevision="scatter",
                  legend=dict(orientation="h", y=-0.15), margin=dict(l=60, r=60, t=80, b=40), modebar=MODEBAR,
                  clickmode="event")
    return go.Figure(dict(data=traces, layout=layout))


def scatter_title(thresholds, kept: int) -> str:
    """The scatter's title: how many the thresholds keep."""
    return f"{kept:,} kept by {thresholds.describe()}"


def ddtf_marks(c_t: float, m_t: float) -> list[dict]:
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
