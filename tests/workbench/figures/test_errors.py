import pandas as pd

from pldc_core.records.schema import ERROR_TYPES
from tests.workbench.figures.png_check import png_ok as _png_ok
from workbench import png
from workbench.error_breakdown import error_breakdown
from workbench.explain import error_label
from workbench.figures import errors as figures


def _queries():
    return pd.DataFrame({"error_type": pd.array(["Cor", "BG", "Oth"], dtype="str"), "area": [10, 5000, 50000],
                         "height": 480, "width": 640})


def test_stacked_error_bars(tmp_path):
    q = _queries()
    fig = figures.error_bars(error_breakdown(q).table, "size", "errors")
    assert [t.name for t in fig.data] == [error_label(t) for t in ERROR_TYPES]
    assert fig.layout.barmode == "stack" and list(fig.data[0].x) == ["all", "small", "medium", "large"]
    assert _png_ok(png.write_png(fig, tmp_path / "bars.png"))


def test_error_bars_show_shares_in_percent_and_counts_by_size_clickable():
    table = error_breakdown(_queries()).table
    shares = figures.error_bars(table, "size", "errors")
    assert shares.layout.yaxis.title.text == "share (%)" and shares.layout.yaxis.tickformat == ".0%"
    assert shares.layout.xaxis.title.text == "object size"
    assert shares.layout.legend.orientation == "h" and shares.layout.legend.y < 0
    counts = figures.error_bars(table, "size", "counts", value="count")
    assert counts.layout.yaxis.title.text == "pseudo-labels"
    cor = counts.data[0]
    assert list(cor.x) == ["small", "medium", "large"] and list(cor.y) == [1, 0, 0]  # 'all' is their sum: left out
    assert [list(c) for c in cor.customdata] == [["small", "Cor"], ["medium", "Cor"], ["large", "Cor"]]
    assert "Cor = correct" in cor.hovertemplate


def test_error_trend_one_panel_per_size_with_the_current_checkpoint_outlined(tmp_path):
    trend = pd.concat([error_breakdown(_queries()).table.assign(iteration=it) for it in (500, 1000)])
    fig = figures.error_trend(trend, kept=True, current=1000)
    assert len(fig.data) == 4 * len(ERROR_TYPES) and fig.layout.title.text.endswith("(kept by the run's filter)")
    assert [a.text for a in fig.layout.annotations] == ["all", "small", "medium", "large"]
    assert fig.layout.yaxis.title.text == "share (%)" and fig.layout.yaxis.tickformat == ".0%"
    assert list(fig.data[0].x) == ["500", "1000"] and list(fig.data[0].marker.line.width) == [0, 2]
    assert _png_ok(png.write_png(fig, tmp_path / "trend.png"))
    none = figures.error_trend(trend.assign(count=0), kept=False, empty_message="the run kept none")
    assert not none.data and none.layout.annotations[0].text == "the run kept none"


def test_error_bars_of_several_checkpoints():
    table = error_breakdown(_queries()).table
    fig = figures.error_bars_by_checkpoint({"A": table, "B": table.iloc[:0]}, "compare")
    assert list(fig.data[0].x) == ["A<br>all", "A<br>small", "A<br>medium", "A<br>large"]
    nothing = figures.error_bars_by_checkpoint({"A": table.iloc[:0]}, "compare")
    assert "ground truth" in nothing.layout.annotations[0].text
