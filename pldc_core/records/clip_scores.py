"""CLIP's per-class precision and recall on ground-truth crops (the paper's Table II), per DICC mode.

Reads the rows ``pldc clip-crops`` writes (``gt_class``, ``clip_pred`` and, since it compares
modes, ``mode``); loads no torch, so the workbench uses it too.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# The mode of a table written before `pldc clip-crops` compared modes: the run's crop, unnamed
SINGLE_MODE = "crop"


@dataclass
class ClipPrecisionRecall:
    per_class: pd.DataFrame   # class, support (GT crops), predicted, tp, precision, recall
    accuracy: float           # share of crops CLIP classifies right
    n: int

    @property
    def mean_precision(self) -> float:
        """Mean over the classes CLIP predicts at least once (NaN when none)."""
        return _nanmean(self.per_class["precision"])

    @property
    def mean_recall(self) -> float:
        """Mean over the classes with at least one GT crop (NaN when none)."""
        return _nanmean(self.per_class["recall"])


def _nanmean(values: pd.Series) -> float:
    values = values.to_numpy(np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def clip_precision_recall(table: pd.DataFrame, num_classes: int) -> ClipPrecisionRecall:
    """CLIP's per-class precision and recall on GT crops, from rows of (gt_class, clip_pred).

    Precision is NaN for a class CLIP never predicts; recall is NaN for a class with no crop.
    """
    gt = table["gt_class"].to_numpy(np.int64)
    pred = table["clip_pred"].to_numpy(np.int64)
    for name, values in (("gt_class", gt), ("clip_pred", pred)):
        bad = (values < 0) | (values >= num_classes)
        if bad.any():
            raise ValueError(f"clip_precision_recall: {name} {int(values[bad][0])} at row "
                             f"{int(np.flatnonzero(bad)[0])} outside 0..{num_classes - 1}")
    support = np.bincount(gt, minlength=num_classes)
    predicted = np.bincount(pred, minlength=num_classes)
    tp = np.bincount(gt[gt == pred], minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), np.nan)
        recall = np.where(support > 0, tp / np.maximum(support, 1), np.nan)
    per_class = pd.DataFrame({"class": np.arange(num_classes), "support": support,
                              "predicted": predicted, "tp": tp, "precision": precision,
                              "recall": recall})
    n = int(len(gt))
    return ClipPrecisionRecall(per_class, float(tp.sum() / n) if n else float("nan"), n)


def clip_precision_recall_by_mode(table: pd.DataFrame, num_classes: int) -> dict[str, ClipPrecisionRecall]:
    """``clip_precision_recall`` of each mode's rows, in the order the modes first appear; a table
    without a ``mode`` column is one mode, ``SINGLE_MODE``."""
    if "mode" not in table.columns:
        return {SINGLE_MODE: clip_precision_recall(table, num_classes)}
    modes = list(dict.fromkeys(table["mode"].astype(str)))
    return {mode: clip_precision_recall(table[table["mode"].astype(str) == mode], num_classes) for mode in modes}


def mode_summary(by_mode: dict[str, ClipPrecisionRecall]) -> pd.DataFrame:
    """One row per mode: ``mode, crops, accuracy_pct, mean_precision_pct, classes_predicted,
    mean_recall_pct`` (percent). The mean precision is over the ``classes_predicted`` classes the
    mode predicts at least once; a mode that never predicts a class is marked down in its recall."""
    return pd.DataFrame({
        "mode": list(by_mode),
        "crops": [pr.n for pr in by_mode.values()],
        "accuracy_pct": [100 * pr.accuracy for pr in by_mode.values()],
        "mean_precision_pct": [100 * pr.mean_precision for pr in by_mode.values()],
        "classes_predicted": [int((pr.per_class["predicted"] > 0).sum()) for pr in by_mode.values()],
        "mean_recall_pct": [100 * pr.mean_recall for pr in by_mode.values()],
    })
