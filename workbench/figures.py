"""Plotly figures over the analysis results, and their PNG export.

Each builder takes the data an analysis returned and only draws it. Figures stay light for
large tables: scatter plots draw a seeded random subsample (the title says how many of how
many), heatmaps keep the most confused classes.

``write_png`` exports any figure built here with matplotlib, reading the plotly figure itself
(scatter, bar and heatmap traces, subplot domains, shapes, annotations), so each figure kind
has a single builder whether it ends up interactive in HTML or as a PNG. plotly's own
exporter, kaleido, needs a Chrome binary that these machines lack. matplotlib is imported
only when a PNG is written.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pldc_core.atomic import atomic_path
from pldc_core.records.schema import ERROR_TYPES

ERROR_COLORS = {"Cor": "#2ca02c", "Sim": "#ff7f0e", "Oth": "#d62728", "Loc": "#9467bd",
                "BG": "#7f7f7f", "Both": "#8c564b"}
SERIES_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22", "#17becf"]
SCORE_LABELS = {"s": "instance score s = c·m", "c": "class quality c", "m": "mask quality m"}
MAX_SCATTER_POINTS = 4000


def _names(labels, class_names: list[str] | None) -> list[str]:
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


def _empty(title: str, message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False)
    fig.update_layout(title=title, xaxis_visible=False, yaxis_visible=False, height=300)
    return fig


def subsample(frame: pd.DataFrame, max_points: int = MAX_SCATTER_POINTS, seed: int = 0) -> pd.DataFrame:
    """At most ``max_points`` rows, chosen at random with ``seed`` (order kept)."""
    if len(frame) <= max_points:
        return frame
    take = np.sort(np.random.default_rng(seed).choice(len(frame), size=max_points, replace=False))
    return frame.iloc[take]


def quality_scatter(scatter: pd.DataFrame, thresholds: dict | None = None,
                    max_points: int = MAX_SCATTER_POINTS, seed: int = 0) -> go.Figure:
    """Fig. 2: s, c and m against IoU, coloured by error type, with the run's thresholds."""
    title = "Quality scores vs IoU with the best GT"
    if scatter.empty:
        return _empty(title, "no queries with known ground truth")
    points = subsample(scatter, max_points, seed)
    fig = make_subplots(rows=1, cols=3, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[SCORE_LABELS[s] for s in ("s", "c", "m")])
    types = points["error_type"].fillna("unknown") if "error_type" in points else pd.Series("all", index=points.index)
    for col, score in enumerate(("s", "c", "m"), start=1):
        for etype in [t for t in ERROR_TYPES if (types == t).any()]:
            sel = points[types == etype]
            fig.add_trace(go.Scattergl(x=sel[score].to_numpy(), y=sel["iou"].to_numpy(), mode="markers",
                                       name=etype, legendgroup=etype, showlegend=col == 1,
                                       marker=dict(size=4, opacity=0.5, color=ERROR_COLORS[etype])),
                          row=1, col=col)
        line = (thresholds or {}).get(f"{score}_t")
        if line is not None:
            fig.add_vline(x=float(line), line_dash="dash", line_color="#000000", row=1, col=col)
    fig.update_xaxes(range=[0, 1.02])
    fig.update_yaxes(range=[0, 1.02], title_text="IoU", row=1, col=1)
    shown = f"{len(points):,} of {len(scatter):,} queries" + (f", sampled with seed {seed}" if len(points) < len(scatter) else "")
    fig.update_layout(title=f"{title} ({shown}; dashed: the run's thresholds)", height=420)
    return fig


def grouped_bars(frame: pd.DataFrame, x: str, ys: list[str], title: str, yaxis_title: str = "",
                 x_labels: list[str] | None = None, barmode: str = "group") -> go.Figure:
    """One bar trace per column of ``ys`` over the categories in column ``x``."""
    if frame.empty:
        return _empty(title, "nothing to show")
    labels = x_labels if x_labels is not None else [str(v) for v in frame[x]]
    fig = go.Figure([go.Bar(x=labels, y=frame[y].to_numpy(), name=y,
                            marker_color=ERROR_COLORS.get(y, SERIES_COLORS[i % len(SERIES_COLORS)]))
                     for i, y in enumerate(ys)])
    fig.update_layout(title=title, barmode=barmode, yaxis_title=yaxis_title, height=400)
    return fig


def correlation_bars(overall: pd.DataFrame) -> go.Figure:
    """Pearson and Spearman correlation of s, c, m with IoU."""
    return grouped_bars(overall, "score", ["pearson", "spearman"], "Correlation with IoU",
                        "correlation", x_labels=[SCORE_LABELS[s] for s in overall["score"]])


def class_correlation_bars(per_class: pd.DataFrame, class_names: list[str] | None = None,
                           top: int = 30, method: str = "spearman") -> go.Figure:
    """Per predicted class, the correlation of c and of m with IoU (classes with most rows first)."""
    if per_class.empty:
        return _empty("Correlation with IoU per class", "no queries with known ground truth")
    wide = per_class.pivot_table(index="pred_class", columns="score", values=[method, "n"])
    wide = wide.sort_values(("n", "c"), ascending=False, kind="stable").head(top)
    frame = pd.DataFrame({"pred_class": wide.index, "c": wide[(method, "c")].to_numpy(),
                          "m": wide[(method, "m")].to_numpy()})
    return grouped_bars(frame, "pred_class", ["c", "m"],
                        f"{method.title()} correlation with IoU per predicted class", "correlation",
                        x_labels=_names(frame["pred_class"], class_names))


def threshold_heatmap(sweep: pd.DataFrame, metric: str = "f1", best: dict | None = None,
                      run: dict | None = None) -> go.Figure:
    """A metric of the DDTF sweep over (c_t, m_t), with the best pair and the run's pair marked."""
    title = f"DDTF threshold sweep: {metric}"
    if sweep.empty or sweep[metric].isna().all():
        return _empty(title, f"{metric} needs ground truth")
    grid = sweep.pivot(index="m_t", columns="c_t", values=metric)
    z = grid.to_numpy(dtype=float)
    fig = go.Figure(go.Heatmap(z=z, x=grid.columns.to_numpy(float), y=grid.index.to_numpy(float),
                               colorscale="Viridis", colorbar_title=metric,
                               text=np.round(z, 2), texttemplate="%{text}"))
    for point, name, symbol in ((best, "best by F1", "star"), (run, "the run's pair", "x")):
        if point is not None:
            fig.add_trace(go.Scatter(x=[point["c_t"]], y=[point["m_t"]], mode="markers", name=name,
                                     marker=dict(symbol=symbol, size=16, color="#ffffff",
                                                 line=dict(color="#000000", width=1))))
    fig.update_layout(title=title, xaxis_title="c_t", yaxis_title="m_t", height=480)
    return fig


def threshold_curves(coupled: pd.DataFrame, run_s_t: float | None = None) -> go.Figure:
    """The coupled sweep: precision, recall, F1, class accuracy, and the number kept, vs s_t."""
    title = "Coupled threshold sweep (s >= s_t)"
    if coupled.empty:
        return _empty(title, "no thresholds")
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
    fig.update_xaxes(title_text="s_t")
    fig.update_layout(title=title, height=400)
    return fig


def confusion_heatmap(confusion, class_names: list[str] | None = None, normalized: bool = True,
                      max_classes: int = 30) -> go.Figure:
    """Fig. 3: pseudo-label class (rows) vs GT class (columns), background last.

    With more than ``max_classes`` classes, only those with the most off-diagonal mass are
    kept (the paper shows 29 + background).
    """
    title = "Confusion: pseudo-label class vs GT class" + (" (after DICC)" if confusion.use_dicc else "")
    if not confusion.has_gt:
        return _empty(title, "needs ground truth")
    counts = confusion.counts
    labels = [k for k in counts.index if k >= 0]
    if len(labels) > max_classes:
        off = counts.to_numpy().copy()
        np.fill_diagonal(off, 0)
        mass = off.sum(0)[:-1] + off.sum(1)[:-1]
        labels = sorted(np.argsort(-mass, kind="stable")[:max_classes].tolist())
    labels = labels + [-1]
    table = (confusion.normalized if normalized else counts).loc[labels, labels]
    names = _names(labels, class_names)
    z = table.to_numpy(dtype=float)
    fig = go.Figure(go.Heatmap(z=z, x=names, y=names, colorscale="Blues",
                               colorbar_title="row share" if normalized else "count",
                               hovertemplate="pred %{y}<br>GT %{x}<br>%{z}<extra></extra>",
                               text=np.round(z, 2) if len(labels) <= 15 else None,
                               texttemplate="%{text}" if len(labels) <= 15 else None))
    fig.update_layout(title=title + (" — row-normalised" if normalized else ""),
                      xaxis_title="GT class", yaxis_title="pseudo-label class",
                      yaxis_autorange="reversed", height=max(420, 22 * len(labels) + 160))
    return fig


def stacked_shares(table: pd.DataFrame, x: str, title: str, value: str = "share") -> go.Figure:
    """Fig. 5: stacked bars of the error types' shares (or counts) over column ``x``."""
    if table.empty or table[value].fillna(0).eq(0).all():
        return _empty(title, "no predictions with a known error type")
    fig = go.Figure()
    for etype in ERROR_TYPES:
        sel = table[table["error_type"] == etype]
        fig.add_trace(go.Bar(x=[str(v) for v in sel[x]], y=sel[value].fillna(0).to_numpy(),
                             name=etype, marker_color=ERROR_COLORS[etype]))
    fig.update_layout(title=title, barmode="stack", yaxis_title=value, xaxis_title=x, height=400)
    return fig


def line_figure(frame: pd.DataFrame, x: str, y: str, color: str | None = None, title: str = "",
                yaxis_title: str | None = None, xaxis_title: str | None = None) -> go.Figure:
    """Lines of ``y`` over ``x``, one per value of ``color`` (trends, curves)."""
    if frame.empty or frame[y].isna().all():
        return _empty(title, "nothing to show")
    fig = go.Figure()
    groups = frame.groupby(color, sort=False) if color else [(y, frame)]
    for i, (name, group) in enumerate(groups):
        group = group.sort_values(x, kind="stable")
        fig.add_trace(go.Scatter(x=group[x].to_numpy(), y=group[y].to_numpy(), mode="lines+markers",
                                 name=str(name), line_color=SERIES_COLORS[i % len(SERIES_COLORS)]))
    fig.update_layout(title=title, xaxis_title=xaxis_title or x, yaxis_title=yaxis_title or y, height=380)
    return fig


def dicc_class_bars(per_class: pd.DataFrame, class_names: list[str] | None = None, top: int = 20) -> go.Figure:
    """Per teacher class, how many DICC changes fixed, broke or left wrong the class."""
    title = "DICC changes per teacher class"
    changed = per_class[per_class["changed_from"] > 0] if not per_class.empty else per_class
    if changed.empty:
        return _empty(title, "DICC changed no class")
    changed = changed.sort_values("changed_from", ascending=False, kind="stable").head(top)
    return grouped_bars(changed, "from_class", ["fixed", "broken", "neutral", "unjudged"], title,
                        "pseudo-labels", x_labels=_names(changed["from_class"], class_names),
                        barmode="stack")


def clip_pr_bars(per_class: pd.DataFrame, class_names: list[str] | None = None) -> go.Figure:
    """Table II: CLIP's precision and recall per class on GT crops."""
    return grouped_bars(per_class, "class", ["precision", "recall"], "CLIP on ground-truth crops",
                        x_labels=_names(per_class["class"], class_names))


def training_curves(log: pd.DataFrame, columns: list[str], title: str) -> go.Figure:
    """One panel per logged column, against the iteration."""
    columns = [c for c in columns if c in log.columns and pd.to_numeric(log[c], errors="coerce").notna().any()]
    if log.empty or "iteration" not in log.columns or not columns:
        return _empty(title, "no log")
    fig = make_subplots(rows=len(columns), cols=1, shared_xaxes=True, subplot_titles=columns,
                        vertical_spacing=min(0.08, 0.5 / len(columns)))
    for i, column in enumerate(columns, start=1):
        values = pd.to_numeric(log[column], errors="coerce")
        fig.add_trace(go.Scatter(x=log["iteration"].to_numpy(), y=values.to_numpy(), mode="lines",
                                 name=column, showlegend=False,
                                 line_color=SERIES_COLORS[(i - 1) % len(SERIES_COLORS)]), row=i, col=1)
    fig.update_xaxes(title_text="iteration", row=len(columns), col=1)
    fig.update_layout(title=title, height=160 * len(columns) + 120)
    return fig


# ---- PNG export -----------------------------------------------------------------------------

_MARGIN_PX = dict(left=80, right=190, top=70, bottom=55)  # the plot area inside the PNG (room for the legend)
_DASHES = {"dash": "--", "dot": ":", "dashdot": "-.", "longdash": "--", "solid": "-"}
_MARKERS = {"star": "*", "x": "X", "circle": "o", "square": "s", "diamond": "D"}


def _text(value) -> str:
    return re.sub(r"<[^>]+>", "", re.sub(r"<br\s*/?>", "\n", str(value or "")))


def _color(value, default=None):
    if value is None or isinstance(value, (list, tuple, np.ndarray)):
        return default
    match = re.fullmatch(r"rgba?\(([^)]*)\)", str(value).replace(" ", ""))
    if match:
        parts = [float(p) for p in match.group(1).split(",")]
        return tuple(p / 255 for p in parts[:3]) + ((parts[3],) if len(parts) == 4 else ())
    return value


def _colormap(colorscale):
    from matplotlib.colors import LinearSegmentedColormap

    if not colorscale:
        return "viridis"
    return LinearSegmentedColormap.from_list("plotly", [(float(pos), _color(c)) for pos, c in colorscale])


def _axis_layout(fig: go.Figure, ref: str, letter: str):
    return fig.layout[f"{letter}axis{ref[1:]}"]


def _is_numeric(values) -> bool:
    try:
        np.asarray(values, dtype=float)
        return True
    except (TypeError, ValueError):
        return False


def _edges(centers: np.ndarray) -> np.ndarray:
    if len(centers) == 1:
        return np.array([centers[0] - 0.5, centers[0] + 0.5])
    mid = (centers[1:] + centers[:-1]) / 2
    return np.concatenate([[2 * centers[0] - mid[0]], mid, [2 * centers[-1] - mid[-1]]])


def _plot_area(mfig) -> dict:
    """The plot area in figure fractions: left, bottom, width, height."""
    w, h = mfig.get_size_inches() * mfig.dpi
    m = _MARGIN_PX
    return {"left": m["left"] / w, "bottom": m["bottom"] / h,
            "width": 1 - (m["left"] + m["right"]) / w, "height": 1 - (m["top"] + m["bottom"]) / h}


class _PngAxes:
    """The matplotlib axes of one plotly (xaxis, yaxis) pair, with its bar categories."""

    def __init__(self, mfig, fig: go.Figure, xref: str, yref: str):
        xl, yl = _axis_layout(fig, xref, "x"), _axis_layout(fig, yref, "y")
        xd, yd = xl.domain or (0, 1), yl.domain or (0, 1)
        m = _plot_area(mfig)
        self.ax = mfig.add_axes([m["left"] + xd[0] * m["width"], m["bottom"] + yd[0] * m["height"],
                                 (xd[1] - xd[0]) * m["width"], (yd[1] - yd[0]) * m["height"]])
        self.ax.set_xlabel(_text(xl.title.text))
        self.ax.set_ylabel(_text(yl.title.text))
        if xl.range is not None:
            self.ax.set_xlim(*xl.range)
        if yl.range is not None:
            self.ax.set_ylim(*yl.range)
        if xl.visible is False:
            self.ax.set_axis_off()
        self.reversed_y = yl.autorange == "reversed"
        self.categories: list[str] = []
        self.stack: dict[str, float] = {}
        self.bar_traces = 0


def _label(trace) -> str:
    return trace.name if trace.name and trace.showlegend is not False else "_nolegend_"


def _draw_scatter(axes: _PngAxes, trace, **_) -> None:
    x, y = np.asarray(trace.x), np.asarray(trace.y, dtype=float)
    mode = trace.mode or "lines+markers"
    line_color = _color(trace.line.color) if trace.line else None
    marker_color = _color(trace.marker.color, line_color) if trace.marker else line_color
    if "lines" in mode:
        axes.ax.plot(x, y, label=_label(trace), color=line_color or marker_color,
                     linestyle=_DASHES.get(trace.line.dash or "solid", "-"),
                     marker="o" if "markers" in mode else None, markersize=3)
    elif "markers" in mode:
        size = trace.marker.size if isinstance(trace.marker.size, (int, float)) else 6
        axes.ax.scatter(x, y, s=float(size) ** 2, color=marker_color, label=_label(trace),
                        alpha=trace.marker.opacity if trace.marker.opacity is not None else 1.0,
                        marker=_MARKERS.get(trace.marker.symbol or "circle", "o"),
                        edgecolors="black" if trace.marker.line and trace.marker.line.color else "none",
                        zorder=3)


def _draw_bar(axes: _PngAxes, trace, barmode: str, n_bars: int, **_) -> None:
    """Bars on category positions; stacked bars accumulate per category, grouped ones sit side by side."""
    cats = [str(v) for v in trace.x]
    axes.categories += [c for c in dict.fromkeys(cats) if c not in axes.categories]
    pos = np.array([axes.categories.index(c) for c in cats], dtype=float)
    y = np.nan_to_num(np.asarray(trace.y, dtype=float))
    color = _color(trace.marker.color) if trace.marker else None
    if barmode in ("stack", "relative"):
        bottom = np.array([axes.stack.get(c, 0.0) for c in cats])
        axes.ax.bar(pos, y, bottom=bottom, label=_label(trace), color=color, width=0.7)
        axes.stack.update(zip(cats, bottom + y))
    else:
        width = 0.8 / max(n_bars, 1)
        axes.ax.bar(pos - 0.4 + width * (axes.bar_traces + 0.5), y, width=width, label=_label(trace), color=color)
    axes.bar_traces += 1
    many = len(axes.categories) > 6
    axes.ax.set_xticks(range(len(axes.categories)), axes.categories, rotation=45 if many else 0,
                       ha="right" if many else "center", fontsize=8)


def _draw_heatmap(axes: _PngAxes, trace, mfig, **_) -> None:
    """Numeric x/y are cell centres (so markers drawn on top line up); other labels are categories."""
    ax, z = axes.ax, np.asarray(trace.z, dtype=float)
    xs = np.asarray(trace.x) if trace.x is not None else np.arange(z.shape[1])
    ys = np.asarray(trace.y) if trace.y is not None else np.arange(z.shape[0])
    cmap = _colormap(trace.colorscale)
    if _is_numeric(xs) and _is_numeric(ys):
        centers_x, centers_y = xs.astype(float), ys.astype(float)
        mesh = ax.pcolormesh(_edges(centers_x), _edges(centers_y), np.ma.masked_invalid(z), cmap=cmap)
    else:
        centers_x, centers_y = np.arange(z.shape[1]), np.arange(z.shape[0])
        mesh = ax.pcolormesh(np.arange(z.shape[1] + 1) - 0.5, np.arange(z.shape[0] + 1) - 0.5,
                             np.ma.masked_invalid(z), cmap=cmap)
        ax.set_xticks(centers_x, [str(v) for v in xs], rotation=90, fontsize=7)
        ax.set_yticks(centers_y, [str(v) for v in ys], fontsize=7)
    mfig.colorbar(mesh, ax=ax, fraction=0.05)
    if trace.text is not None and z.size <= 400:
        for (i, j), value in np.ndenumerate(np.asarray(trace.text)):
            if str(value) not in ("nan", "None"):
                ax.text(centers_x[j], centers_y[i], str(value), ha="center", va="center", fontsize=7)


_DRAW = {"scatter": _draw_scatter, "scattergl": _draw_scatter, "bar": _draw_bar, "heatmap": _draw_heatmap}


def _draw_shape(axes_for, shape) -> None:
    if shape.type != "line":
        return
    xref, yref = shape.xref or "x", shape.yref or "y"
    axes = axes_for(xref.split()[0] if xref != "paper" else "x", yref.split()[0] if yref != "paper" else "y")
    style = dict(color=_color(shape.line.color, "black"), linestyle=_DASHES.get(shape.line.dash or "solid", "-"),
                 linewidth=1)
    if yref.endswith("domain") and shape.x0 == shape.x1:
        axes.ax.axvline(shape.x0, ymin=shape.y0, ymax=shape.y1, **style)
    elif xref.endswith("domain") and shape.y0 == shape.y1:
        axes.ax.axhline(shape.y0, xmin=shape.x0, xmax=shape.x1, **style)
    else:
        axes.ax.plot([shape.x0, shape.x1], [shape.y0, shape.y1], **style)


def _share_matched_axes(fig: go.Figure, axes: dict[tuple[str, str], _PngAxes]) -> None:
    """Give axes that plotly links with ``matches`` (shared_xaxes/yaxes) the same limits."""
    for position, letter in ((0, "x"), (1, "y")):
        groups: dict[str, list[_PngAxes]] = {}
        for refs, a in axes.items():
            ref = refs[position]
            groups.setdefault(_axis_layout(fig, ref, letter).matches or ref, []).append(a)
        for members in groups.values():
            if len(members) < 2:
                continue
            get = (lambda a: a.ax.get_xlim()) if letter == "x" else (lambda a: a.ax.get_ylim())
            limits = np.array([get(a) for a in members])
            low, high = limits.min(), limits.max()
            for a in members:
                (a.ax.set_xlim if letter == "x" else a.ax.set_ylim)(low, high)


def write_png(fig: go.Figure, path: str | Path, width: int = 1000, dpi: int = 100) -> Path:
    """Draw a figure of this module with matplotlib and write it as a PNG (atomically)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    height = fig.layout.height or 450
    mfig = Figure(figsize=((fig.layout.width or width) / dpi, height / dpi), dpi=dpi)
    FigureCanvasAgg(mfig)
    axes: dict[tuple[str, str], _PngAxes] = {}

    def axes_for(xref: str, yref: str) -> _PngAxes:
        if (xref, yref) not in axes:
            axes[(xref, yref)] = _PngAxes(mfig, fig, xref, yref)
        return axes[(xref, yref)]

    barmode = fig.layout.barmode or "group"
    n_bars: dict[tuple[str, str], int] = {}
    for trace in fig.data:
        key = (trace.xaxis or "x", trace.yaxis or "y")
        n_bars[key] = n_bars.get(key, 0) + (trace.type == "bar")
    for trace in fig.data:
        key = (trace.xaxis or "x", trace.yaxis or "y")
        if trace.type not in _DRAW:
            raise ValueError(f"write_png: no PNG drawing for {trace.type!r} traces")
        _DRAW[trace.type](axes_for(*key), trace, barmode=barmode, n_bars=n_bars[key], mfig=mfig)
    if not fig.data:
        axes_for("x", "y").ax.set_axis_off()
    for shape in fig.layout.shapes:
        _draw_shape(axes_for, shape)
    _share_matched_axes(fig, axes)
    for a in axes.values():
        if a.reversed_y:
            a.ax.invert_yaxis()
    m = _plot_area(mfig)
    for note in fig.layout.annotations:
        if note.xref == "paper" and note.yref == "paper":
            mfig.text(m["left"] + note.x * m["width"], m["bottom"] + note.y * m["height"], _text(note.text),
                      ha=note.xanchor if note.xanchor in ("left", "right", "center") else "center",
                      va="bottom" if note.yanchor == "bottom" else "center", fontsize=9)
    handles, labels = [], []
    for a in axes.values():
        for h, label in zip(*a.ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    if handles:
        mfig.legend(handles, labels, loc="upper left", bbox_to_anchor=(m["left"] + m["width"] + 0.06, m["bottom"] + m["height"]),
                    fontsize=8, frameon=False)
    mfig.suptitle(_text(fig.layout.title.text), fontsize=10, wrap=True)
    path = Path(path)
    with atomic_path(path) as tmp:
        mfig.savefig(tmp, format="png", bbox_inches="tight")  # keeps rotated tick labels whole
    return path
