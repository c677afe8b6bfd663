import numpy as np
import pandas as pd

from tests.workbench.figures.png_check import png_ok as _png_ok
from workbench import png
from workbench.confusion import confusion_matrix
from workbench.figures import confusion as figures


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


def test_class_accuracy_trend_names_its_lines_and_axes():
    accuracy = pd.DataFrame({"iteration": [500, 500, 1000, 1000], "labels": ["teacher", "after DICC"] * 2,
                             "class_accuracy": [0.5, 0.6, 0.7, 0.8]})
    fig = figures.class_accuracy_trend(accuracy, "no GT")
    assert [t.name for t in fig.data] == ["teacher", "after DICC"] and list(fig.data[1].y) == [0.6, 0.8]
    assert fig.layout.yaxis.title.text == "class accuracy (0 to 1)" and fig.layout.xaxis.title.text == "iteration"
