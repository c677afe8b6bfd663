import pandas as pd

from tests.workbench.figures.png_check import png_ok as _png_ok
from workbench import png
from workbench.figures import training as figures


def test_training_curves(tmp_path):
    log = pd.DataFrame({"iteration": [50, 100, 150], "loss": [3.0, 2.0, 1.5], "lr": [1e-4, 9e-5, 8e-5]})
    curves = figures.training_curves(log, ["loss", "lr", "missing"], "training")
    assert [t.name for t in curves.data] == ["loss", "lr"]
    assert _png_ok(png.write_png(curves, tmp_path / "curves.png"))


def test_each_panel_of_the_log_says_its_unit():
    log = pd.DataFrame({"iteration": [50, 100], "dicc_w": [0.5, 0.5], "lr": [1e-4, 9e-5], "sec_per_iter": [0.2, 0.3]})
    fig = figures.training_curves(log, figures.SETTINGS, "settings", figures.LOG_NAMES)
    assert [fig.layout[f"yaxis{s}"].title.text for s in ("", "2", "3")] == ["w (0 to 1)", "learning rate", "seconds"]
    assert [a.text for a in fig.layout.annotations] == ["DICC weight w", "learning rate", "time per iteration"]
    assert fig.layout.xaxis3.title.text == "iteration"


def test_losses_and_counts_in_one_panel_with_the_end_of_the_burn_in():
    log = pd.DataFrame({"iteration": [50, 100, 150, 200], "loss": [3.0, 2.5, 2.2, 2.0],
                        "loss_sup": [3.0, 2.5, 1.2, 1.0], "loss_unsup": [0.0, 0.0, 1.0, 1.0],
                        "n_queries": [None, None, 40, 40], "n_kept": [None, None, 5, 7]})
    losses = figures.loss_figure(log, burn_in=100)
    assert [t.name for t in losses.data] == ["total", "supervised", "unsupervised (PL-DC)"]
    assert losses.layout.yaxis.title.text == "loss" and losses.layout.xaxis.title.text == "iteration"
    assert [s.x0 for s in losses.layout.shapes] == [100] and "burn-in" in losses.layout.annotations[0].text
    assert losses.layout.legend.orientation == "h" and losses.layout.legend.y < 0
    counts = figures.count_figure(log, burn_in=100)
    assert [t.name for t in counts.data] == ["queries", "kept (run's filter)"]
    assert counts.layout.yaxis.title.text == "queries per step"
    before = figures.count_figure(log.head(2)[["iteration", "loss"]], burn_in=100)
    assert "after the burn-in (iteration 100)" in before.layout.annotations[0].text.replace("<br>", " ")
    no_log = figures.count_figure(pd.DataFrame(), no_log="no metrics.jsonl in the run folder")
    assert no_log.layout.annotations[0].text.replace("<br>", " ") == "no metrics.jsonl in the run folder"


def test_evaluation_figure_one_marked_trace_per_model_in_percent(tmp_path):
    evals = pd.DataFrame({"iteration": [250, 500, 1000], "model": ["student", "teacher", "teacher"],
                          "AP": [10.0, 15.25, 22.5], "AP50": [20.0, 25.0, 30.0]})
    fig = figures.evaluation_figure(evals, metrics=("AP", "AP50", "AP75"))
    assert [(t.name, len(t.x)) for t in fig.data] == [("student", 1), ("teacher", 2)] * 2  # AP75 was not logged
    assert all("markers" in t.mode for t in fig.data)
    assert [t.name for t in fig.data if t.showlegend] == ["student", "teacher"]  # one legend entry per model
    teacher_ap = fig.data[1]
    assert list(teacher_ap.y) == [15.25, 22.5] and list(teacher_ap.text) == ["15.25%", "22.50%"]
    assert fig.layout.yaxis.title.text == "mask AP (%)" and fig.layout.yaxis.ticksuffix == "%"
    assert fig.layout.yaxis2.ticksuffix == "%"
    assert "no evaluation" in figures.evaluation_figure(pd.DataFrame()).layout.annotations[0].text
    assert _png_ok(png.write_png(fig, tmp_path / "eval.png"))


def test_evaluation_in_one_panel_names_metric_and_model(tmp_path):
    evals = pd.DataFrame({"iteration": [250, 500, 1000], "model": ["student", "teacher", "teacher"],
                          "AP": [10.0, 15.25, 22.5], "AP50": [20.0, 25.0, 30.0]})
    fig = figures.evaluation_figure(evals, ("AP", "AP50", "AP75"), panels=False, title="Mask AP (%)")
    assert [t.name for t in fig.data] == ["AP · student", "AP · teacher", "AP50 · student", "AP50 · teacher"]
    assert fig.data[0].line.color == fig.data[1].line.color != fig.data[2].line.color  # a metric's colour
    assert fig.data[0].line.dash != fig.data[1].line.dash                               # a model's dash
    assert fig.layout.yaxis.title.text == "mask AP (%)" and fig.layout.yaxis.ticksuffix == "%"
    assert list(fig.data[1].text) == ["15.25%", "22.50%"]
    assert _png_ok(png.write_png(fig, tmp_path / "eval_one_panel.png"))


def test_per_class_figure_bars_the_first_and_last_evaluation(tmp_path):
    table = pd.DataFrame({"model": ["student", "teacher", "teacher"], "class": ["disk", "disk", "ellipse"],
                          "first": [10.0, 12.0, 3.0], "last": [11.0, 20.0, 4.5],
                          "first_iteration": [500, 1000, 1000], "last_iteration": [500, 3000, 3000],
                          "change": [1.0, 8.0, 1.5]})
    fig = figures.per_class_figure(table)
    first, last = fig.data
    assert list(last.x) == ["disk", "ellipse"] and list(last.y) == [20.0, 4.5]  # the teacher, highest first
    assert list(last.text) == ["20.00%", "4.50%"] and last.name == "iteration 3000"
    assert list(first.y) == [12.0, 3.0] and first.name == "iteration 1000"
    assert fig.layout.barmode == "group" and fig.layout.yaxis.ticksuffix == "%" and "teacher" in fig.layout.title.text
    assert _png_ok(png.write_png(fig, tmp_path / "per_class.png"))
    only_one = figures.per_class_figure(table[table["model"] == "student"])
    assert [t.name for t in only_one.data] == ["iteration 500"]  # one evaluation: one set of bars
    assert "no per-class AP logged" in figures.per_class_figure(table.iloc[0:0]).layout.annotations[0].text
