import numpy as np
import pandas as pd
import pytest

from tests.workbench.figures.png_check import png_ok as _png_ok
from workbench import png
from workbench.figures import thresholds as figures
from workbench.thresholds import threshold_study


def _study(n=500):
    rng = np.random.default_rng(0)
    iou = rng.uniform(0, 1, n).astype(np.float32)
    q = pd.DataFrame({"c": rng.uniform(0, 1, n).astype(np.float32), "m": rng.uniform(0, 1, n).astype(np.float32),
                      "iou": iou, "error_type": pd.array(np.where(iou > 0.5, "Cor", "BG"), dtype="str"),
                      "gt_id": np.arange(n), "gt_class": np.zeros(n, np.int16), "pred_class": np.zeros(n, np.int16)})
    q["s"] = q["c"] * q["m"]
    return threshold_study(q, pd.DataFrame({"gt_id": np.arange(n)}), {"c_t": 0.85, "m_t": 0.9, "s_t": 0.7})


def test_threshold_heatmap_marks_best_and_run(tmp_path):
    study = _study()
    fig = figures.threshold_heatmap(study.ddtf, "f1", study.best_ddtf, study.run_ddtf)
    assert fig.data[0].type == "heatmap" and np.asarray(fig.data[0].z).shape == (10, 10)
    assert [t.name for t in fig.data[1:]] == ["best by F1", "the run's pair"]
    assert fig.data[2].x[0] == 0.85 and fig.data[2].y[0] == 0.9
    # the marks are outlines, so the value written in their cell stays readable ...
    assert all(t.marker.symbol.endswith("-open") for t in fig.data[1:])
    grid = study.ddtf.pivot(index="m_t", columns="c_t", values="f1")
    i, j = list(grid.index).index(study.best_ddtf["m_t"]), list(grid.columns).index(study.best_ddtf["c_t"])
    assert fig.data[0].text[i][j] == pytest.approx(round(study.best_ddtf["f1"], 2))
    # ... and the legend lies under the plot, away from the colour bar on its right
    assert fig.layout.legend.orientation == "h" and fig.layout.legend.y < 0 and fig.layout.legend.yanchor == "top"
    curves = figures.threshold_curves(study.coupled, 0.7)
    assert [t.name for t in curves.data] == ["precision", "recall", "f1", "class_accuracy", "kept"]
    assert len(curves.layout.shapes) == 2
    assert _png_ok(png.write_png(fig, tmp_path / "heat.png"))
    assert _png_ok(png.write_png(curves, tmp_path / "curves.png"))


def test_sweeps_name_their_axes():
    study = _study()
    heat = figures.threshold_heatmap(study.ddtf, "kept")
    assert (heat.layout.xaxis.title.text, heat.layout.yaxis.title.text) == ("class threshold c_t",
                                                                            "mask threshold m_t")
    assert heat.data[0].colorbar.title.text == "pseudo-labels kept"
    curves = figures.threshold_curves(study.coupled)
    assert curves.layout.xaxis.title.text == curves.layout.xaxis2.title.text == "score threshold s_t"
    assert (curves.layout.yaxis.title.text, curves.layout.yaxis2.title.text) == (figures.FRACTION_AXIS,
                                                                                 "pseudo-labels")


def test_what_if_marks_the_setting_and_says_why_precision_is_missing(tmp_path):
    grid = np.round(np.linspace(0, 1, 11), 2)
    curves = {"c": pd.DataFrame({"c_t": grid, "kept": 10 - np.arange(11), "precision": np.linspace(0.5, 1, 11),
                                 "recall": np.linspace(1, 0, 11)}),
              "m": pd.DataFrame({"m_t": grid, "kept": 10 - np.arange(11), "precision": np.linspace(0.4, 1, 11),
                                 "recall": np.linspace(1, 0, 11)})}
    point = {"c_t": 0.3, "m_t": 0.6, "kept": 4, "precision": 0.75, "recall": 0.5, "f1": 0.6}
    run = {"c_t": 0.5, "m_t": 0.5, "kept": 5, "precision": 0.7, "recall": 0.6, "f1": 0.65}
    fig = figures.what_if_figure(curves, point, run)
    assert [t.name for t in fig.data if t.showlegend] == ["vary c_t", "current", "the run's", "vary m_t"]
    assert {t.x[0] for t in fig.data if t.name == "current"} == {0.3, 0.6}
    assert fig.layout.title.text == "What-if: 4 kept, precision 0.75, recall 0.50, F1 0.60"
    assert fig.layout.yaxis.title.text == "pseudo-labels"   # the kept panel; precision and recall are fractions
    assert [fig.layout[f"xaxis{s}"].title.text for s in ("", "2", "3")] == ["threshold"] * 3
    nothing = figures.what_if_figure(curves, {**point, "kept": 0, "precision": np.nan}, run,
                                     best={"c_t": 0.2, "m_t": 0.3, "kept": 7, "f1": 0.5})
    why = " ".join(a.text for a in nothing.layout.annotations).replace("<br>", " ")
    assert "nothing is kept at these thresholds" in why and "best by F1: c_t = 0.20 and m_t = 0.30" in why
    no_gt = figures.what_if_figure(curves, {**point, "precision": None}, has_gt=False)
    assert "need ground truth" in " ".join(a.text for a in no_gt.layout.annotations)
    assert _png_ok(png.write_png(fig, tmp_path / "what_if.png"))


def test_the_same_thresholds_at_several_checkpoints():
    points = {"A": {"precision": 0.5, "recall": 0.4, "f1": 0.44, "class_accuracy": 0.9, "mean_iou": 0.7, "kept": 12},
              "B": {"kept": 0, "precision": np.nan}}
    fig = figures.what_if_by_checkpoint(points)
    assert [t.name for t in fig.data if t.showlegend is not False] == ["A", "B"]
    assert fig.layout.yaxis.title.text == figures.FRACTION_AXIS and fig.layout.yaxis2.title.text == "pseudo-labels"
    assert fig.layout.title.subtitle.text.startswith("B: nothing kept at these thresholds")
