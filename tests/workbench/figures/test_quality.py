import numpy as np
import pandas as pd
import pytest

from tests.workbench.figures.png_check import png_ok as _png_ok
from workbench import png
from workbench.explain import ERROR_TYPE_RULES
from workbench.figures import quality as figures


def _scatter(n, seed=0):
    rng = np.random.default_rng(seed)
    c, m = rng.uniform(0, 1, n).astype(np.float32), rng.uniform(0, 1, n).astype(np.float32)
    return pd.DataFrame({"c": c, "m": m, "s": c * m, "iou": rng.uniform(0, 1, n).astype(np.float32),
                         "error_type": rng.choice(["Cor", "Loc", "BG"], n)})


def test_quality_scatter_subsamples_and_draws_threshold_lines(tmp_path):
    fig = figures.quality_scatter(_scatter(10_000), {"c_t": 0.85, "m_t": 0.9, "s_t": 0.765}, max_points=500)
    assert sum(len(t.x) for t in fig.data) == 3 * 500  # the same 500 rows on each of the 3 panels
    # the abbreviations are defined where they are first seen: in the legend and the hover text
    assert {t.name for t in fig.data} == {"Cor (correct)", "Loc (poor mask)", "BG (background)"}
    assert all(ERROR_TYPE_RULES[t.legendgroup] in t.hovertemplate for t in fig.data)
    assert "500 of 10,000" in fig.layout.title.text and "seed 0" in fig.layout.title.text
    assert sorted(shape.x0 for shape in fig.layout.shapes) == pytest.approx([0.765, 0.85, 0.9])
    again = figures.quality_scatter(_scatter(10_000), max_points=500)
    assert np.array_equal(fig.data[0].x, again.data[0].x)  # seeded
    assert not again.layout.shapes
    assert _png_ok(png.write_png(fig, tmp_path / "scatter.png"))


def test_quality_scatter_names_what_each_axis_measures():
    fig = figures.quality_scatter(_scatter(100))
    assert [fig.layout[f"xaxis{s}"].title.text for s in ("", "2", "3")] == list(figures.SCORE_LABELS.values())
    assert fig.layout.yaxis.title.text == "mask IoU with the best GT"
    bars = figures.correlation_bars(pd.DataFrame({"score": ["s", "c", "m"], "pearson": [0.5, 0.4, 0.6],
                                                  "spearman": [0.5, 0.3, 0.7], "n": [9, 9, 9]}))
    assert bars.layout.yaxis.title.text == figures.CORRELATION_AXIS
    trend = figures.correlation_trend(pd.DataFrame({"iteration": [500, 1000], "score": ["c", "c"],
                                                    "spearman": [0.3, 0.4]}), "needs GT")
    assert trend.data[0].name == figures.SCORE_LABELS["c"] and trend.layout.xaxis.title.text == "iteration"
    assert "needs GT" in figures.correlation_trend(pd.DataFrame({"iteration": [], "spearman": []}),
                                                   "needs GT").layout.annotations[0].text


def test_per_class_bars_say_why_a_bar_is_missing(tmp_path):
    # class 0: 5 queries with GT; class 1: only 2 (no correlation); class 2: c never varies
    rows = []
    for cls, n, c_const in ((0, 5, False), (1, 2, False), (2, 4, True)):
        for k in range(n):
            rows.append({"pred_class": cls, "c": 0.5 if c_const else 0.1 * k, "m": 0.2 * k, "s": 0.0,
                         "iou": 0.15 * k + 0.01 * cls})
    from workbench.quality import correlations_per_class

    fig = figures.class_correlation_bars(correlations_per_class(pd.DataFrame(rows)), ["cat", "dog", "horse"])
    labels = dict(zip([x.split("<br>")[0] for x in fig.data[0].x], fig.data[0].x))
    assert labels["cat"] == "cat"
    assert "no bar: 2 with GT" in labels["dog"] and "no bar: constant c" in labels["horse"]
    assert np.isnan(fig.data[0].y[list(labels).index("dog")])
