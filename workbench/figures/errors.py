"""Figures of ``workbench.error_breakdown``: the six error types by object size (Fig. 5), and across checkpoints."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from pldc_core.records.schema import ERROR_TYPES
from workbench.error_breakdown import ALL, SIZES
from workbench.explain import error_label, error_rule, no_ground_truth
from workbench.figures.charts import axes_row
from workbench.figures.style import ERROR_COLORS, MARGIN, MODEBAR, SHARE_AXIS, empty, legend_below

X_TITLES = {"size": "object size", "iteration": "iteration"}


def error_bars(table: pd.DataFrame, x: str, title: str, value: str = "share",
               empty_message: str | None = None) -> go.Figure:
    """Stacked bars of the error types' shares (in %) or counts over column ``x`` of an ``ErrorBreakdown.table``.

    Counts leave out size 'all' (the sum of the others). Each bar carries ``customdata = [x value, error
    type]``, so a front end can list what was clicked; ``empty_message`` says why there are none."""
    part = table[table["size"] != ALL] if value == "count" and not table.empty and "size" in table else table
    if part.empty or part[value].fillna(0).eq(0).all():
        return empty(title, empty_message or no_ground_truth("error types"))
    shown = "%{y:.1%}" if value == "share" else "%{y:,}"
    fig = go.Figure()
    for etype in ERROR_TYPES:
        sel = part[part["error_type"] == etype]
        xs = [str(v) for v in sel[x]]
        fig.add_trace(go.Bar(x=xs, y=sel[value].fillna(0).to_numpy(), name=error_label(etype),
                             marker_color=ERROR_COLORS[etype], customdata=[[v, etype] for v in xs],
                             hovertemplate=f"{etype}, %{{x}}: {shown}<br>{error_rule(etype)}<extra></extra>"))
    yaxis = SHARE_AXIS if value == "share" else dict(title=dict(text="pseudo-labels"))
    fig.update_layout(title=title, barmode="stack", height=400, yaxis=yaxis, xaxis_title=X_TITLES.get(x),
                      legend=dict(legend_below(), traceorder="normal"), margin=MARGIN, modebar=MODEBAR)
    return fig


def error_trend(errors: pd.DataFrame, kept: bool, current: int | None = None,
                empty_message: str | None = None) -> go.Figure:
    """Error-type shares across checkpoints, one panel per object size (all, small, medium, large).

    ``errors``: one subset's breakdowns stacked over checkpoints (iteration, size, error_type, count, share),
    of the pseudo-labels the run's filter kept (``kept``) or of all queries. The ``current`` checkpoint's
    bars are outlined; ``empty_message`` says why there are none."""
    title = "Error types across checkpoints, by object size"
    if errors.empty or errors["count"].sum() == 0:
        return empty(title, empty_message or no_ground_truth("error types"))
    iterations = sorted(errors["iteration"].unique())
    labels = [str(i) for i in iterations]
    traces, layout = [], {"annotations": []}
    for col, (size, domain) in enumerate(zip((ALL, *SIZES), axes_row(4, gap=0.03)), start=1):
        suffix = "" if col == 1 else str(col)
        layout[f"xaxis{suffix}"] = dict(domain=domain, anchor=f"y{suffix}", type="category",
                                        title=dict(text="iteration"))
        layout[f"yaxis{suffix}"] = dict(anchor=f"x{suffix}", range=[0, 1], tickformat=SHARE_AXIS["tickformat"],
                                        **({"title": SHARE_AXIS["title"]} if col == 1 else {"showticklabels": False}))
        layout["annotations"].append(dict(text=size, x=sum(domain) / 2, xref="paper", y=1.0, yref="paper",
                                          yanchor="bottom", showarrow=False, font=dict(size=13)))
        part = errors[errors["size"] == size]
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
    layout.update(title=dict(text=title + (" (kept by the run's filter)" if kept else " (all queries)")),
                  barmode="stack", height=420, legend=legend_below(-0.25), margin=dict(MARGIN, t=70),
                  modebar=MODEBAR)
    return go.Figure(dict(data=traces, layout=layout))


def error_bars_by_checkpoint(tables: dict[str, pd.DataFrame], title: str,
                             empty_message: str | None = None) -> go.Figure:
    """Error-type shares per object size at several checkpoints (``tables``: label -> ``ErrorBreakdown.table``):
    one group of stacked bars per checkpoint."""
    frames = [t.assign(group=[f"{label}<br>{s}" for s in t["size"]]) for label, t in tables.items() if not t.empty]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["group", "error_type", "share"])
    return error_bars(frame, "group", title, empty_message=empty_message)
