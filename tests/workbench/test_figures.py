import numpy as np
import pandas as pd
import pytest

from pldc_core.records.schema import ERROR_TYPES
from workbench import figures, png
from workbench.confusion import confusion_matrix
from workbench.error_breakdown import error_breakdown
from workbench.thresholds import threshold_study


def _scatter(n, seed=0):
    rng = np.random.default_rng(seed)
    c, m = rng.uniform(0, 1, n).astype(np.float32), rng.uniform(0, 1, n).astype(np.float32)
    return pd.DataFrame({"c": c, "m": m, "s": c * m, "iou": rng.uniform(0, 1, n).astype(np.float32),
                         "error_type": rng.choice(["Cor", "Loc", "BG"], n)})


def _png_ok(path):
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_quality_scatter_subsamples_and_draws_threshold_lines(tmp_path):
    fig = figures.quality_scatter(_scatter(10_000), {"c_t": 0.85, "m_t": 0.9, "s_t": 0.765}, max_points=500)
    assert sum(len(t.x) for t in fig.data) == 3 * 500  # the same 500 rows on each of the 3 panels
    assert {t.name for t in fig.data} == {"Cor", "Loc", "BG"}
    assert "500 of 10,000" in fig.layout.title.text and "seed 0" in fig.layout.title.text
    assert sorted(shape.x0 for shape in fig.layout.shapes) == pytest.approx([0.765, 0.85, 0.9])
    again = figures.quality_scatter(_scatter(10_000), max_points=500)
    assert np.array_equal(fig.data[0].x, again.data[0].x)  # seeded
    assert not again.layout.shapes
    assert _png_ok(png.write_png(fig, tmp_path / "scatter.png"))


def test_threshold_heatmap_marks_best_and_run(tmp_path):
    rng = np.random.default_rng(0)
    n = 500
    iou = rng.uniform(0, 1, n).astype(np.float32)
    q = pd.DataFrame({"c": rng.uniform(0, 1, n).astype(np.float32), "m": rng.uniform(0, 1, n).astype(np.float32),
                      "iou": iou, "error_type": pd.array(np.where(iou > 0.5, "Cor", "BG"), dtype="str"),
                      "gt_id": np.arange(n), "gt_class": np.zeros(n, np.int16), "pred_class": np.zeros(n, np.int16)})
    q["s"] = q["c"] * q["m"]
    study = threshold_study(q, pd.DataFrame({"gt_id": np.arange(n)}), {"c_t": 0.85, "m_t": 0.9, "s_t": 0.7})
    fig = figures.threshold_heatmap(study.ddtf, "f1", study.best_ddtf, study.run_ddtf)
    assert fig.data[0].type == "heatmap" and np.asarray(fig.data[0].z).shape == (10, 10)
    assert [t.name for t in fig.data[1:]] == ["best by F1", "the run's pair"]
    assert fig.data[2].x[0] == 0.85 and fig.data[2].y[0] == 0.9
    curves = figures.threshold_curves(study.coupled, 0.7)
    assert [t.name for t in curves.data] == ["precision", "recall", "f1", "class_accuracy", "kept"]
    assert len(curves.layout.shapes) == 2
    assert _png_ok(png.write_png(fig, tmp_path / "heat.png"))
    assert _png_ok(png.write_png(curves, tmp_path / "curves.png"))


def test_confusion_heatmap_limits_classes(tmp_path):
    n_classes = 40
    rng = np.random.default_rng(1)
    n = 2000
    gt_class = rng.integers(0, n_classes, n)
    q = pd.DataFrame({"image_id": np.arange(n), "query": 0, "pred_class": np.where(rng.random(n) < 0.7, gt_class,
                                                                                    rng.integers(0, n_classes, n)),
                      "gt_id": np.arange(n), "gt_class": gt_class, "iou": np.full(n, 0.8, np.float32)})
    conf = confusion_matrix(q, pd.DataFrame({"image_id": 0, "gt_id": np.arange(n), "gt_class": gt_class}), n_classes)
    fig = figures.confusion_heatmap(conf, [f"class{i}" for i in range(n_classes)], max_classes=10)
    z = np.asarray(fig.data[0].z)
    assert z.shape == (11, 11) and fig.data[0].y[-1] == "background"
    assert fig.layout.yaxis.autorange == "reversed"
    assert _png_ok(png.write_png(fig, tmp_path / "conf.png"))


def test_stacked_error_bars(tmp_path):
    q = pd.DataFrame({"error_type": pd.array(["Cor", "BG", "Oth"], dtype="str"), "area": [10, 5000, 50000],
                      "height": 480, "width": 640})
    fig = figures.stacked_shares(error_breakdown(q).table, "size", "errors")
    assert [t.name for t in fig.data] == list(ERROR_TYPES)
    assert fig.layout.barmode == "stack" and list(fig.data[0].x) == ["all", "small", "medium", "large"]
    assert _png_ok(png.write_png(fig, tmp_path / "bars.png"))


def test_lines_bars_and_training_curves(tmp_path):
    trend = pd.DataFrame({"iteration": [500, 1000, 500, 1000], "score": ["c", "c", "m", "m"],
                          "spearman": [0.3, 0.4, 0.6, 0.7]})
    lines = figures.line_figure(trend, "iteration", "spearman", "score", "trend")
    assert [t.name for t in lines.data] == ["c", "m"] and list(lines.data[1].y) == [0.6, 0.7]
    log = pd.DataFrame({"iteration": [50, 100, 150], "loss": [3.0, 2.0, 1.5], "lr": [1e-4, 9e-5, 8e-5]})
    curves = figures.training_curves(log, ["loss", "lr", "missing"], "training")
    assert [t.name for t in curves.data] == ["loss", "lr"]
    per_class = pd.DataFrame({"from_class": [0, 1], "changed_from": [3, 0], "fixed": [1, 0], "broken": [1, 0],
                              "neutral": [1, 0], "unjudged": [0, 0]})
    bars = figures.dicc_class_bars(per_class, ["cat", "dog"])
    assert list(bars.data[0].x) == ["cat"] and bars.layout.barmode == "stack"
    for name, fig in (("lines", lines), ("curves", curves), ("bars", bars)):
        assert _png_ok(png.write_png(fig, tmp_path / f"{name}.png"))


def test_empty_inputs_give_a_message_figure(tmp_path):
    empty = [figures.quality_scatter(_scatter(0)),
             figures.line_figure(pd.DataFrame({"x": [], "y": []}), "x", "y", title="t"),
             figures.training_curves(pd.DataFrame(), ["loss"], "training"),
             figures.stacked_shares(error_breakdown(pd.DataFrame({"error_type": pd.array([], dtype="str"),
                                                                  "area": [], "height": [], "width": []})).table,
                                    "size", "errors")]
    for i, fig in enumerate(empty):
        assert not fig.data and len(fig.layout.annotations) == 1
        assert _png_ok(png.write_png(fig, tmp_path / f"empty{i}.png"))
