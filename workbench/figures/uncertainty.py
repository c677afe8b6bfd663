"""Figures of ``workbench.uncertainty``: where the pixel uncertainty u (Eq. 10) concentrates."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from workbench.figures.charts import grouped_bars, line_figure

U_AXIS = "pixel uncertainty u (0 to 1)"
REGION_NAMES = {"inside": "inside the mask", "boundary": "on its boundary", "overlap": "where masks overlap"}


def region_bars(regions: pd.DataFrame, empty_message: str) -> go.Figure:
    """Mean and median u inside the masks, on their boundary band and where they overlap (``region_means``);
    a region without a bar says why."""
    shown = regions if regions["n"].any() else regions.iloc[:0]
    no_bar = ["" if n else ("no bar: no mask overlaps another" if r == "overlap" else "no bar: no pixel")
              for r, n in zip(shown["region"], shown["n"])]
    return grouped_bars(shown, "region", ["mean_u", "median_u"], "Uncertainty by region", U_AXIS,
                        x_labels=[REGION_NAMES.get(r, r) for r in shown["region"]], no_bar=no_bar,
                        empty_message=empty_message, xaxis_title="region")


def iou_by_uncertainty(curve: pd.DataFrame, empty_message: str) -> go.Figure:
    """Mean IoU of the masks in each bin of their mean u, per region (``UncertaintyVsIoU.curve``)."""
    return line_figure(curve, "mean_u", "mean_iou", "region", "Mean IoU by uncertainty bin", "mean mask IoU with GT",
                       "mean u of the bin (0 to 1)", empty_message=empty_message, names=REGION_NAMES)


def distance_profile(profile: pd.DataFrame, empty_message: str) -> go.Figure:
    """Mean u by signed distance to the mask edge (``uncertainty.distance_profile``)."""
    return line_figure(profile, "distance", "mean_u", None, "Uncertainty by distance to the mask edge", U_AXIS,
                       "pixels from the edge (negative: outside)", empty_message=empty_message)


def uncertainty_trend(uncertainty: pd.DataFrame, empty_message: str) -> go.Figure:
    """Mean u of the kept pseudo-labels per region at each checkpoint (``Trends.uncertainty``)."""
    return line_figure(uncertainty, "iteration", "mean_u", "region",
                       "Mean uncertainty of the kept pseudo-labels by region", U_AXIS, "iteration",
                       empty_message=empty_message, names=REGION_NAMES)
