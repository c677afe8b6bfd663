"""PNG export of the plotly figures of ``workbench.figures`` (and any like them), drawn with matplotlib.

``write_png`` reads the plotly figure itself (scatter, bar and heatmap traces, subplot domains,
shapes, annotations, tick formats), so each figure kind has a single builder whether it ends up interactive in
HTML or as a PNG. plotly's own exporter, kaleido, needs a Chrome binary that these machines
lack. matplotlib is imported only when a PNG is written.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from pldc_core.atomic import atomic_path

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
        for axis, layout in ((self.ax.xaxis, xl), (self.ax.yaxis, yl)):
            _format_ticks(axis, layout)
        self.reversed_y = yl.autorange == "reversed"
        self.categories: list[str] = []
        self.stack: dict[str, float] = {}
        self.bar_traces = 0


def _format_ticks(axis, layout) -> None:
    """plotly's tick labels on a matplotlib axis: hidden, in percent (a tickformat ending in '%'), with a suffix."""
    from matplotlib.ticker import FuncFormatter, PercentFormatter

    if layout.showticklabels is False:
        axis.set_tick_params(labelleft=False, labelbottom=False)
    elif (layout.tickformat or "").endswith("%"):
        axis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    elif layout.ticksuffix:
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}{layout.ticksuffix}"))


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
        symbol = str(trace.marker.symbol or "circle")
        hollow = symbol.endswith("-open")  # an outline only: what lies under it stays visible
        edge = marker_color if hollow else ("black" if trace.marker.line and trace.marker.line.color else "none")
        axes.ax.scatter(x, y, s=float(size) ** 2, color=marker_color, label=_label(trace),
                        alpha=trace.marker.opacity if trace.marker.opacity is not None else 1.0,
                        marker=_MARKERS.get(symbol.removesuffix("-open"), "o"), edgecolors=edge,
                        facecolors="none" if hollow else None,
                        linewidths=(trace.marker.line.width or 2) if hollow else None, zorder=3)


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
