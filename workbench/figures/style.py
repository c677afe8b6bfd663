"""The look every figure shares: colours, axis titles with their units, legends, the toolbar, the empty figure."""
from __future__ import annotations

import textwrap

import numpy as np
import plotly.graph_objects as go

ERROR_COLORS = {"Cor": "#2ca02c", "Sim": "#ff7f0e", "Oth": "#d62728", "Loc": "#9467bd",
                "BG": "#7f7f7f", "Both": "#8c564b"}
SERIES_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22", "#17becf"]

AP_AXIS_TITLE = "mask AP (%)"
SHARE_AXIS = dict(title=dict(text="share (%)"), tickformat=".0%")   # values are fractions, shown in %

# The toolbar stays out of titles: vertical, at the right edge, with the buttons that matter for a line plot.
MODEBAR = dict(orientation="v", remove=["lasso2d", "select2d", "autoScale2d"])
MARGIN = dict(l=60, r=45, t=60, b=40)


def legend_below(y: float = -0.32) -> dict:
    """A horizontal legend under the plot, ``y`` (a fraction of the plot's height) below it: far enough to
    clear the x axis' tick labels and title."""
    return dict(orientation="h", x=0, xanchor="left", y=y, yanchor="top")


def empty(title: str, message: str, height: int = 320, wrap: int = 60) -> go.Figure:
    """A figure with no data that says why (``message``, in lines of at most ``wrap`` characters) in its middle."""
    lines = textwrap.wrap(message, wrap, break_long_words=False, break_on_hyphens=False) or [""]
    fig = go.Figure()
    fig.add_annotation(text="<br>".join(lines), x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font=dict(size=14))
    fig.update_layout(title=title, xaxis_visible=False, yaxis_visible=False, height=height,
                      margin=dict(l=30, r=45, t=60, b=30), modebar=MODEBAR)
    return fig


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


def number(value, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals; 'n/a' for None or NaN."""
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"
