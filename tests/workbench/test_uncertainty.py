import numpy as np
import pandas as pd
import pytest

from workbench.uncertainty import distance_profile, region_means, sample_rows, uncertainty_vs_iou


def _queries(inside, boundary, overlap, iou, keep=None):
    n = len(inside)
    return pd.DataFrame({"unc_mean_inside": np.asarray(inside, np.float32),
                         "unc_mean_boundary": np.asarray(boundary, np.float32),
                         "unc_mean_overlap": np.asarray(overlap, np.float32),
                         "iou": np.asarray(iou, np.float32),
                         "keep_ddtf": np.asarray(keep if keep is not None else [True] * n, bool)})


def test_region_means_skip_empty_regions():
    q = _queries([0.1, 0.3, np.nan], [0.5, 0.7, np.nan], [np.nan, np.nan, 0.2], [0.9, 0.5, np.nan])
    t = region_means(q).set_index("region")
    np.testing.assert_allclose(t["mean_u"], [0.2, 0.6, 0.2], rtol=1e-6)
    assert t["n"].tolist() == [2, 2, 1]
    only = region_means(q, kept_by="ddtf")
    assert len(only) == 3
    none_kept = region_means(_queries([0.1], [0.2], [0.3], [0.5], keep=[False]), kept_by="ddtf")
    assert none_kept["mean_u"].isna().all() and (none_kept["n"] == 0).all()


def test_uncertainty_vs_iou_hand_worked():
    q = _queries([0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4], [np.nan] * 4, [0.9, 0.8, 0.5, 0.1])
    r = uncertainty_vs_iou(q, bins=2)
    assert r.has_gt
    corr = r.correlations.set_index("region")
    assert corr.loc["inside", "spearman"] == pytest.approx(-1.0)
    assert corr.loc["overlap", "n"] == 0 and np.isnan(corr.loc["overlap", "pearson"])
    curve = r.curve[r.curve["region"] == "inside"]
    # quantile edges .1, .25, .4: bins {.1, .2} and {.3, .4}
    np.testing.assert_allclose(curve["mean_u"], [0.15, 0.35], rtol=1e-6)
    np.testing.assert_allclose(curve["mean_iou"], [0.85, 0.3], rtol=1e-6)
    assert curve["n"].tolist() == [2, 2]
    assert (r.curve["region"] != "overlap").all()


def test_uncertainty_vs_iou_without_gt():
    r = uncertainty_vs_iou(_queries([0.1, 0.2], [0.1, 0.2], [0.1, 0.2], [np.nan, np.nan]))
    assert not r.has_gt and r.curve.empty and (r.correlations["n"] == 0).all()


def _block_case():
    # 6 x 6 map, mask = the 2 x 2 block at rows/cols 2-3. Inside: 4 pixels at +1. The 12 pixels of
    # the ring around it are at distance 1 or sqrt(2) -> -1; the outer ring has 16 pixels at 2 or
    # sqrt(5) -> -2 and the 4 corners at sqrt(8) = 2.83 -> -3.
    mask = np.zeros((6, 6), bool)
    mask[2:4, 2:4] = True
    u = np.zeros((6, 6))
    u[1:5, 1:5] = 0.5
    u[mask] = 1.0
    return u, mask


def test_distance_profile_hand_worked():
    u, mask = _block_case()
    p = distance_profile([(u, mask)], max_distance=3).set_index("distance")
    assert p.loc[[1, -1, -2, -3], "n_pixels"].tolist() == [4, 12, 16, 4]
    np.testing.assert_allclose(p.loc[[1, -1, -2, -3], "mean_u"], [1.0, 0.5, 0.0, 0.0])
    assert p.loc[[2, 3], "n_pixels"].tolist() == [0, 0] and p.loc[[2, 3], "mean_u"].isna().all()
    assert p.attrs["n_masks"] == 1


def test_distance_profile_uint8_and_larger_mask():
    u, mask = _block_case()
    big = np.kron(mask, np.ones((2, 2), bool))  # the mask at twice the map's resolution
    a = distance_profile([(u, mask)], max_distance=3)
    b = distance_profile([(np.rint(u * 255).astype(np.uint8), big)], max_distance=3)
    np.testing.assert_allclose(a["mean_u"], b["mean_u"], atol=1 / 255)
    assert a["n_pixels"].tolist() == b["n_pixels"].tolist()


def test_distance_profile_skips_empty_and_full_masks():
    u = np.full((4, 4), 0.3)
    p = distance_profile([(u, np.zeros((4, 4), bool)), (u, np.ones((4, 4), bool))])
    assert p.attrs["n_masks"] == 0 and (p["n_pixels"] == 0).all()


def test_sample_rows_is_seeded():
    q = _queries(np.linspace(0, 1, 50), np.zeros(50), np.zeros(50), np.zeros(50))
    a, b = sample_rows(q, 10, seed=3), sample_rows(q, 10, seed=3)
    assert len(a) == 10 and a.index.tolist() == b.index.tolist()
    assert len(sample_rows(q, 100)) == 50
