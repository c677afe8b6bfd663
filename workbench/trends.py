"""Every analysis across a run's checkpoints, as tidy DataFrames with an ``iteration`` column;
and the run's training logs (``metrics.jsonl``, ``eval.jsonl``) as tables, with where its burn-in ends.

``checkpoint_trends`` takes ``(iteration, record set)`` pairs, where a record set is anything
with ``.queries``, ``.gt``, ``.manifest`` and ``.info`` (``pldc_core.records.store.RecordSet``); it reads one
checkpoint at a time, so a long run never has to fit in memory at once.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from pldc_core.config import ConfigError, load_config
from pldc_core.jsonl import read_json_lines
from pldc_core.records.schema import Manifest
from pldc_core.run_dir import RunDir
from workbench.confusion import class_accuracy, confusion_matrix, most_confused
from workbench.dicc_report import dicc_report
from workbench.error_breakdown import error_breakdown
from workbench.quality import correlations
from workbench.thresholds import threshold_study
from workbench.uncertainty import region_means

# The query columns the analyses read (the heavy mask/uncertainty payloads are left out).
ANALYSIS_COLUMNS = ["image_id", "query", "pred_class", "c", "m", "s", "height", "width", "area",
                    "keep_ddtf", "keep_coupled", "gt_id", "gt_class", "iou", "error_type",
                    "dicc_w", "corrected_class", "clip_top5_classes", "unc_mean_inside", "unc_mean_boundary",
                    "unc_mean_overlap"]
ITERATION_KEYS = ("iteration", "iter", "step")


@dataclass
class Trends:
    quality: pd.DataFrame       # iteration, score, pearson, spearman, n
    errors: pd.DataFrame        # iteration, kept_by, size, error_type, count, share
    thresholds: pd.DataFrame    # iteration, point ('best_ddtf', 'run_ddtf', ...), m_t, c_t, s_t, kept, precision, recall, f1
    confusion: pd.DataFrame     # iteration, use_dicc, class_accuracy, top_pred, top_gt, top_count
    dicc: pd.DataFrame          # iteration, n_ran, n_changed, fixed, broken, neutral, net, accuracy_before/after
    uncertainty: pd.DataFrame   # iteration, region, mean_u, median_u, n


def num_classes_of(info: Manifest, *frames: pd.DataFrame) -> int:
    """The number of classes: the manifest's categories, else the largest class index seen + 1."""
    names = info.class_names
    if names:
        return len(names)
    seen = [int(f[c].max()) for f in frames for c in ("pred_class", "gt_class", "corrected_class")
            if c in f.columns and len(f)]
    return max(seen + [-1]) + 1


def _one_checkpoint(iteration: int, rec) -> dict[str, pd.DataFrame]:
    q, gt = rec.queries, rec.gt
    kept_by = rec.info.thresholds.kept_by
    n_classes = num_classes_of(rec.info, q, gt)
    out = {"quality": correlations(q)}

    errors = []
    for which in (None, kept_by):
        table = error_breakdown(q, kept_by=which).table
        errors.append(table.assign(kept_by=which or "all"))
    out["errors"] = pd.concat(errors, ignore_index=True)

    study = threshold_study(q, gt, rec.manifest.get("thresholds"))
    points = {"best_ddtf": study.best_ddtf, "run_ddtf": study.run_ddtf,
              "best_coupled": study.best_coupled, "run_coupled": study.run_coupled}
    out["thresholds"] = pd.DataFrame([{"point": k, **{c: v.get(c, np.nan) for c in
                                      ("m_t", "c_t", "s_t", "kept", "precision", "recall", "f1")}}
                                      for k, v in points.items() if v is not None],
                                     columns=["point", "m_t", "c_t", "s_t", "kept", "precision",
                                              "recall", "f1"])

    rows = []
    for use_dicc in (False, True):
        conf = confusion_matrix(q, gt, n_classes, use_dicc=use_dicc, kept_by=kept_by)
        top = most_confused(conf, top=1)
        rows.append({"use_dicc": use_dicc, "class_accuracy": class_accuracy(conf),
                     "top_pred": int(top["pred_class"].iloc[0]) if len(top) else -1,
                     "top_gt": int(top["gt_class"].iloc[0]) if len(top) else -1,
                     "top_count": int(top["count"].iloc[0]) if len(top) else 0})
    out["confusion"] = pd.DataFrame(rows)

    summary = dicc_report(q).summary
    out["dicc"] = pd.DataFrame([{k: summary[k] for k in ("n_ran", "n_changed", "n_judged", "fixed",
                                                         "broken", "neutral", "net",
                                                         "accuracy_before", "accuracy_after")}])
    out["uncertainty"] = region_means(q, kept_by=kept_by)
    return {k: v.assign(iteration=iteration) for k, v in out.items()}


def checkpoint_trends(checkpoints: Iterable[tuple[int, object]]) -> Trends:
    """Run every per-checkpoint analysis on each ``(iteration, record set)`` and stack them."""
    parts: dict[str, list[pd.DataFrame]] = {f.name: [] for f in fields(Trends)}
    for iteration, rec in checkpoints:
        for key, frame in _one_checkpoint(int(iteration), rec).items():
            parts[key].append(frame)
    stacked = {}
    for key, frames in parts.items():
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["iteration"])
        stacked[key] = frame[["iteration"] + [c for c in frame.columns if c != "iteration"]]
    return Trends(**stacked)


def read_jsonl(path: str | Path) -> pd.DataFrame:
    """A JSON-lines log as a table (empty if the file does not exist).

    The iteration column is named ``iteration`` whatever the log calls it (``iter``/``step``).
    A last line that does not parse is taken as still being written and skipped; a bad line
    anywhere else raises ValueError naming the file and line.
    """
    frame = pd.DataFrame.from_records(read_json_lines(path, strict=True))
    for key in ITERATION_KEYS:
        if key in frame.columns:
            return frame.rename(columns={key: "iteration"}).sort_values("iteration", kind="stable")
    return frame


def evaluated_models(evals: pd.DataFrame) -> pd.Series:
    """Which model each ``eval.jsonl`` row evaluated (``student``/``teacher``; ``model`` where unlogged)."""
    if "model" not in evals.columns:
        return pd.Series("model", index=evals.index)
    return evals["model"].fillna("model").astype(str)


def per_class_ap(evals: pd.DataFrame) -> pd.DataFrame:
    """Each class's mask AP (%) at the first and the last evaluation of each evaluated model, from
    ``eval.jsonl``'s ``AP_per_class``: columns ``model``, ``class``, ``first``, ``last``,
    ``first_iteration``, ``last_iteration``, ``change`` (points). Empty when no evaluation logged it."""
    columns = ["model", "class", "first", "last", "first_iteration", "last_iteration", "change"]
    if evals.empty or "AP_per_class" not in evals.columns or "iteration" not in evals.columns:
        return pd.DataFrame(columns=columns)
    logged = evals[evals["AP_per_class"].map(lambda v: isinstance(v, dict) and len(v) > 0)]
    models = evaluated_models(logged)
    rows = []
    for model in dict.fromkeys(models):
        sel = logged[models == model].sort_values("iteration", kind="stable")
        first, last = sel.iloc[0], sel.iloc[-1]
        for name, value in last["AP_per_class"].items():
            start = first["AP_per_class"].get(name, np.nan)
            start = np.nan if start is None else float(start)
            end = np.nan if value is None else float(value)
            rows.append((model, name, start, end, int(first["iteration"]), int(last["iteration"]), end - start))
    return pd.DataFrame(rows, columns=columns)


def burn_in_of(run_dir: str | Path) -> int | None:
    """The iteration the run's burn-in ends at, from its config.yaml (None without a readable one)."""
    try:
        return load_config(RunDir(run_dir).config).train.burn_in_iters
    except (ConfigError, OSError):
        return None
