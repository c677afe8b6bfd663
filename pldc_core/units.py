"""How numbers are written on every surface (CLI, logs, report, app): AP always with its unit.

COCO mask AP is computed in percent here (``pldc_core.evaluation``), so ``AP 0.22`` would read as
22% to anyone used to 0-1 scores. Every place that shows an AP-like metric goes through these.
"""
from __future__ import annotations

import math

AP_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def format_ap(value: float | None, digits: int = 2) -> str:
    """An AP-like metric (already in percent) as ``"12.34%"``; ``"n/a"`` when undefined."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}%"


def format_metrics(metrics: dict, keys: tuple[str, ...] = AP_METRICS, digits: int = 2) -> str:
    """``"AP 12.34% · AP50 20.00% · ..."`` for the keys of ``metrics`` that are present."""
    return " · ".join(f"{k} {format_ap(metrics[k], digits)}" for k in keys if k in metrics)
