import numpy as np
import pandas as pd
import pytest

from workbench.confusion import BACKGROUND, class_accuracy, confusion_matrix, most_confused


def _queries(rows):
    """rows: (pred_class, gt_id, gt_class, iou, corrected_class, keep_ddtf)."""
    pred, gt_id, gt_class, iou, corr, keep = (list(v) for v in zip(*rows)) if rows else ([],) * 6
    n = len(pred)
    return pd.DataFrame({"image_id": np.arange(n, dtype=np.int64), "query": np.zeros(n, np.int16),
                         "pred_class": np.asarray(pred, np.int16), "gt_id": np.asarray(gt_id, np.int64),
                         "gt_class": np.asarray(gt_class, np.int16), "iou": np.asarray(iou, np.float32),
                         "corrected_class": np.asarray(corr, np.int16), "keep_ddtf": np.asarray(keep, bool),
                         "keep_coupled": np.asarray(keep, bool)})


GT = pd.DataFrame({"image_id": [1, 1, 2, 2], "gt_id": [1, 2, 3, 4], "gt_class": [0, 1, 2, 2]})
ROWS = [
    (0, 1, 0, 0.9, -1, True),          # q0: on GT 1 (class 0)            -> (0, 0)
    (1, 1, 0, 0.7, 0, True),           # q1: on GT 1, DICC -> 0           -> (1, 0); after (0, 0)
    (1, 2, 1, 0.3, -1, True),          # q2: IoU .3 with GT 2             -> (1, bg)
    (2, -1, -1, 0.0, 2, False),        # q3: on nothing, not kept         -> (2, bg)
    (2, 3, 2, 0.6, 1, True),           # q4: on GT 3, DICC -> 1           -> (2, 2); after (1, 2)
    (0, -1, -1, np.nan, -1, True),     # q5: image without GT: left out
]
L = [0, 1, 2, BACKGROUND]


def _matrix(conf):
    return conf.counts.loc[L, L].to_numpy().tolist()


def test_hand_worked_matrix():
    conf = confusion_matrix(_queries(ROWS), GT, 3)
    assert conf.has_gt and conf.labels == L
    # GT 2 (class 1) and GT 4 (class 2) are matched by no query at IoU > .5 -> background row.
    assert _matrix(conf) == [[1, 0, 0, 0],
                             [1, 0, 0, 1],
                             [0, 0, 1, 1],
                             [0, 1, 1, 0]]
    np.testing.assert_allclose(conf.normalized.loc[1].to_numpy(), [0.5, 0, 0, 0.5])
    assert class_accuracy(conf) == pytest.approx(2 / 3)


def test_after_dicc_and_only_kept():
    after = confusion_matrix(_queries(ROWS), GT, 3, use_dicc=True)
    assert _matrix(after) == [[2, 0, 0, 0],
                              [0, 0, 1, 1],
                              [0, 0, 0, 1],
                              [0, 1, 1, 0]]
    kept = confusion_matrix(_queries(ROWS), GT, 3, kept_by="ddtf")
    assert kept.counts.loc[2].tolist() == [0, 0, 1, 0]  # q3 is not kept
    assert kept.counts.loc[BACKGROUND].tolist() == [0, 1, 1, 0]


def test_most_confused():
    conf = confusion_matrix(_queries(ROWS), GT, 3)
    top = most_confused(conf)
    assert top.to_dict("records") == [{"pred_class": 1, "gt_class": 0, "count": 1, "share": 0.5}]
    with_bg = most_confused(conf, include_background=True)
    assert len(with_bg) == 5 and set(zip(with_bg["pred_class"], with_bg["gt_class"])) == {
        (1, 0), (1, BACKGROUND), (2, BACKGROUND), (BACKGROUND, 1), (BACKGROUND, 2)}


def test_class_absent_from_gt_and_empty_rows():
    conf = confusion_matrix(_queries(ROWS), GT, 4)  # class 3 is neither predicted nor in GT
    assert conf.counts[3].sum() == 0 and conf.counts.loc[3].sum() == 0
    assert conf.normalized.loc[3].isna().all()


def test_no_gt():
    rows = [(p, -1, -1, np.nan, c, k) for p, _, _, _, c, k in ROWS]
    conf = confusion_matrix(_queries(rows), GT.iloc[:0], 3)
    assert not conf.has_gt and conf.counts.empty
    assert most_confused(conf).empty and np.isnan(class_accuracy(conf))


def test_no_predictions_and_all_filtered():
    conf = confusion_matrix(_queries([]), GT, 3)
    assert conf.counts.loc[BACKGROUND].tolist() == [1, 1, 2, 0]
    assert conf.counts.drop(index=BACKGROUND).to_numpy().sum() == 0
    rows = [r[:5] + (False,) for r in ROWS]
    filtered = confusion_matrix(_queries(rows), GT, 3, kept_by="ddtf")
    assert filtered.counts.loc[BACKGROUND].tolist() == [1, 1, 2, 0]


def test_bad_class_names_the_row():
    rows = ROWS + [(7, -1, -1, 0.0, -1, True)]
    with pytest.raises(ValueError, match=r"predicted class 7 outside 0..2 \(image_id=6"):
        confusion_matrix(_queries(rows), GT, 3)
