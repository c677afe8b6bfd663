"""Threshold what-if at the pseudo-label level (the paper's Table 4a without retraining).

For a threshold pair, the pseudo-labels kept are the queries with ``c >= c_t and m >= m_t``
(DDTF) or ``s >= s_t`` (coupled) whose mask has more than the run's ``mask_area_threshold``
pixels (the manifest's thresholds; 0, no such rule, in records written before it existed). For
the kept set:

- ``kept``: how many are kept (needs no GT); ``kept_with_gt``: of those, rows with known GT;
- ``precision``: share of ``kept_with_gt`` whose error type is ``Cor``;
- ``recall``: share of the GT instances (the gt table) covered by at least one kept ``Cor``
  pseudo-label. A ``Cor`` row covers the GT named in its ``gt_id`` (the records name there the
  same-class GT with IoU > 0.5 that made it ``Cor``); ids absent from the gt table are ignored;
- ``f1``: harmonic mean of precision and recall (0 when recall is 0, even if nothing is kept);
- ``class_accuracy``: among kept rows matched to a GT (IoU > 0.5, the error types' match rule),
  the share with ``pred_class == gt_class``;
- ``mean_iou``: mean IoU of ``kept_with_gt``.

GT metrics are NaN when nothing they divide by exists (no GT, nothing kept). Comparisons are
made in float32, the dtype of the stored scores, so that the run's own decisions
(``keep_ddtf``/``keep_coupled``) are reproduced at the run's thresholds.

The grid sweep does not loop over pairs: each row is binned by how many grid thresholds it
passes on each axis, the per-bin totals are summed with reverse cumulative sums, and recall
takes, per covered GT, the highest c-bin reached at each m-bin (a suffix maximum).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pldc_core.method.filters import KEEP_COLUMNS
from pldc_core.records.errors import IOU_MATCH

DEFAULT_M_GRID = tuple(np.round(np.linspace(0.50, 0.95, 10), 3))
DEFAULT_C_GRID = tuple(np.round(np.linspace(0.50, 0.95, 10), 3))
DEFAULT_S_GRID = tuple(np.round(np.linspace(0.30, 0.885, 10), 3))
_COUNTS = ("kept", "kept_with_gt", "n_cor", "covered_gt")
METRICS = ("kept", "kept_with_gt", "n_cor", "covered_gt", "precision", "recall", "f1",
           "class_accuracy", "mean_iou")


def select_kept(queries: pd.DataFrame, kept_by: str | None) -> pd.DataFrame:
    """The rows the run's filter kept (``kept_by`` 'ddtf' or 'coupled'), or all rows for None."""
    if kept_by is None:
        return queries
    if kept_by not in KEEP_COLUMNS:
        raise ValueError(f"kept_by must be one of {sorted(KEEP_COLUMNS)} or None, got {kept_by!r}")
    return queries.loc[queries[KEEP_COLUMNS[kept_by]].to_numpy(bool)]


@dataclass
class _Rows:
    """The per-row arrays every metric needs, extracted once per table."""

    c: np.ndarray
    m: np.ndarray
    s: np.ndarray
    known: np.ndarray
    cor: np.ndarray
    matched: np.ndarray
    class_ok: np.ndarray
    iou: np.ndarray       # 0 where unknown, so it can be summed
    cor_rows: np.ndarray  # the Cor rows whose gt_id is in the gt table ...
    cor_gt: np.ndarray    # ... and that GT's position among the table's distinct ids
    num_gt: int
    has_gt: bool

    @classmethod
    def of(cls, queries: pd.DataFrame, gt: pd.DataFrame, mask_area_threshold: int = 0) -> "_Rows":
        iou = queries["iou"].to_numpy(np.float32, na_value=np.nan)
        known = ~np.isnan(iou)
        matched = iou > IOU_MATCH
        pred = queries["pred_class"].to_numpy(np.int64)
        gt_class = queries["gt_class"].to_numpy(np.int64)
        cor = (queries["error_type"] == "Cor").to_numpy(bool, na_value=False) & known
        gt_ids = pd.Index(pd.unique(gt["gt_id"].to_numpy(np.int64)))  # hash lookups, no sorting
        cor_rows = np.flatnonzero(cor)
        position = gt_ids.get_indexer(queries["gt_id"].to_numpy(np.int64)[cor_rows])
        # A mask too small for the run is never kept: no score passes a threshold.
        small = queries["area"].to_numpy(np.int64) <= mask_area_threshold if mask_area_threshold else None
        return cls(c=_scores(queries, "c", small), m=_scores(queries, "m", small), s=_scores(queries, "s", small),
                   known=known, cor=cor, matched=matched, class_ok=matched & (pred == gt_class),
                   iou=np.where(known, iou, 0).astype(np.float64),
                   cor_rows=cor_rows[position >= 0], cor_gt=position[position >= 0],
                   num_gt=len(gt_ids), has_gt=bool(len(gt_ids) or known.any()))


def _ratio(num, den):
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _finish(kept, known, cor, matched, class_ok, iou_sum, covered, num_gt, has_gt) -> dict:
    """Metric arrays from summed counts (any matching shapes)."""
    precision = _ratio(cor, known)
    recall = _ratio(covered, np.full_like(np.asarray(covered, dtype=np.float64), num_gt))
    # recall > 0 implies a kept Cor row, so precision > 0; recall 0 (nothing covered) gives 0.
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(recall > 0, 2 * precision * recall / (precision + recall),
                      np.where(np.isnan(recall), np.nan, 0.0))
    out = {"kept": kept, "kept_with_gt": known, "n_cor": cor, "covered_gt": covered,
           "precision": precision, "recall": recall, "f1": f1,
           "class_accuracy": _ratio(class_ok, matched), "mean_iou": _ratio(iou_sum, known)}
    if not has_gt:
        for k in ("precision", "recall", "f1", "class_accuracy", "mean_iou"):
            out[k] = np.full(np.shape(out[k]), np.nan)
    return out


def _point(rows: _Rows, keep: np.ndarray) -> dict:
    covered = int(np.count_nonzero(np.bincount(rows.cor_gt[keep[rows.cor_rows]], minlength=1)))
    out = _finish(int(keep.sum()), int((keep & rows.known).sum()), int((keep & rows.cor).sum()),
                  int((keep & rows.matched).sum()), int((keep & rows.class_ok).sum()),
                  float(rows.iou[keep].sum()), covered, rows.num_gt, rows.has_gt)
    return {k: (v.item() if isinstance(v, np.ndarray) else v) for k, v in out.items()}


def _scores(queries: pd.DataFrame, column: str, small: np.ndarray | None = None) -> np.ndarray:
    scores = queries[column].to_numpy(np.float32, na_value=np.nan)
    return scores if small is None else np.where(small, np.float32(np.nan), scores)


def _what_if(rows: _Rows, c_t: float, m_t: float) -> dict:
    keep = (rows.c >= np.float32(c_t)) & (rows.m >= np.float32(m_t))
    return {"filter": "ddtf", "m_t": float(m_t), "c_t": float(c_t), **_point(rows, keep)}


def _what_if_coupled(rows: _Rows, s_t: float) -> dict:
    return {"filter": "coupled", "s_t": float(s_t), **_point(rows, rows.s >= np.float32(s_t))}


def what_if(queries: pd.DataFrame, gt: pd.DataFrame, c_t: float, m_t: float, mask_area_threshold: int = 0) -> dict:
    """The metrics of the DDTF pair ``(c_t, m_t)`` (one slider position)."""
    return _what_if(_Rows.of(queries, gt, mask_area_threshold), c_t, m_t)


def what_if_coupled(queries: pd.DataFrame, gt: pd.DataFrame, s_t: float, mask_area_threshold: int = 0) -> dict:
    """The metrics of the coupled threshold ``s_t``."""
    return _what_if_coupled(_Rows.of(queries, gt, mask_area_threshold), s_t)


def _grid(values, name: str) -> np.ndarray:
    grid = np.asarray(values, dtype=np.float64)
    if grid.ndim != 1 or len(grid) == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of thresholds")
    if len(np.unique(grid.astype(np.float32))) != len(grid) or (np.diff(grid) <= 0).any():
        raise ValueError(f"{name} must be strictly increasing, got {list(grid)}")
    return grid


def _passed(scores: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """How many thresholds of the ascending ``grid`` each score reaches (score >= t)."""
    n = np.searchsorted(grid.astype(np.float32), scores, side="right")
    n[np.isnan(scores)] = 0
    return n


def _suffix_sum_2d(h: np.ndarray) -> np.ndarray:
    return h[::-1, ::-1].cumsum(0).cumsum(1)[::-1, ::-1]


def sweep_ddtf(queries: pd.DataFrame, gt: pd.DataFrame, m_grid=DEFAULT_M_GRID,
               c_grid=DEFAULT_C_GRID, mask_area_threshold: int = 0) -> pd.DataFrame:
    """The metrics of every (m_t, c_t) pair of the two grids: one row per pair."""
    return _sweep_ddtf(_Rows.of(queries, gt, mask_area_threshold), m_grid, c_grid)


def sweep_coupled(queries: pd.DataFrame, gt: pd.DataFrame, s_grid=DEFAULT_S_GRID,
                  mask_area_threshold: int = 0) -> pd.DataFrame:
    """The metrics of every coupled threshold ``s_t`` of the grid: one row per threshold."""
    return _sweep_coupled(_Rows.of(queries, gt, mask_area_threshold), s_grid)


def _sweep_ddtf(rows: _Rows, m_grid, c_grid) -> pd.DataFrame:
    m_grid, c_grid = _grid(m_grid, "m_grid"), _grid(c_grid, "c_grid")
    nm, nc = len(m_grid), len(c_grid)
    mi, ci = _passed(rows.m, m_grid), _passed(rows.c, c_grid)
    cell = mi * (nc + 1) + ci

    def totals(weights=None) -> np.ndarray:
        h = np.bincount(cell, weights=weights, minlength=(nm + 1) * (nc + 1)).reshape(nm + 1, nc + 1)
        return _suffix_sum_2d(h)[1:, 1:]  # [i, j]: rows with mi > i and ci > j

    covered = np.zeros((nm, nc), dtype=np.int64)
    if len(rows.cor_rows):
        best_c = np.full((rows.num_gt, nm + 1), -1, dtype=np.int16)
        np.maximum.at(best_c, (rows.cor_gt, mi[rows.cor_rows]), ci[rows.cor_rows].astype(np.int16))
        # best_c[g, a]: the highest c-bin of a Cor row of GT g whose m-bin is >= a.
        best_c = np.maximum.accumulate(best_c[:, ::-1], axis=1)[:, ::-1]
        for i in range(nm):
            hist = np.bincount(best_c[:, i + 1] + 1, minlength=nc + 2)  # value v -> index v + 1
            covered[i] = hist[::-1].cumsum()[::-1][2:]  # GTs whose best c-bin > j
    metrics = _finish(totals(), totals(rows.known.astype(np.float64)), totals(rows.cor.astype(np.float64)),
                      totals(rows.matched.astype(np.float64)), totals(rows.class_ok.astype(np.float64)),
                      totals(rows.iou), covered, rows.num_gt, rows.has_gt)
    out = pd.DataFrame({"m_t": np.repeat(m_grid, nc), "c_t": np.tile(c_grid, nm)})
    for name in METRICS:
        out[name] = np.asarray(metrics[name]).reshape(-1)
    return out.astype({k: np.int64 for k in _COUNTS})


def _sweep_coupled(rows: _Rows, s_grid) -> pd.DataFrame:
    s_grid = _grid(s_grid, "s_grid")
    ns = len(s_grid)
    si = _passed(rows.s, s_grid)

    def totals(weights=None) -> np.ndarray:
        return np.bincount(si, weights=weights, minlength=ns + 1)[::-1].cumsum()[::-1][1:]

    covered = np.zeros(ns, dtype=np.int64)
    if len(rows.cor_rows):
        best = np.full(rows.num_gt, -1, dtype=np.int64)
        np.maximum.at(best, rows.cor_gt, si[rows.cor_rows])
        covered = np.bincount(best + 1, minlength=ns + 2)[::-1].cumsum()[::-1][2:]
    metrics = _finish(totals(), totals(rows.known.astype(np.float64)), totals(rows.cor.astype(np.float64)),
                      totals(rows.matched.astype(np.float64)), totals(rows.class_ok.astype(np.float64)),
                      totals(rows.iou), covered, rows.num_gt, rows.has_gt)
    out = pd.DataFrame({"s_t": s_grid})
    for name in METRICS:
        out[name] = np.asarray(metrics[name])
    return out.astype({k: np.int64 for k in _COUNTS})


def best_row(sweep: pd.DataFrame, metric: str = "f1") -> dict | None:
    """The grid row with the highest ``metric`` (ties: higher precision, then fewer kept)."""
    ranked = sweep.dropna(subset=[metric])
    if ranked.empty:
        return None
    ranked = ranked.sort_values([metric, "precision", "kept"], ascending=[False, False, True],
                                kind="stable")
    best = ranked.iloc[0].to_dict()
    return {k: int(v) if k in _COUNTS else float(v) for k, v in best.items()}


@dataclass
class ThresholdStudy:
    """Both sweeps, the best DDTF pair and coupled threshold by F1, and the run's own points."""

    ddtf: pd.DataFrame
    coupled: pd.DataFrame
    best_ddtf: dict | None
    best_coupled: dict | None
    run_ddtf: dict | None       # metrics at the manifest's (c_t, m_t)
    run_coupled: dict | None    # metrics at the manifest's s_t
    run_filter: str | None      # which of the two the run trained with
    num_gt: int
    has_gt: bool


def threshold_study(queries: pd.DataFrame, gt: pd.DataFrame, run_thresholds: dict | None = None,
                    m_grid=DEFAULT_M_GRID, c_grid=DEFAULT_C_GRID,
                    s_grid=DEFAULT_S_GRID) -> ThresholdStudy:
    """Sweep both filters and compare with the run's thresholds (the manifest's ``thresholds``, whose
    ``mask_area_threshold`` applies to every point)."""
    rows = _Rows.of(queries, gt, int((run_thresholds or {}).get("mask_area_threshold") or 0))
    ddtf, coupled = _sweep_ddtf(rows, m_grid, c_grid), _sweep_coupled(rows, s_grid)
    run_thresholds = run_thresholds or {}
    run_ddtf = run_coupled = None
    if run_thresholds.get("c_t") is not None and run_thresholds.get("m_t") is not None:
        run_ddtf = _what_if(rows, run_thresholds["c_t"], run_thresholds["m_t"])
    if run_thresholds.get("s_t") is not None:
        run_coupled = _what_if_coupled(rows, run_thresholds["s_t"])
    return ThresholdStudy(ddtf=ddtf, coupled=coupled,
                          best_ddtf=best_row(ddtf) if rows.has_gt else None,
                          best_coupled=best_row(coupled) if rows.has_gt else None,
                          run_ddtf=run_ddtf, run_coupled=run_coupled,
                          run_filter=run_thresholds.get("filter"), num_gt=rows.num_gt, has_gt=rows.has_gt)
