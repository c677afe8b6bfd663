"""Figure of ``workbench.curation``: the decisions taken on the pseudo-labels of a checkpoint, per class."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from workbench.figures.style import MARGIN, MODEBAR, class_labels, empty, legend_below

ACTIONS = {"accept": ("accepted", "#2ca02c"), "reject": ("rejected", "#d62728"),
           "relabel": ("relabelled to", "#1f77b4")}


def decisions_per_class(counts: pd.DataFrame, class_names: list[str]) -> go.Figure:
    """Accepted, rejected and relabelled-to pseudo-labels per class (``counts``: class, action, count)."""
    title = "Curation decisions per class"
    if counts.empty:
        return empty(title, "no decisions yet: accept, reject or relabel pseudo-labels to curate them", height=300)
    fig = go.Figure()
    for action, (name, color) in ACTIONS.items():
        sel = counts[counts["action"] == action]
        if not sel.empty:
            fig.add_trace(go.Bar(x=class_labels(sel["class"], class_names), y=sel["count"].to_numpy(), name=name,
                                 marker_color=color))
    fig.update_layout(title=title, barmode="group", height=320, yaxis_title="pseudo-labels", xaxis_title="class",
                      legend=legend_below(), margin=MARGIN, modebar=MODEBAR)
    return fig
