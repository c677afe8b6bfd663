import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr, spearmanr

from workbench.quality import (better_predictor, correlation, correlations, correlations_per_class,
                               quality_vs_iou, rank_average, scatter_data)


def _queries(c, m, iou, pred_class=None, error_type=None):
    n = len(c)
    c, m = np.asarray(c, np.float32), np.asarray(m, np.float32)
    return pd.DataFrame({
        "image_id": np.arange(n, dtype=np.int64), "query": np.zeros(n, np.int16),
        "pred_class": np.asarray(pred_class if pred_class is not None else [0] * n, np.int16),
        "c": c, "m": m, "s": c * m, "iou": np.asarray(iou, np.float32),
        "error_type": pd.array(error_type if error_type is not None else [None] * n, dtype="str"),
    })


# Worked by hand: c = [.9, .8, .3, .2], iou = [.8, .6, .4, .2] (plus a row with unknown GT).
# Deviations c: [.35, .25, -.25, -.35], iou: [.3, .1, -.1, -.3]; sum of products .26,
# sums of squares .37 and .2 -> Pearson .26 / sqrt(.074) = 0.95577. Ranks agree -> Spearman 1.
# m = [.5, .9, .7, .6] has ranks [1, 4, 3, 2] against iou ranks [4, 3, 2, 1]:
# centred [-1.5, 1.5, .5, -.5] . [1.5, .5, -.5, -1.5] = -1, over 5 -> Spearman -0.2.
C, M, IOU = [0.9, 0.8, 0.3, 0.2, 0.99], [0.5, 0.9, 0.7, 0.6, 0.99], [0.8, 0.6, 0.4, 0.2, np.nan]


def test_correlations_hand_worked():
    table = correlations(_queries(C, M, IOU)).set_index("score")
    assert table.loc["c", "pearson"] == pytest.approx(0.26 / np.sqrt(0.37 * 0.2), abs=1e-5)
    assert table.loc["c", "spearman"] == pytest.approx(1.0)
    assert table.loc["m", "spearman"] == pytest.approx(-0.2)
    assert (table["n"] == 4).all()  # the row with unknown GT is left out
    assert better_predictor(table.reset_index()) == "c"


def test_correlation_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 10, size=300).astype(float)
    y = x + rng.normal(0, 3, size=300)
    pearson, spearman, n = correlation(x, y)
    assert pearson == pytest.approx(pearsonr(x, y)[0])
    assert spearman == pytest.approx(spearmanr(x, y)[0])
    assert n == 300
    np.testing.assert_allclose(rank_average(np.array([3.0, 1.0, 3.0, 2.0])), [3.5, 1.0, 3.5, 2.0])


def test_constant_scores_and_too_few_rows_give_nan():
    pearson, spearman, n = correlation([0.5, 0.5, 0.5, 0.5], [0.1, 0.2, 0.3, 0.4])
    assert np.isnan(pearson) and np.isnan(spearman) and n == 4
    pearson, spearman, n = correlation([0.1, 0.2], [0.3, 0.4])
    assert np.isnan(pearson) and np.isnan(spearman) and n == 2


def test_per_class():
    q = _queries(C, M, IOU, pred_class=[0, 0, 0, 1, 1])
    per = correlations_per_class(q)
    zero = per[per["pred_class"] == 0].set_index("score")
    assert zero.loc["c", "spearman"] == pytest.approx(1.0)  # c [.9,.8,.3] vs iou [.8,.6,.4]
    assert (zero["n"] == 3).all()
    one = per[per["pred_class"] == 1]
    assert (one["n"] == 1).all() and one["pearson"].isna().all()  # a single row with known GT


def test_scatter_data_keeps_rows_with_known_gt():
    q = _queries(C, M, IOU, error_type=["Cor", "Cor", "Loc", "BG", None])
    pts = scatter_data(q)
    assert len(pts) == 4 and pts["iou"].notna().all()
    assert {"s", "c", "m", "iou", "error_type"} <= set(pts.columns)


def test_no_gt_at_all():
    report = quality_vs_iou(_queries(C, M, [np.nan] * 5))
    assert not report.has_gt
    assert report.scatter.empty and report.per_class.empty
    assert (report.overall["n"] == 0).all() and report.overall["spearman"].isna().all()
    assert better_predictor(report.overall) is None


def test_no_predictions():
    report = quality_vs_iou(_queries([], [], []))
    assert not report.has_gt and report.scatter.empty
    assert list(report.overall["score"]) == ["s", "c", "m"]
