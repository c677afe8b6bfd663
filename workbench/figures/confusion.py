"""Figures of ``workbench.confusion``: pseudo-label class vs GT class (Fig. 3), and class accuracy over training."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.explain import no_ground_truth
from workbench.figures.charts import line_figure
from workbench.figures.style import class_labels, empty


def confusion_heatmap(confusion, class_names: list[str] | None = None, normalized: bool = True,
                      max_classes: int = 30, empty_message: str | None = None) -> go.Figure:
    """Pseudo-label class (rows) vs GT class (columns), background last.

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
                               colorbar_title="share of the row" if normalized else "pseudo-labels",
                               hovertemplate="pred %{y}<br>GT %{x}<br>%{z}<extra></extra>",
                               text=np.round(z, 2) if len(labels) <= 15 else None,
                               texttemplate="%{text}" if len(labels) <= 15 else None))
    fig.update_layout(title=title + (" — row-normalised" if normalized else ""),
                      xaxis_title="GT class", yaxis_title="pseudo-label class",
                      yaxis_autorange="reversed", height=max(420, 22 * len(labels) + 160))
    return fig


def class_accuracy_trend(accuracy: pd.DataFrame, empty_message: str) -> go.Figure:
    """Class accuracy of the kept pseudo-labels on a GT at each checkpoint, before and after DICC
    (``Trends.confusion`` with a ``labels`` column naming each line)."""
    return line_figure(accuracy, "iteration", "class_accuracy", "labels",
                       "Class accuracy of the kept pseudo-labels on a GT", "class accuracy (0 to 1)", "iteration",
                       empty_message=empty_message)
