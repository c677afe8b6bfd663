import pandas as pd

from tests.workbench.figures.png_check import png_ok as _png_ok
from workbench import png
from workbench.figures import charts as figures


def test_lines(tmp_path):
    trend = pd.DataFrame({"iteration": [500, 1000, 500, 1000], "score": ["c", "c", "m", "m"],
                          "spearman": [0.3, 0.4, 0.6, 0.7]})
    lines = figures.line_figure(trend, "iteration", "spearman", "score", "trend")
    assert [t.name for t in lines.data] == ["c", "m"] and list(lines.data[1].y) == [0.6, 0.7]
    assert _png_ok(png.write_png(lines, tmp_path / "lines.png"))


def test_a_long_log_is_thinned_to_bin_means():
    log = pd.DataFrame({"iteration": range(1, 3001), "loss": [1.0, 3.0] * 1500})
    thin = figures.thin(log, max_points=1500)
    assert len(thin) == 1500 and (thin["loss"] == 2.0).all() and thin["iteration"].iloc[0] == 1.5
    short = log.head(10)
    assert figures.thin(short) is short
