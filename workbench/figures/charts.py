"""Plain charts several analyses draw (grouped bars, lines), and how figures stay light on large tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.figures.style import ERROR_COLORS, SERIES_COLORS, empty

MAX_LINE_POINTS = 1500


def subsample(frame: pd.DataFrame, max_points: int, seed: int = 0) -> pd.DataFrame:
    """At most ``max_points`` rows, chosen at random with ``seed`` (order kept)."""
    if len(frame) <= max_points:
        return frame
    take = np.sort(np.random.default_rng(seed).choice(len(frame), size=max_points, replace=False))
    return frame.iloc[take]


def thin(frame: pd.DataFrame, max_points: int = MAX_LINE_POINTS) -> pd.DataFrame:
    """At most ``max_points`` rows: the means of equal runs of consecutive rows (a long log stays light)."""
    if len(frame) <= max_points:
        return frame
    bins = np.arange(len(frame)) * max_points // len(frame)
    return frame.select_dtypes("number").groupby(bins).mean()


def axes_row(n: int, gap: float = 0.07) -> list[tuple[float, float]]:
    """x domains of ``n`` side-by-side panels (what make_subplots computes, without its cost)."""
    width = (1 - gap * (n - 1)) / n
    return [(i * (width + gap), i * (width + gap) + width) for i in range(n)]


def grouped_bars(frame: pd.DataFrame, x: str, ys: list[str], title: str, yaxis_title: str = "",
                 x_labels: list[str] | None = None, barmode: str = "group",
                 empty_message: str = "nothing to show", no_bar: list[str] | None = None,
                 xaxis_title: str | None = None, colors: dict[str, str] | None = None) -> go.Figure:
    """One bar trace per column of ``ys`` over the categories in column ``x`` (coloured by ``colors``,
    else error types' colours, else the series colours).

    ``no_bar``, one entry per category ('' for none), says why a category has no bar (a NaN value);
    it is written under the category's name, so that a missing bar is never left unexplained."""
    if frame.empty:
        return empty(title, empty_message)
    labels = x_labels if x_labels is not None else [str(v) for v in frame[x]]
    if no_bar is not None:
        labels = [f"{label}<br><i>{why}</i>" if why else label for label, why in zip(labels, no_bar)]
    fig = go.Figure([go.Bar(x=labels, y=frame[y].to_numpy(), name=y,
                            marker_color=(colors or ERROR_COLORS).get(y, SERIES_COLORS[i % len(SERIES_COLORS)]))
                     for i, y in enumerate(ys)])
    fig.update_layout(title=title, barmode=barmode, yaxis_title=yaxis_title, xaxis_title=xaxis_title, height=400)
    return fig


def line_figure(frame: pd.DataFrame, x: str, y: str, color: str | None = None, title: str = "",
                yaxis_title: str | None = None, xaxis_title: str | None = None,
                empty_message: str = "nothing to show", names: dict | None = None) -> go.Figure:
    """Lines of ``y`` over ``x``, one per value of ``color`` (named through ``names``); ``empty_message``
    says why there are none."""
    if frame.empty or frame[y].isna().all():
        return empty(title, empty_message)
    fig = go.Figure()
    groups = frame.groupby(color, sort=False) if color else [(y, frame)]
    for i, (name, group) in enumerate(groups):
        group = group.sort_values(x, kind="stable")
        fig.add_trace(go.Scatter(x=group[x].to_numpy(), y=group[y].to_numpy(), mode="lines+markers",
                                 name=(names or {}).get(name, str(name)),
                                 line_color=SERIES_COLORS[i % len(SERIES_COLORS)]))
    fig.update_layout(title=title, xaxis_title=xaxis_title or x, yaxis_title=yaxis_title or y, height=380)
    return fig
