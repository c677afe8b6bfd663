"""Quality scores vs IoU (the paper's Fig. 2): do s, c or m predict how good a mask is?

Rows "with known GT" are those whose ``iou`` is finite (the record schema writes NaN where
the image's annotations are unknown). Correlations are Pearson (linear) and Spearman (rank);
both are NaN when fewer than 3 rows remain or one side is constant.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SCORES = ("s", "c", "m")
_SCATTER_COLUMNS = ("image_id", "query", "pred_class", "s", "c", "m", "iou", "error_type",
                    "keep_ddtf", "keep_coupled")
MIN_ROWS = 3


@dataclass
class QualityReport:
    """Scatter rows, correlations overall (one row per score) and per predicted class."""

    scatter: pd.DataFrame
    overall: pd.DataFrame     # score, pearson, spearman, n
    per_class: pd.DataFrame   # pred_class, score, pearson, spearman, n
    has_gt: bool


def known_gt(queries: pd.DataFrame) -> pd.Series:
    """True for rows whose IoU with ground truth is known."""
    return queries["iou"].notna()


def scatter_data(queries: pd.DataFrame) -> pd.DataFrame:
    """The Fig. 2 points: rows with known GT, with their scores, IoU and decisions."""
    cols = [c for c in _SCATTER_COLUMNS if c in queries.columns]
    return queries.loc[known_gt(queries), cols].reset_index(drop=True)


def rank_average(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank (as Spearman's correlation needs)."""
    values, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts + 1
    return (first + (counts - 1) / 2.0)[inverse.reshape(-1)]


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < MIN_ROWS:
        return float("nan")
    x = x - x.mean()
    y = y - y.mean()
    denom = np.sqrt((x * x).sum() * (y * y).sum())
    # A constant side leaves a denominator of (almost) zero: no correlation is defined.
    if denom <= 1e-12 * max(len(x), 1):
        return float("nan")
    return float(np.clip((x * y).sum() / denom, -1.0, 1.0))


def correlation(x, y) -> tuple[float, float, int]:
    """(Pearson, Spearman, n) over the pairs where both values are finite."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    spearman = _pearson(rank_average(x), rank_average(y)) if len(x) >= MIN_ROWS else float("nan")
    return _pearson(x, y), spearman, int(len(x))


def _correlation_rows(frame: pd.DataFrame) -> list[dict]:
    iou = frame["iou"].to_numpy(np.float64)
    rows = []
    for score in SCORES:
        pearson, spearman, n = correlation(frame[score].to_numpy(np.float64), iou)
        rows.append({"score": score, "pearson": pearson, "spearman": spearman, "n": n})
    return rows


def correlations(queries: pd.DataFrame) -> pd.DataFrame:
    """Pearson and Spearman correlation of s, c and m with IoU over rows with known GT."""
    return pd.DataFrame(_correlation_rows(queries.loc[known_gt(queries)]),
                        columns=["score", "pearson", "spearman", "n"])


def correlations_per_class(queries: pd.DataFrame) -> pd.DataFrame:
    """As ``correlations``, for each predicted class that has rows with known GT."""
    known = queries.loc[known_gt(queries)]
    rows = []
    for cls, group in known.groupby("pred_class", sort=True):
        rows.extend({"pred_class": int(cls), **r} for r in _correlation_rows(group))
    return pd.DataFrame(rows, columns=["pred_class", "score", "pearson", "spearman", "n"])


def quality_vs_iou(queries: pd.DataFrame) -> QualityReport:
    """Fig. 2 of one checkpoint: scatter data and correlations, overall and per class."""
    return QualityReport(scatter=scatter_data(queries), overall=correlations(queries),
                         per_class=correlations_per_class(queries),
                         has_gt=bool(known_gt(queries).any()))


def better_predictor(overall: pd.DataFrame, method: str = "spearman") -> str | None:
    """'c' or 'm', whichever correlates more with IoU; None when neither is defined."""
    values = overall.set_index("score")[method]
    c, m = values.get("c", np.nan), values.get("m", np.nan)
    if np.isnan(c) and np.isnan(m):
        return None
    if np.isnan(c):
        return "m"
    if np.isnan(m):
        return "c"
    return "m" if m >= c else "c"
