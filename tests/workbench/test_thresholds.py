import numpy as np
import pandas as pd
import pytest

from workbench.thresholds import (best_row, select_kept, sweep_coupled, sweep_ddtf, threshold_study,
                                  what_if, what_if_coupled)


def _queries(rows):
    """rows: (c, m, error_type, gt_id, gt_class, pred_class, iou)."""
    c, m, et, gt_id, gt_class, pred, iou = (list(v) for v in zip(*rows)) if rows else ([],) * 7
    c, m = np.asarray(c, np.float32), np.asarray(m, np.float32)
    return pd.DataFrame({"c": c, "m": m, "s": (c * m).astype(np.float32),
                         "error_type": pd.array(et, dtype="str"),
                         "gt_id": np.asarray(gt_id, np.int64), "gt_class": np.asarray(gt_class, np.int16),
                         "pred_class": np.asarray(pred, np.int16), "iou": np.asarray(iou, np.float32),
                         "keep_ddtf": (c >= 0.8) & (m >= 0.8), "keep_coupled": c * m >= 0.5})


ROWS = [
    (0.90, 0.95, "Cor", 10, 0, 0, 0.9),     # r0
    (0.90, 0.85, "Cor", 10, 0, 0, 0.7),     # r1: a duplicate on GT 10
    (0.70, 0.95, "Oth", 11, 1, 2, 0.8),     # r2
    (0.95, 0.60, "Loc", 12, 1, 1, 0.3),     # r3
    (0.60, 0.90, "Cor", 12, 1, 1, 0.6),     # r4
    (0.99, 0.99, "BG", -1, -1, 3, 0.0),     # r5
    (0.99, 0.99, None, -1, -1, 3, np.nan),  # r6: an image without GT
]
GT = pd.DataFrame({"image_id": [1, 1, 2], "gt_id": [10, 11, 12], "gt_class": [0, 1, 1]})


def test_what_if_hand_worked():
    # c_t = m_t = .8 keeps r0, r1, r5, r6; r0, r1, r5 have GT, r0 and r1 are Cor, both on GT 10.
    p = what_if(_queries(ROWS), GT, c_t=0.8, m_t=0.8)
    assert (p["kept"], p["kept_with_gt"], p["n_cor"], p["covered_gt"]) == (4, 3, 2, 1)
    assert p["precision"] == pytest.approx(2 / 3)
    assert p["recall"] == pytest.approx(1 / 3)
    assert p["f1"] == pytest.approx(4 / 9)
    assert p["class_accuracy"] == pytest.approx(1.0)  # r0, r1 lie on a GT (IoU > .5), both right
    assert p["mean_iou"] == pytest.approx((0.9 + 0.7 + 0.0) / 3)

    # .5 / .5 keeps everything: Cor r0, r1, r4 cover GTs 10 and 12; on a GT: r0, r1, r2, r4.
    p = what_if(_queries(ROWS), GT, c_t=0.5, m_t=0.5)
    assert (p["kept"], p["kept_with_gt"], p["n_cor"], p["covered_gt"]) == (7, 6, 3, 2)
    assert p["precision"] == pytest.approx(0.5)
    assert p["recall"] == pytest.approx(2 / 3)
    assert p["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert p["class_accuracy"] == pytest.approx(3 / 4)
    assert p["mean_iou"] == pytest.approx((0.9 + 0.7 + 0.8 + 0.3 + 0.6 + 0.0) / 6)


def test_all_queries_filtered():
    p = what_if(_queries(ROWS), GT, c_t=1.0, m_t=1.0)
    assert p["kept"] == 0 and p["covered_gt"] == 0
    assert np.isnan(p["precision"]) and np.isnan(p["class_accuracy"]) and np.isnan(p["mean_iou"])
    assert p["recall"] == 0.0 and p["f1"] == 0.0


def test_coupled_hand_worked():
    # s = c*m: r0 .855, r1 .765, r2 .665, r3 .57, r4 .54, r5/r6 .98; s_t = .7 keeps r0, r1, r5, r6.
    p = what_if_coupled(_queries(ROWS), GT, s_t=0.7)
    assert (p["kept"], p["n_cor"], p["covered_gt"]) == (4, 2, 1)
    assert p["precision"] == pytest.approx(2 / 3)


def test_sweep_matches_what_if_at_the_hand_worked_points():
    q = _queries(ROWS)
    sweep = sweep_ddtf(q, GT, m_grid=[0.5, 0.8], c_grid=[0.5, 0.8]).set_index(["m_t", "c_t"])
    for m_t, c_t in [(0.5, 0.5), (0.5, 0.8), (0.8, 0.5), (0.8, 0.8)]:
        point = what_if(q, GT, c_t=c_t, m_t=m_t)
        row = sweep.loc[(m_t, c_t)]
        for key in ("kept", "kept_with_gt", "n_cor", "covered_gt", "precision", "recall", "f1",
                    "class_accuracy", "mean_iou"):
            assert row[key] == pytest.approx(point[key], nan_ok=True), (m_t, c_t, key)


def _random_frame(n, seed):
    rng = np.random.default_rng(seed)
    c = np.round(rng.uniform(0, 1, n) / 0.05) * 0.05  # many scores exactly on grid values
    m = np.round(rng.uniform(0, 1, n) / 0.05) * 0.05
    gt_id = rng.integers(-1, n // 4, n)
    known = rng.random(n) < 0.9
    iou = np.where(known, rng.uniform(0, 1, n), np.nan)
    et = np.where(~known, None, np.where(iou > 0.5, rng.choice(["Cor", "Sim", "Oth"], n),
                                        rng.choice(["Loc", "BG", "Both"], n)))
    gt_class = np.where(gt_id >= 0, rng.integers(0, 5, n), -1)
    pred = rng.integers(0, 5, n)
    return _queries(list(zip(c, m, et, gt_id, gt_class, pred, iou)))


def test_sweeps_equal_single_points_on_random_data():
    q = _random_frame(3000, seed=1)
    gt = pd.DataFrame({"gt_id": np.arange(0, 800), "gt_class": np.zeros(800, int)})
    grid = [0.3, 0.5, 0.65, 0.8, 0.9]
    sweep = sweep_ddtf(q, gt, m_grid=grid, c_grid=grid)
    for _, row in sweep.iterrows():
        point = what_if(q, gt, c_t=row["c_t"], m_t=row["m_t"])
        for key in ("kept", "covered_gt", "precision", "recall", "f1", "class_accuracy", "mean_iou"):
            assert row[key] == pytest.approx(point[key], nan_ok=True), (row["m_t"], row["c_t"], key)
    coupled = sweep_coupled(q, gt, s_grid=grid)
    for _, row in coupled.iterrows():
        point = what_if_coupled(q, gt, s_t=row["s_t"])
        for key in ("kept", "covered_gt", "precision", "recall", "f1"):
            assert row[key] == pytest.approx(point[key], nan_ok=True), (row["s_t"], key)


def test_threshold_on_a_float32_score_is_kept():
    # 0.9 stored as float32 is 0.899999976: it must still pass m_t = 0.9, as in the engine.
    q = _queries([(0.85, 0.9, "Cor", 10, 0, 0, 0.9)])
    assert what_if(q, GT, c_t=0.85, m_t=0.9)["kept"] == 1
    assert sweep_ddtf(q, GT, m_grid=[0.9], c_grid=[0.85])["kept"].item() == 1


def test_study_best_pair_and_run_pair():
    q = _queries(ROWS)
    study = threshold_study(q, GT, {"filter": "ddtf", "c_t": 0.8, "m_t": 0.8, "s_t": 0.7},
                            m_grid=[0.5, 0.8], c_grid=[0.5, 0.8], s_grid=[0.5, 0.7])
    assert study.has_gt and study.num_gt == 3 and study.run_filter == "ddtf"
    assert study.run_ddtf == what_if(q, GT, 0.8, 0.8)
    assert study.run_coupled["kept"] == 4
    # F1 per (m_t, c_t): (.5,.5) P 3/6 R 2/3 -> .571; (.5,.8) keeps r0 r1 r3 r5 r6: P 2/4 R 1/3 -> .4;
    # (.8,.5) keeps all but r3: P 3/5 R 2/3 -> .632; (.8,.8) 4/9.
    assert (study.best_ddtf["m_t"], study.best_ddtf["c_t"]) == (0.8, 0.5)
    assert study.best_ddtf["f1"] == pytest.approx(2 * 0.6 * (2 / 3) / (0.6 + 2 / 3))
    f1 = study.ddtf.set_index(["m_t", "c_t"])["f1"]
    assert f1.loc[(0.5, 0.8)] == pytest.approx(0.4)
    assert isinstance(study.best_ddtf["kept"], int)


def test_no_gt_keeps_counts_and_flags_gt_metrics():
    rows = [(c, m, None, -1, -1, p, np.nan) for c, m, *_, p, _ in ROWS]
    study = threshold_study(_queries(rows), GT.iloc[:0], {"filter": "ddtf", "c_t": 0.8, "m_t": 0.8, "s_t": 0.7},
                            m_grid=[0.5, 0.8], c_grid=[0.5, 0.8])
    assert not study.has_gt and study.best_ddtf is None and study.best_coupled is None
    kept = study.ddtf.set_index(["m_t", "c_t"])["kept"]
    assert kept.loc[(0.8, 0.8)] == 4 and kept.loc[(0.5, 0.5)] == 7
    assert study.ddtf[["precision", "recall", "f1", "class_accuracy", "mean_iou"]].isna().all().all()
    assert study.run_ddtf["kept"] == 4 and np.isnan(study.run_ddtf["f1"])


def test_no_predictions():
    sweep = sweep_ddtf(_queries([]), GT, m_grid=[0.5], c_grid=[0.5])
    assert sweep["kept"].item() == 0 and sweep["recall"].item() == 0.0 and sweep["f1"].item() == 0.0
    assert best_row(sweep)["f1"] == 0.0


def test_grids_must_increase_and_select_kept_checks_its_argument():
    with pytest.raises(ValueError, match="m_grid"):
        sweep_ddtf(_queries(ROWS), GT, m_grid=[0.8, 0.5], c_grid=[0.5])
    with pytest.raises(ValueError, match="kept_by"):
        select_kept(_queries(ROWS), "ddft")
    assert len(select_kept(_queries(ROWS), "ddtf")) == 4


def test_the_run_s_mask_area_threshold_drops_small_masks_everywhere():
    q = _queries(ROWS)
    q["area"] = np.array([3, 500, 500, 500, 5, 6, 500], dtype=np.int64)  # r0 and r4: at most 5 px
    plain, small = what_if(q, GT, c_t=0.5, m_t=0.5), what_if(q, GT, c_t=0.5, m_t=0.5, mask_area_threshold=5)
    assert (plain["kept"], small["kept"]) == (7, 5)
    assert small["n_cor"] == plain["n_cor"] - 2
    assert what_if_coupled(q, GT, 0.3, mask_area_threshold=5)["kept"] == what_if_coupled(q, GT, 0.3)["kept"] - 2
    sweep = sweep_ddtf(q, GT, m_grid=[0.5, 0.8], c_grid=[0.5, 0.8], mask_area_threshold=5)
    for row in sweep.itertuples():
        assert row.kept == what_if(q, GT, row.c_t, row.m_t, mask_area_threshold=5)["kept"]
    # the study takes it from the manifest's thresholds; records written before it existed lack it
    with_area = threshold_study(q, GT, {"filter": "ddtf", "c_t": 0.5, "m_t": 0.5, "s_t": 0.3, "mask_area_threshold": 5})
    without = threshold_study(q, GT, {"filter": "ddtf", "c_t": 0.5, "m_t": 0.5, "s_t": 0.3})
    assert (with_area.run_ddtf["kept"], without.run_ddtf["kept"]) == (5, 7)
    assert with_area.run_coupled["kept"] == without.run_coupled["kept"] - 2
