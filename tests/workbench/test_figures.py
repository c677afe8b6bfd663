import numpy as np
import pandas as pd
import pytest

from pldc_core.records.schema import ERROR_TYPES
from workbench import figures, png
from workbench.confusion import confusion_matrix
from workbench.error_breakdown import error_breakdown
from workbench.explain import ERROR_TYPE_RULES, error_label
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
    # the abbreviations are defined where they are first seen: in the legend and the hover text
    assert {t.name for t in fig.data} == {"Cor (correct)", "Loc (poor mask)", "BG (background)"}
    assert all(ERROR_TYPE_RULES[t.legendgroup] in t.hovertemplate for t in fig.data)
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
    assert [t.name for t in fig.data] == [error_label(t) for t in ERROR_TYPES]
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


def test_empty_views_say_the_reason_they_are_given():
    table = error_breakdown(pd.DataFrame({"error_type": pd.array([], dtype="str"), "area": [], "height": [],
                                          "width": []})).table
    why = ("The run's DDTF (c >= 0.99 and m >= 0.99) kept no pseudo-label at iteration 1,000: showing all "
           "queries instead; to see a kept set, try c_t = 0.75 and m_t = 0.85.")
    for fig in (figures.stacked_shares(table, "size", "errors", empty_message=why),
                figures.line_figure(pd.DataFrame({"x": [], "y": []}), "x", "y", empty_message=why),
                figures.training_curves(pd.DataFrame(), ["loss"], "training", empty_message=why)):
        assert not fig.data and fig.layout.annotations[0].text.replace("<br>", " ") == why
        assert "<br>" in fig.layout.annotations[0].text  # a long reason is wrapped, not cut off


def test_confusion_heatmap_without_pseudo_labels_says_why():
    # two GT instances, no pseudo-label counted: the matrix would be NaN but for the background row
    q = pd.DataFrame({"image_id": [1], "query": [0], "pred_class": [0], "gt_id": [10], "gt_class": [0],
                      "iou": np.float32([0.9]), "keep_ddtf": [False], "keep_coupled": [False]})
    gt = pd.DataFrame({"image_id": [1, 1], "gt_id": [10, 11], "gt_class": [0, 1]})
    kept = confusion_matrix(q, gt, 2, kept_by="ddtf")
    assert kept.has_gt and kept.n_pseudo_labels == 0
    fig = figures.confusion_heatmap(kept, ["cat", "dog"], empty_message="nothing kept: showing all queries")
    assert not fig.data and fig.layout.annotations[0].text == "nothing kept: showing all queries"
    everything = confusion_matrix(q, gt, 2)
    assert everything.n_pseudo_labels == 1 and figures.confusion_heatmap(everything, ["cat", "dog"]).data


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

    per_class = pd.DataFrame({"class": [0, 1, 2], "support": [3, 0, 2], "predicted": [4, 1, 0],
                              "tp": [2, 0, 0], "precision": [0.5, 0.0, np.nan], "recall": [2 / 3, np.nan, 0.0]})
    clip = figures.clip_pr_bars(per_class, ["cat", "dog", "horse"])
    assert list(clip.data[0].x) == ["cat", "dog<br><i>no bar: no GT crop</i>",
                                    "horse<br><i>no bar: never predicted</i>"]
    assert _png_ok(png.write_png(clip, tmp_path / "clip.png"))
    # one mode: the same bars; several: precision and recall panels with a bar per mode
    assert figures.clip_pr_by_mode({"crop": per_class}, ["cat", "dog", "horse"]).to_dict() == clip.to_dict()
    modes = figures.clip_pr_by_mode({"box": per_class, "mask_pool": per_class.assign(precision=0.25)},
                                    ["cat", "dog", "horse"])
    assert [(t.name, t.xaxis) for t in modes.data] == [("box", "x"), ("box", "x2"), ("mask_pool", "x"),
                                                       ("mask_pool", "x2")]
    assert list(modes.data[2].y) == [0.25] * 3 and list(modes.data[3].y) == pytest.approx([2 / 3, np.nan, 0.0],
                                                                                        nan_ok=True)
    assert [t.showlegend for t in modes.data] == [True, False, True, False]
    assert _png_ok(png.write_png(modes, tmp_path / "clip_modes.png"))


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
