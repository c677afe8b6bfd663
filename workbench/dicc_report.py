"""What DICC did to the pseudo-label classes, and the CLIP-on-GT-crops table (Table II) read back.

CLIP's per-class precision and recall per mode are ``pldc_core.records.clip_scores``'s (re-exported here).

DICC ran on a row when ``corrected_class >= 0``; it changed the row when
``corrected_class != pred_class``. A row is *judged* when it lies on a GT (``iou`` > 0.5, the
error types' match rule); "right" then means ``class == gt_class``, the class of the GT the
records name for it (one it overlaps at IoU > 0.5). Rows off every GT, or without GT, are
unjudged: their class cannot be called right or wrong. For a judged row:

- ``fixed``: teacher wrong, DICC right;   ``broken``: teacher right, DICC wrong;
- ``neutral``: changed, wrong before and after (another wrong class);
- ``kept_right`` / ``kept_wrong``: unchanged, right / wrong.

Per-class tables are keyed by the teacher's class (the class DICC changed *from*).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pldc_core.records.clip_scores import (SINGLE_MODE, ClipPrecisionRecall, clip_precision_recall,  # noqa: F401
                                           clip_precision_recall_by_mode, mode_summary)
from pldc_core.records.errors import IOU_MATCH
from workbench.thresholds import select_kept

OUTCOMES = ("fixed", "broken", "neutral", "kept_right", "kept_wrong", "unjudged")


@dataclass
class DiccReport:
    summary: dict               # n_ran, n_changed, outcome counts, accuracy_before/after, clip_accuracy (judged rows)
    per_class: pd.DataFrame     # from_class: n_ran, changed_from, changed_to, and the outcomes
    transitions: pd.DataFrame   # from_class, to_class, count, and the outcomes, changed rows only
    ran: bool                   # DICC ran on at least one row
    has_gt: bool                # at least one DICC row could be judged


def _outcomes(rows: pd.DataFrame, min_iou: float) -> pd.Series:
    before = rows["pred_class"].to_numpy(np.int64)
    after = rows["corrected_class"].to_numpy(np.int64)
    gt = rows["gt_class"].to_numpy(np.int64)
    judged = rows["iou"].to_numpy(np.float64) > min_iou  # NaN compares False
    right_before, right_after, changed = before == gt, after == gt, before != after
    outcome = np.select(
        [~judged, ~right_before & right_after, right_before & ~right_after, changed, right_before],
        ["unjudged", "fixed", "broken", "neutral", "kept_right"], default="kept_wrong")
    return pd.Series(pd.Categorical(outcome, categories=OUTCOMES), index=rows.index)


def _clip_accuracy(rows: pd.DataFrame, outcome: pd.Series) -> float:
    """CLIP's own most likely class against the GT's, over the judged rows (NaN without those
    or without the ``clip_top5_classes`` column): how well CLIP reads the teacher's masks, where
    the table on GT crops says how well it reads the true ones."""
    if "clip_top5_classes" not in rows.columns:
        return float("nan")
    judged = (outcome != "unjudged").to_numpy()
    top = np.array([a[0] if a is not None and len(a) else -1 for a in rows["clip_top5_classes"]], dtype=np.int64)
    judged = judged & (top >= 0)
    if not judged.any():
        return float("nan")
    return float((top[judged] == rows["gt_class"].to_numpy(np.int64)[judged]).mean())


def dicc_report(queries: pd.DataFrame, kept_by: str | None = None, min_iou: float = IOU_MATCH) -> DiccReport:
    """Summary, per-class and from->to tables of DICC's changes (see the module docstring)."""
    rows = select_kept(queries, kept_by)
    rows = rows.loc[rows["corrected_class"].to_numpy(np.int64) >= 0]
    outcome = _outcomes(rows, min_iou)
    changed = rows["corrected_class"].to_numpy(np.int64) != rows["pred_class"].to_numpy(np.int64)
    counts = outcome.value_counts().reindex(OUTCOMES, fill_value=0)
    judged = int(len(rows) - counts["unjudged"])
    right_before = int(counts["broken"] + counts["kept_right"])
    right_after = int(counts["fixed"] + counts["kept_right"])
    summary = {"n_ran": int(len(rows)), "n_changed": int(changed.sum()), "n_judged": judged,
               **{k: int(v) for k, v in counts.items()},
               "net": int(counts["fixed"] - counts["broken"]),
               "accuracy_before": right_before / judged if judged else float("nan"),
               "accuracy_after": right_after / judged if judged else float("nan"),
               "clip_accuracy": _clip_accuracy(rows, outcome)}

    frame = pd.DataFrame({"from_class": rows["pred_class"].to_numpy(np.int64),
                          "to_class": rows["corrected_class"].to_numpy(np.int64),
                          "changed": changed, "outcome": outcome.to_numpy()})
    by_from = pd.crosstab(frame["from_class"], frame["outcome"], dropna=False).reindex(
        columns=list(OUTCOMES), fill_value=0)
    per_class = pd.DataFrame({
        "n_ran": frame.groupby("from_class").size(),
        "changed_from": frame[frame["changed"]].groupby("from_class").size(),
        "changed_to": frame[frame["changed"]].groupby("to_class").size(),
        # changes on no GT (``unjudged`` counts every row DICC ran on there, changed or not)
        "changed_unjudged": frame[frame["changed"] & (frame["outcome"] == "unjudged")].groupby("from_class").size(),
    }).join(by_from, how="left").fillna(0).astype(np.int64)
    per_class.index.name = "from_class"
    per_class["net"] = per_class["fixed"] - per_class["broken"]

    moved = frame[frame["changed"]]
    transitions = pd.crosstab([moved["from_class"], moved["to_class"]], moved["outcome"],
                              dropna=False).reindex(columns=list(OUTCOMES), fill_value=0)
    transitions.columns = list(transitions.columns)
    transitions.insert(0, "count", transitions.sum(axis=1))
    transitions = transitions[transitions["count"] > 0].reset_index()
    transitions = transitions.drop(columns=["kept_right", "kept_wrong"]).sort_values(
        ["count", "from_class", "to_class"], ascending=[False, True, True], kind="stable")
    return DiccReport(summary=summary, per_class=per_class.reset_index(),
                      transitions=transitions.reset_index(drop=True), ran=bool(len(rows)),
                      has_gt=judged > 0)


CLIP_TABLE_COLUMNS = ("gt_class", "clip_pred")


def read_clip_table(path: str | Path) -> pd.DataFrame:
    """The ``mode, gt_class, clip_pred`` rows of a CLIP-on-GT-crops table (parquet, as ``pldc
    clip-crops`` writes it, or CSV); ValueError naming the file when a column is missing. A table
    from before modes were compared has no ``mode`` column: its rows get ``SINGLE_MODE``."""
    path = Path(path)
    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    missing = sorted(set(CLIP_TABLE_COLUMNS) - set(table.columns))
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    mode = table["mode"].astype(str) if "mode" in table.columns else SINGLE_MODE
    return table[list(CLIP_TABLE_COLUMNS)].assign(mode=mode)[["mode", *CLIP_TABLE_COLUMNS]]
