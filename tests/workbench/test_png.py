import plotly.graph_objects as go
from matplotlib.figure import Figure

from workbench import png


def _labels(layout: dict, values=(0.0, 0.5, 1.0)) -> list[str]:
    ax = Figure().add_subplot()
    png._format_ticks(ax.yaxis, go.Layout(yaxis=layout).yaxis)
    formatter = ax.yaxis.get_major_formatter()
    return [formatter(v, i) for i, v in enumerate(values)]


def test_tick_labels_keep_their_unit_as_in_the_browser():
    assert _labels(dict(tickformat=".0%")) == ["0%", "50%", "100%"]       # shares: fractions shown in %
    assert _labels(dict(ticksuffix="%"), (10.0, 22.5)) == ["10%", "22.5%"]  # AP: already in percent


def test_hidden_tick_labels_stay_hidden():
    ax = Figure().add_subplot()
    png._format_ticks(ax.yaxis, go.Layout(yaxis=dict(showticklabels=False)).yaxis)
    assert not ax.yaxis.get_major_ticks()[0].label1.get_visible()
