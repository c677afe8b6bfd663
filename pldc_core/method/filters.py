"""Which teacher queries become pseudo-labels: the filters and their thresholds (Eq. 5; no torch).

The keep rules are plain comparisons, so they work on torch tensors and numpy arrays alike:
training and the records call them on tensors, the analysis on DataFrame columns.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

FILTERS = ("ddtf", "coupled", "none")
# The records' column that holds each filter's decision at the run's thresholds.
KEEP_COLUMNS = {"ddtf": "keep_ddtf", "coupled": "keep_coupled"}


def ddtf_keep(c, m, c_t: float, m_t: float):
    """Eq. 5, decoupled dual-threshold filtering: keep iff ``c >= c_t and m >= m_t``."""
    return (c >= c_t) & (m >= m_t)


def coupled_keep(c, m, s_t: float):
    """The single-score baseline DDTF replaces: keep iff ``s = c * m >= s_t``."""
    return c * m >= s_t


@dataclass(frozen=True)
class Thresholds:
    """A filter and its thresholds: what a run trains with, or one position of the app's sliders."""

    filter: str = "ddtf"   # ddtf | coupled | none (every query is kept)
    c_t: float = 0.85
    m_t: float = 0.9
    s_t: float = 0.765
    # After the filter, a pseudo-label whose mask at image resolution has at most this many
    # pixels is dropped (pldc.mask_area_threshold; 0: none is).
    mask_area_threshold: int = 0

    def __post_init__(self) -> None:
        if self.filter not in FILTERS:
            raise ValueError(f"unknown pseudo-label filter {self.filter!r}; expected one of {FILTERS}")

    @classmethod
    def of(cls, values: Mapping) -> "Thresholds":
        """From a mapping with ``filter``, ``c_t``, ``m_t``, ``s_t`` and ``mask_area_threshold`` (a
        records manifest's or the config's; manifests written before it existed lack it: 0)."""
        return cls(filter=values.get("filter", "ddtf"), c_t=float(values.get("c_t", 0.85)),
                   m_t=float(values.get("m_t", 0.9)), s_t=float(values.get("s_t", 0.765)),
                   mask_area_threshold=int(values.get("mask_area_threshold") or 0))

    @classmethod
    def of_manifest(cls, manifest: Mapping) -> "Thresholds":
        """The thresholds a records manifest was written with."""
        return cls.of(manifest.get("thresholds") or {})

    @classmethod
    def of_config(cls, pldc) -> "Thresholds":
        """The thresholds of a ``config.PldcConfig``."""
        return cls(filter=pldc.filter, c_t=pldc.c_t, m_t=pldc.m_t, s_t=pldc.s_t,
                   mask_area_threshold=pldc.mask_area_threshold)

    def as_dict(self) -> dict:
        """``{"filter", "c_t", "m_t", "s_t", "mask_area_threshold"}``, as the records manifest stores them."""
        return {"filter": self.filter, "c_t": self.c_t, "m_t": self.m_t, "s_t": self.s_t,
                "mask_area_threshold": self.mask_area_threshold}

    @property
    def kept_by(self) -> str:
        """The records' filter whose ``keep_*`` column says what the run kept ('ddtf' unless 'coupled')."""
        return "coupled" if self.filter == "coupled" else "ddtf"

    @property
    def keep_column(self) -> str:
        """``keep_ddtf`` or ``keep_coupled``: the records' column of the run's decisions."""
        return KEEP_COLUMNS[self.kept_by]

    def keep(self, c, m):
        """Which queries this filter keeps, from class quality ``c`` and mask quality ``m``."""
        if self.filter == "ddtf":
            return ddtf_keep(c, m, self.c_t, self.m_t)
        if self.filter == "coupled":
            return coupled_keep(c, m, self.s_t)
        return c == c  # "none": every query (False only for NaN, which no quality is)

    def describe(self) -> str:
        """The rule in words, e.g. ``c >= 0.85 and m >= 0.90`` (``, mask > 5 px`` with an area threshold)."""
        rule = f"s >= {self.s_t:.2f}" if self.filter == "coupled" else f"c >= {self.c_t:.2f} and m >= {self.m_t:.2f}"
        return rule + (f", mask > {self.mask_area_threshold} px" if self.mask_area_threshold else "")
