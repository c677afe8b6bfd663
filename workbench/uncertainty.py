"""Where the teacher's pixel uncertainty (Eq. 10, ``u = 1 - 2|sigma - 0.5|``) concentrates.

Two views:
- from the summary columns of every row: mean ``u`` inside the mask, on its boundary band and
  where it overlaps another kept mask (``unc_mean_inside/boundary/overlap``; NaN where the
  region is empty, which is skipped);
- from decoded maps of a sample: mean ``u`` as a function of the signed distance to the mask's
  edge (positive inside, negative outside, in mask-logit pixels).
And its relation to IoU: correlations and a binned curve (needs GT).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.ndimage import distance_transform_edt

from pldc_core.records.store import decode_mask, decode_uncertainty
from workbench.quality import correlation, known_gt
from workbench.thresholds import select_kept

REGIONS = ("inside", "boundary", "overlap")
REGION_COLUMNS = {r: f"unc_mean_{r}" for r in REGIONS}


def region_means(queries: pd.DataFrame, kept_by: str | None = None) -> pd.DataFrame:
    """Mean and median of each region's mean uncertainty, over the rows where it is defined."""
    rows = select_kept(queries, kept_by)
    out = []
    for region, column in REGION_COLUMNS.items():
        values = rows[column].to_numpy(np.float64, na_value=np.nan)
        values = values[np.isfinite(values)]
        out.append({"region": region, "mean_u": float(values.mean()) if len(values) else np.nan,
                    "median_u": float(np.median(values)) if len(values) else np.nan,
                    "n": int(len(values))})
    return pd.DataFrame(out, columns=["region", "mean_u", "median_u", "n"])


@dataclass
class UncertaintyVsIoU:
    correlations: pd.DataFrame  # region, pearson, spearman, n
    curve: pd.DataFrame         # region, bin, u_lo, u_hi, mean_u, mean_iou, n
    has_gt: bool


def uncertainty_vs_iou(queries: pd.DataFrame, kept_by: str | None = None, bins: int = 10) -> UncertaintyVsIoU:
    """Correlation of each region's mean uncertainty with IoU, and mean IoU per uncertainty bin.

    Bins are quantiles of the region's values (equal counts; duplicate edges merged), so a
    skewed distribution still gives populated bins.
    """
    rows = select_kept(queries, kept_by)
    rows = rows.loc[known_gt(rows)]
    iou = rows["iou"].to_numpy(np.float64)
    corr, curve = [], []
    for region, column in REGION_COLUMNS.items():
        u = rows[column].to_numpy(np.float64, na_value=np.nan)
        pearson, spearman, n = correlation(u, iou)
        corr.append({"region": region, "pearson": pearson, "spearman": spearman, "n": n})
        ok = np.isfinite(u) & np.isfinite(iou)
        if not ok.any():
            continue
        uu, ii = u[ok], iou[ok]
        edges = np.unique(np.quantile(uu, np.linspace(0, 1, bins + 1)))
        index = np.clip(np.searchsorted(edges, uu, side="right") - 1, 0, max(len(edges) - 2, 0))
        for b in np.unique(index):
            sel = index == b
            curve.append({"region": region, "bin": int(b), "u_lo": float(edges[b]),
                          "u_hi": float(edges[min(b + 1, len(edges) - 1)]),
                          "mean_u": float(uu[sel].mean()), "mean_iou": float(ii[sel].mean()),
                          "n": int(sel.sum())})
    return UncertaintyVsIoU(
        correlations=pd.DataFrame(corr, columns=["region", "pearson", "spearman", "n"]),
        curve=pd.DataFrame(curve, columns=["region", "bin", "u_lo", "u_hi", "mean_u", "mean_iou", "n"]),
        has_gt=bool(len(rows)))


def _resize_nearest(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    rows = (np.arange(shape[0]) * mask.shape[0] // shape[0]).clip(0, mask.shape[0] - 1)
    cols = (np.arange(shape[1]) * mask.shape[1] // shape[1]).clip(0, mask.shape[1] - 1)
    return mask[rows][:, cols]


def distance_profile(maps: Iterable[tuple[np.ndarray, np.ndarray]], max_distance: int = 8) -> pd.DataFrame:
    """Mean ``u`` by signed distance to the mask edge, pooled over ``(u, mask)`` pairs.

    ``u`` is ``[h, w]`` float in [0, 1] (or uint8 0..255) at mask-logit resolution; ``mask`` is
    the bool mask (any resolution; resized to ``u``'s by nearest neighbour). Distances are
    Euclidean, rounded, clipped to ``+-max_distance``: +1 is the first pixel inside the edge,
    -1 the first outside. Empty and full masks have no edge and are skipped.
    """
    size = 2 * max_distance + 1
    sums, counts = np.zeros(size), np.zeros(size, dtype=np.int64)
    used = 0
    for u, mask in maps:
        u = np.asarray(u)
        u = u.astype(np.float64) / 255.0 if u.dtype == np.uint8 else u.astype(np.float64)
        mask = _resize_nearest(np.asarray(mask, dtype=bool), u.shape)
        if not mask.any() or mask.all():
            continue
        signed = np.where(mask, distance_transform_edt(mask), -distance_transform_edt(~mask))
        index = np.clip(np.rint(signed), -max_distance, max_distance).astype(np.int64) + max_distance
        sums += np.bincount(index.ravel(), weights=u.ravel(), minlength=size)
        counts += np.bincount(index.ravel(), minlength=size)
        used += 1
    distance = np.arange(-max_distance, max_distance + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    out = pd.DataFrame({"distance": distance, "mean_u": mean, "n_pixels": counts})
    out = out[(out["distance"] != 0)].reset_index(drop=True)  # 0 never occurs: edt >= 1
    out.attrs["n_masks"] = used
    return out


def sample_rows(queries: pd.DataFrame, n: int, seed: int = 0, kept_by: str | None = None) -> pd.DataFrame:
    """A seeded random sample of up to ``n`` rows (for decoding their maps)."""
    rows = select_kept(queries, kept_by)
    if len(rows) <= n:
        return rows
    take = np.sort(np.random.default_rng(seed).choice(len(rows), size=n, replace=False))
    return rows.iloc[take]


def decoded_maps(rows: pd.DataFrame) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """``(u, mask)`` for each row, decoded with the record reader (needs unc_png and mask_rle)."""
    for _, row in rows.iterrows():
        if row["unc_png"] is None:
            continue
        yield decode_uncertainty(row), decode_mask(row)
