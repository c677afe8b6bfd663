"""What every figure shares: an empty one says why, in its middle."""
import pandas as pd

from tests.workbench.figures.png_check import png_ok as _png_ok
from tests.workbench.figures.test_quality import _scatter
from workbench import png
from workbench.error_breakdown import error_breakdown
from workbench.figures import charts, errors, quality, style, training


def test_empty_inputs_give_a_message_figure(tmp_path):
    empty = [quality.quality_scatter(_scatter(0)),
             charts.line_figure(pd.DataFrame({"x": [], "y": []}), "x", "y", title="t"),
             training.training_curves(pd.DataFrame(), ["loss"], "training"),
             errors.error_bars(error_breakdown(pd.DataFrame({"error_type": pd.array([], dtype="str"),
                                                             "area": [], "height": [], "width": []})).table,
                               "size", "errors")]
    for i, fig in enumerate(empty):
        assert not fig.data and len(fig.layout.annotations) == 1
        assert _png_ok(png.write_png(fig, tmp_path / f"empty{i}.png"))


def test_empty_views_say_the_reason_they_are_given():
    table = error_breakdown(pd.DataFrame({"error_type": pd.array([], dtype="str"), "area": [], "height": [],
                                          "width": []})).table
    why = ("The run's DDTF (c >= 0.99 and m >= 0.99) kept no pseudo-label at iteration 1,000: showing all "
           "queries instead; to see a kept set, try c_t = 0.75 and m_t = 0.85.")
    for fig in (errors.error_bars(table, "size", "errors", empty_message=why),
                charts.line_figure(pd.DataFrame({"x": [], "y": []}), "x", "y", empty_message=why),
                training.training_curves(pd.DataFrame(), ["loss"], "training", empty_message=why)):
        assert not fig.data and fig.layout.annotations[0].text.replace("<br>", " ") == why
        assert "<br>" in fig.layout.annotations[0].text  # a long reason is wrapped, not cut off


def test_the_empty_figure_hides_its_axes_and_keeps_the_toolbar_clear_of_the_title():
    fig = style.empty("Errors", "no ground truth in these records")
    assert fig.layout.title.text == "Errors" and fig.layout.xaxis.visible is False
    assert fig.layout.yaxis.visible is False and fig.layout.modebar.orientation == "v"
    assert fig.layout.annotations[0].text == "no ground truth in these records"
