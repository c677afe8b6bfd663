"""Confusion of pseudo-label classes with GT classes (the paper's Fig. 3), before and after DICC.

Rows are the pseudo-label (predicted) class, columns the GT class; both have a background
entry, labelled ``BACKGROUND`` (-1) and placed last. The exact rule:

- only queries with known GT count (finite ``iou``), after the optional ``kept_by`` filter;
- a query whose highest IoU with a GT (``iou``) is > 0.5 adds one to ``(its class, gt_class)``;
  for such a query the record's ``gt_id``/``gt_class`` is a GT it overlaps at IoU > 0.5 (the
  one that decided its error type Cor/Sim/Oth); several queries on one GT each count;
- any other query (IoU <= 0.5 with every GT, or an image with no GT instance) adds one to
  ``(its class, background)``;
- every GT instance of the gt table that no counted query matched (IoU > 0.5) adds one to
  ``(background, its class)``;
- ``(background, background)`` is always 0.

"Its class" is ``pred_class``, or with ``use_dicc`` the DICC ``corrected_class`` where DICC ran
(``corrected_class >= 0``) and ``pred_class`` elsewhere. The row-normalised matrix divides
each row by its total (NaN for an empty row): where the pseudo-labels of a class really lie.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pldc_core.records.errors import IOU_MATCH
from workbench.thresholds import select_kept

BACKGROUND = -1


@dataclass
class Confusion:
    counts: pd.DataFrame       # index: pred class (+ BACKGROUND), columns: GT class (+ BACKGROUND)
    normalized: pd.DataFrame   # counts divided by their row total
    use_dicc: bool
    has_gt: bool

    @property
    def labels(self) -> list[int]:
        return list(self.counts.index)

    @property
    def n_pseudo_labels(self) -> int:
        """How many pseudo-labels were counted (the rows of real classes; the background row holds
        missed GT instances)."""
        if not self.has_gt:
            return 0
        return int(self.counts.drop(index=BACKGROUND).to_numpy().sum())


def effective_class(queries: pd.DataFrame, use_dicc: bool) -> np.ndarray:
    """The class each query is labelled with: DICC's where it ran (and ``use_dicc``), else the teacher's."""
    pred = queries["pred_class"].to_numpy(np.int64)
    if not use_dicc:
        return pred
    corrected = queries["corrected_class"].to_numpy(np.int64)
    return np.where(corrected >= 0, corrected, pred)


def _check_classes(values: np.ndarray, num_classes: int, what: str, frame: pd.DataFrame,
                   id_columns: list[str]) -> None:
    bad = (values < 0) | (values >= num_classes)
    if bad.any():
        row = frame.iloc[int(np.flatnonzero(bad)[0])]
        where = ", ".join(f"{c}={row[c]}" for c in id_columns)
        raise ValueError(f"confusion_matrix: {what} {int(values[bad][0])} outside "
                         f"0..{num_classes - 1} ({where})")


def confusion_matrix(queries: pd.DataFrame, gt: pd.DataFrame, num_classes: int, *,
                     use_dicc: bool = False, kept_by: str | None = None) -> Confusion:
    """The (N+1) x (N+1) confusion matrix described in the module docstring."""
    labels = list(range(num_classes)) + [BACKGROUND]
    rows = select_kept(queries, kept_by)
    rows = rows.loc[rows["iou"].notna()]
    has_gt = bool(len(gt) or len(rows))
    if not has_gt:
        empty = pd.DataFrame(index=pd.Index([], name="pred_class"), columns=pd.Index([], name="gt_class"))
        return Confusion(empty, empty.copy(), use_dicc, False)

    bg = num_classes  # background's position in the matrix
    pred = effective_class(rows, use_dicc)
    _check_classes(pred, num_classes, "predicted class", rows, ["image_id", "query"])
    matched = rows["iou"].to_numpy(np.float64) > IOU_MATCH
    gt_col = np.where(matched, rows["gt_class"].to_numpy(np.int64), bg)
    _check_classes(np.where(matched, gt_col, 0), num_classes, "GT class", rows,
                   ["image_id", "query", "gt_id"])

    gt_class = gt["gt_class"].to_numpy(np.int64)
    _check_classes(gt_class, num_classes, "GT class", gt, ["image_id", "gt_id"])
    unmatched_gt = ~np.isin(gt["gt_id"].to_numpy(np.int64), rows["gt_id"].to_numpy(np.int64)[matched])

    size = num_classes + 1
    flat = np.concatenate([pred * size + gt_col, bg * size + gt_class[unmatched_gt]])
    counts = np.bincount(flat, minlength=size * size).reshape(size, size)
    counts_df = pd.DataFrame(counts, index=pd.Index(labels, name="pred_class"),
                             columns=pd.Index(labels, name="gt_class"))
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalized = np.where(totals > 0, counts / np.where(totals > 0, totals, 1), np.nan)
    norm_df = pd.DataFrame(normalized, index=counts_df.index, columns=counts_df.columns)
    return Confusion(counts_df, norm_df, use_dicc, True)


def most_confused(confusion: Confusion, top: int = 10, include_background: bool = False) -> pd.DataFrame:
    """The largest off-diagonal cells: pred_class, gt_class, count, share of the pred row."""
    columns = ["pred_class", "gt_class", "count", "share"]
    if not confusion.has_gt:
        return pd.DataFrame(columns=columns)
    labels = np.asarray(confusion.labels)
    pred_i, gt_i = np.nonzero(confusion.counts.to_numpy() > 0)
    off = pd.DataFrame({"pred_class": labels[pred_i], "gt_class": labels[gt_i],
                        "count": confusion.counts.to_numpy()[pred_i, gt_i],
                        "share": confusion.normalized.to_numpy()[pred_i, gt_i]})
    off = off[off["pred_class"] != off["gt_class"]]
    if not include_background:
        off = off[(off["pred_class"] != BACKGROUND) & (off["gt_class"] != BACKGROUND)]
    off = off.sort_values(["count", "share", "pred_class", "gt_class"],
                          ascending=[False, False, True, True], kind="stable")
    return off.head(top)[columns].reset_index(drop=True)


def class_accuracy(confusion: Confusion) -> float:
    """Share of matched pseudo-labels (real pred and GT classes) whose class is right."""
    if not confusion.has_gt:
        return float("nan")
    real = confusion.counts.drop(index=BACKGROUND, columns=BACKGROUND).to_numpy()
    total = real.sum()
    return float(np.trace(real) / total) if total else float("nan")
