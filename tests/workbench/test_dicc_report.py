import numpy as np
import pandas as pd
import pytest

from workbench.dicc_report import (clip_precision_recall, clip_precision_recall_by_mode, dicc_report, mode_summary,
                                   read_clip_table)


def _queries(rows):
    """rows: (pred_class, corrected_class, gt_class, iou)."""
    pred, corr, gt_class, iou = (list(v) for v in zip(*rows))
    return pd.DataFrame({"pred_class": np.asarray(pred, np.int16), "corrected_class": np.asarray(corr, np.int16),
                         "gt_class": np.asarray(gt_class, np.int16), "iou": np.asarray(iou, np.float32),
                         "keep_ddtf": np.ones(len(pred), bool)})


ROWS = [
    (0, 1, 1, 0.8),       # a: fixed
    (1, 0, 1, 0.9),       # b: broken
    (0, 2, 1, 0.7),       # c: neutral (wrong -> another wrong)
    (1, 1, 1, 0.6),       # d: kept right
    (2, 2, 1, 0.6),       # e: kept wrong
    (0, 1, 1, 0.2),       # f: changed, but IoU .2: unjudged
    (0, -1, 1, 0.9),      # g: DICC did not run
    (2, 0, -1, np.nan),   # h: changed, image without GT: unjudged
]


def test_summary_hand_worked():
    r = dicc_report(_queries(ROWS))
    assert r.ran and r.has_gt
    s = r.summary
    assert (s["n_ran"], s["n_changed"], s["n_judged"]) == (7, 5, 5)
    assert [s[k] for k in ("fixed", "broken", "neutral", "kept_right", "kept_wrong", "unjudged")] == [1, 1, 1, 1, 1, 2]
    assert s["net"] == 0
    assert s["accuracy_before"] == pytest.approx(2 / 5)  # b, d
    assert s["accuracy_after"] == pytest.approx(2 / 5)   # a, d


def test_clip_accuracy_reads_clips_own_class_on_judged_rows_only():
    q = _queries(ROWS)
    assert np.isnan(dicc_report(q).summary["clip_accuracy"])  # records without CLIP's classes
    # CLIP's top class per row a..h; row f (IoU 0.2) and h (no GT) are unjudged, g did not run
    q["clip_top5_classes"] = [np.array([1, 0]), np.array([1, 2]), np.array([2, 1]), np.array([0, 1]),
                              np.array([1, 2]), np.array([1, 0]), None, np.array([0, 2])]
    s = dicc_report(q).summary
    assert s["clip_accuracy"] == pytest.approx(3 / 5)  # a, b, e right; c, d wrong


def test_per_class_and_transitions():
    r = dicc_report(_queries(ROWS))
    per = r.per_class.set_index("from_class")
    assert per.loc[0, ["n_ran", "changed_from", "fixed", "neutral", "unjudged"]].tolist() == [3, 3, 1, 1, 1]
    assert per.loc[1, ["n_ran", "changed_from", "broken", "kept_right"]].tolist() == [2, 1, 1, 1]
    assert per.loc[2, ["n_ran", "changed_from", "kept_wrong", "unjudged"]].tolist() == [2, 1, 1, 1]
    assert per["changed_to"].to_dict() == {0: 2, 1: 2, 2: 1}
    assert per.loc[0, "net"] == 1 and per.loc[1, "net"] == -1
    t = r.transitions
    assert list(zip(t["from_class"], t["to_class"], t["count"])) == [(0, 1, 2), (0, 2, 1), (1, 0, 1), (2, 0, 1)]
    first = t.iloc[0]
    assert (first["fixed"], first["unjudged"], first["broken"]) == (1, 1, 0)


def test_per_class_changes_on_no_gt_leave_out_unchanged_rows():
    r = dicc_report(_queries(ROWS + [(1, 1, -1, np.nan)]))  # i: unchanged, on no GT
    per = r.per_class.set_index("from_class")
    assert per["unjudged"].to_dict() == {0: 1, 1: 1, 2: 1}
    assert per["changed_unjudged"].to_dict() == {0: 1, 1: 0, 2: 1}
    from workbench.figures.dicc import dicc_class_bars

    fig = dicc_class_bars(r.per_class)
    bars = {t.name: list(t.y) for t in fig.data}
    assert bars["changed, on no GT"] == [1, 0, 1] and bars["fixed"] == [1, 0, 0]  # classes 0, 1, 2 (most changed first)


def test_dicc_never_ran():
    r = dicc_report(_queries([(0, -1, 0, 0.9), (1, -1, 1, 0.9)]))
    assert not r.ran and not r.has_gt
    assert r.summary["n_ran"] == 0 and np.isnan(r.summary["accuracy_before"])
    assert r.per_class.empty and r.transitions.empty


def test_no_gt_still_counts_changes():
    r = dicc_report(_queries([(0, 1, -1, np.nan), (1, 1, -1, np.nan)]))
    assert r.ran and not r.has_gt
    assert r.summary["n_changed"] == 1 and r.summary["unjudged"] == 2


def test_clip_precision_recall_hand_worked():
    table = pd.DataFrame({"gt_class": [0, 0, 1, 1, 2], "clip_pred": [0, 1, 1, 1, 0]})
    pr = clip_precision_recall(table, num_classes=4)
    t = pr.per_class.set_index("class")
    assert t["support"].tolist() == [2, 2, 1, 0]
    assert t["predicted"].tolist() == [2, 3, 0, 0]
    np.testing.assert_allclose(t["precision"], [0.5, 2 / 3, np.nan, np.nan])
    np.testing.assert_allclose(t["recall"], [0.5, 1.0, 0.0, np.nan])  # class 3: no GT crop
    assert pr.accuracy == pytest.approx(3 / 5) and pr.n == 5
    empty = clip_precision_recall(table.iloc[:0], 2)
    assert empty.n == 0 and np.isnan(empty.accuracy)
    with pytest.raises(ValueError, match="clip_pred 9"):
        clip_precision_recall(pd.DataFrame({"gt_class": [0], "clip_pred": [9]}), 4)


def test_read_clip_table_from_parquet_or_csv_and_missing_columns(tmp_path):
    # a table from before modes were compared has no mode column: one mode, "crop"
    table = pd.DataFrame({"image_id": [1, 1], "gt_class": [0, 2], "clip_pred": [0, 1]})
    table.to_parquet(tmp_path / "t.parquet")
    table.to_csv(tmp_path / "t.csv", index=False)
    for name in ("t.parquet", "t.csv"):
        got = read_clip_table(tmp_path / name)
        assert list(got.columns) == ["mode", "gt_class", "clip_pred"]
        assert got.to_numpy().tolist() == [["crop", 0, 0], ["crop", 2, 1]]
    table.assign(mode=["box", "mask_pool"]).to_parquet(tmp_path / "modes.parquet")
    assert read_clip_table(tmp_path / "modes.parquet")["mode"].tolist() == ["box", "mask_pool"]
    table.drop(columns="clip_pred").to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"bad.csv: missing columns \['clip_pred'\]"):
        read_clip_table(tmp_path / "bad.csv")


def test_clip_precision_recall_per_mode_and_the_modes_summary_in_percent():
    table = pd.DataFrame({"mode": ["box"] * 4 + ["mask_pool"] * 4,
                          "gt_class": [0, 0, 1, 1] * 2, "clip_pred": [0, 0, 1, 0, 1, 1, 1, 1]})
    by_mode = clip_precision_recall_by_mode(table, num_classes=3)
    assert list(by_mode) == ["box", "mask_pool"]  # in the table's order
    box, pool = by_mode["box"], by_mode["mask_pool"]
    np.testing.assert_allclose(box.per_class["precision"], [2 / 3, 1.0, np.nan])
    np.testing.assert_allclose(box.per_class["recall"], [1.0, 0.5, np.nan])
    # class 0: never predicted by mask_pool (no precision), recall 0; class 1: precision 0.5, recall 1
    assert box.mean_precision == pytest.approx(5 / 6) and box.mean_recall == pytest.approx(0.75)
    assert pool.mean_precision == pytest.approx(0.5) and pool.mean_recall == pytest.approx(0.5)
    summary = mode_summary(by_mode)
    assert summary["mode"].tolist() == ["box", "mask_pool"] and summary["crops"].tolist() == [4, 4]
    np.testing.assert_allclose(summary["accuracy_pct"], [75.0, 50.0])
    np.testing.assert_allclose(summary["mean_precision_pct"], [500 / 6, 50.0])
    np.testing.assert_allclose(summary["mean_recall_pct"], [75.0, 50.0])
    assert summary["classes_predicted"].tolist() == [2, 1]
    single = clip_precision_recall_by_mode(table.drop(columns="mode").iloc[:4], 3)
    assert list(single) == ["crop"] and single["crop"].accuracy == pytest.approx(0.75)
    assert np.isnan(clip_precision_recall(table.iloc[:0], 2).mean_precision)
