"""Error breakdown of pseudo-labels (the paper's Fig. 5): counts and shares of the six types.

Only rows with a known error type count (``error_type`` is None where GT is unknown). Sizes
follow ``pldc_core.structures.size_category`` on each query's mask area and image size.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from pldc_core.records.schema import ERROR_TYPES
from pldc_core.structures import size_category
from workbench.thresholds import select_kept

SIZES = ("small", "medium", "large")
ALL = "all"


@dataclass
class ErrorBreakdown:
    table: pd.DataFrame   # size ('all' + SIZES), error_type (ERROR_TYPES), count, share
    n: int                # rows with a known error type
    has_gt: bool          # False when no row had a known error type (table all zero / NaN)

    def overall(self) -> pd.Series:
        """Share of each error type over all sizes (index: ERROR_TYPES)."""
        return self.table[self.table["size"] == ALL].set_index("error_type")["share"]


@lru_cache(maxsize=256)
def _size_limits(height: int, width: int) -> tuple[int, int]:
    """The smallest integer areas that ``size_category`` calls medium and large at this image size."""
    def first(category: str) -> int:
        lo, hi = 0, height * width + 1  # size_category is monotone in area
        while lo < hi:
            mid = (lo + hi) // 2
            if SIZES.index(size_category(mid, height, width)) >= SIZES.index(category):
                hi = mid
            else:
                lo = mid + 1
        return lo
    return first("medium"), first("large")


def size_codes(area, height, width) -> np.ndarray:
    """``size_category`` for arrays of areas and image heights/widths, as indices into ``SIZES``."""
    area = np.asarray(area, dtype=np.int64)
    key = (np.asarray(height, dtype=np.int64) << 32) | np.asarray(width, dtype=np.int64)
    pairs, inverse = np.unique(key, return_inverse=True)
    limits = np.array([_size_limits(int(k >> 32), int(k & 0xFFFFFFFF)) for k in pairs],
                      dtype=np.int64).reshape(-1, 2)[inverse.reshape(-1)]
    return (area >= limits[:, 0]).astype(np.int64) + (area >= limits[:, 1])


def error_breakdown(queries: pd.DataFrame, kept_by: str | None = None) -> ErrorBreakdown:
    """Counts and shares of each error type, overall (size 'all') and per object size."""
    rows = select_kept(queries, kept_by)
    rows = rows.loc[rows["error_type"].notna()]
    type_code = pd.Index(ERROR_TYPES).get_indexer(rows["error_type"]).astype(np.int64)
    if (type_code < 0).any():
        unknown = sorted(set(rows["error_type"][type_code < 0].astype(str)))
        raise ValueError(f"error_breakdown: unknown error type(s) {unknown}; expected {ERROR_TYPES}")
    size_code = size_codes(rows["area"], rows["height"], rows["width"])
    by_size = np.bincount(size_code * len(ERROR_TYPES) + type_code,
                          minlength=len(SIZES) * len(ERROR_TYPES)).reshape(len(SIZES), len(ERROR_TYPES))
    counts = np.vstack([by_size.sum(axis=0, keepdims=True), by_size])
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(totals > 0, counts / np.where(totals > 0, totals, 1), np.nan)
    sizes = (ALL,) + SIZES
    table = pd.DataFrame({"size": np.repeat(sizes, len(ERROR_TYPES)),
                          "error_type": np.tile(ERROR_TYPES, len(sizes)),
                          "count": counts.reshape(-1), "share": shares.reshape(-1)})
    return ErrorBreakdown(table=table, n=len(rows), has_gt=bool(len(rows)))


def dominant_error(breakdown: ErrorBreakdown, exclude: tuple[str, ...] = ("Cor",)) -> tuple[str, float] | None:
    """The most frequent error type (``Cor`` excluded by default) and its share of all rows."""
    shares = breakdown.overall().drop(list(exclude)).dropna()
    if shares.empty or shares.max() <= 0:
        return None
    return str(shares.idxmax()), float(shares.max())
