"""One checkpoint's pseudo-labels held for interactive use: loaded once, looked up fast.

``open_checkpoint(run, iteration)`` loads the records' analysis columns (not the masks) and keeps
the last few checkpoints in memory. A ``Checkpoint`` answers what a front end asks on every
slider move or click without recomputing from scratch:

- ``metrics_at(thresholds)``: the threshold what-if (``workbench.thresholds``) of one slider
  position. The DDTF sweep over a 0.00..1.00 grid in steps of 0.01 (both axes) and the coupled
  sweep over the same grid are computed once per checkpoint; a position on that grid is a
  lookup, any other position is computed exactly with ``thresholds.what_if`` (both with the
  run's mask-area threshold, which the sliders do not move);
- ``select(Selection, thresholds)``: the rows of a filtered set (class, GT class, error type,
  size, kept or not at the given thresholds, curation decision, DICC change, confusion cell);
- ``table(rows, ...)``: those rows as a display table with class names.

``run_summaries(run)`` gives the per-checkpoint error breakdowns and DICC summaries of a whole
run (for the trends), each checkpoint read once with only the columns they need.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pldc_core.method.filters import KEEP_COLUMNS, Thresholds
from pldc_core.records.errors import IOU_MATCH
from pldc_core.records.schema import MANIFEST_FILE
from pldc_core.records.store import list_record_iterations, load_records, records_dir
from workbench.confusion import BACKGROUND, effective_class
from workbench.curation import CurationStore, apply_edits
from workbench.dicc_report import dicc_report
from workbench.error_breakdown import SIZES, error_breakdown, size_codes
from workbench.thresholds import best_row, sweep_coupled, sweep_ddtf, what_if, what_if_coupled
from workbench.trends import ANALYSIS_COLUMNS, num_classes_of

GRID = np.round(np.linspace(0.0, 1.0, 101), 2)
CACHE_SIZE = 4
STATUSES = ("all", "kept", "filtered", "run_kept", "accepted", "rejected", "relabelled", "reviewed", "unreviewed")
TABLE_COLUMNS = ["image_id", "query", "class", "c", "m", "s", "iou", "error", "GT class", "DICC class", "area",
                 "kept (run)", "curation"]
SORTABLE = ("s", "c", "m", "iou", "area", "image_id")


@dataclass(frozen=True)
class Selection:
    """A filtered set of queries; None (or 'all') leaves a criterion out."""

    pred_class: int | None = None     # the teacher's class
    gt_class: int | None = None       # the class of the GT the row lies on (IoU > 0.5); BACKGROUND: on none
    error_type: str | None = None
    size: str | None = None           # small | medium | large
    status: str = "all"               # one of STATUSES
    dicc_from: int | None = None      # DICC changed the class from ...
    dicc_to: int | None = None        # ... to (both: rows where DICC ran and changed the class)
    use_dicc: bool = False            # pred_class means the class after DICC (confusion cells)
    known_gt: bool = False            # only rows with known GT (confusion cells)
    kept_by: str | None = None        # only rows the run's filter kept ('ddtf' | 'coupled')

    def describe(self, class_names: list[str]) -> str:
        def name(k):
            return "background" if k == BACKGROUND else (class_names[k] if 0 <= k < len(class_names) else str(k))
        parts = []
        if self.pred_class is not None:
            parts.append(f"{'class after DICC' if self.use_dicc else 'class'} {name(self.pred_class)}")
        if self.gt_class is not None:
            parts.append("on no GT" if self.gt_class == BACKGROUND else f"on a GT {name(self.gt_class)}")
        if self.error_type:
            parts.append(f"error {self.error_type}")
        if self.size:
            parts.append(self.size)
        if self.dicc_from is not None and self.dicc_to is not None:
            parts.append(f"DICC {name(self.dicc_from)} -> {name(self.dicc_to)}")
        if self.kept_by:
            parts.append(f"kept by the run's {self.kept_by.upper() if self.kept_by == 'ddtf' else 'coupled'} filter")
        if self.status != "all":
            parts.append({"kept": "kept at these thresholds", "filtered": "filtered out at these thresholds",
                          "run_kept": "kept by the run", "unreviewed": "not reviewed",
                          "reviewed": "reviewed"}.get(self.status, self.status))
        return ", ".join(parts) or "all queries"


class Checkpoint:
    """The analysis columns of one checkpoint, with cached derived arrays (see the module docstring)."""

    def __init__(self, run: Path, iteration: int, stamp: int):
        rec = load_records(run, iteration, columns=ANALYSIS_COLUMNS)
        self.run, self.iteration, self.stamp = run, int(iteration), stamp
        self.path = rec.path
        self.queries, self.gt, self.images, self.manifest = rec.queries, rec.gt, rec.images, rec.manifest
        self.info = rec.info
        self.num_classes = num_classes_of(self.info, self.queries, self.gt)
        self.class_names = self.info.class_names or [str(i) for i in range(self.num_classes)]
        self.run_thresholds = self.info.thresholds
        self.kept_by = self.run_thresholds.kept_by
        self.c = self.queries["c"].to_numpy(np.float32)
        self.m = self.queries["m"].to_numpy(np.float32)
        self.s = self.queries["s"].to_numpy(np.float32)
        self._lock = threading.Lock()
        self._ddtf_grid: pd.DataFrame | None = None
        self._coupled_grid: pd.DataFrame | None = None
        self._keys: pd.MultiIndex | None = None
        self._sizes: np.ndarray | None = None
        self._curation: tuple[tuple, np.ndarray, np.ndarray] | None = None
        self._orders: dict[tuple[str, bool], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.queries)

    @property
    def has_gt(self) -> bool:
        return bool(self.queries["iou"].notna().any()) or len(self.gt) > 0

    @property
    def dicc_ran(self) -> bool:
        return bool((self.queries["corrected_class"].to_numpy(np.int64) >= 0).any())

    @property
    def run_kept(self) -> int:
        """How many pseudo-labels the run's own filter kept at this checkpoint."""
        return int(self.queries[KEEP_COLUMNS[self.kept_by]].sum())

    def best_point(self, filter_name: str | None = None) -> dict | None:
        """The what-if setting with the highest F1 on the slider grid, for ``filter_name`` (default: the
        run's filter); None without ground truth."""
        if not self.has_gt:
            return None
        coupled = (filter_name or self.run_thresholds.filter) == "coupled"
        return best_row(self.coupled_grid() if coupled else self.ddtf_grid())

    def class_name(self, k: int) -> str:
        k = int(k)
        if k == BACKGROUND:
            return "background"
        return self.class_names[k] if 0 <= k < len(self.class_names) else str(k)

    # ------------------------------------------------------------------ thresholds
    def ddtf_grid(self) -> pd.DataFrame:
        """``sweep_ddtf`` over ``GRID`` x ``GRID`` (computed once)."""
        with self._lock:
            if self._ddtf_grid is None:
                self._ddtf_grid = sweep_ddtf(self.queries, self.gt, m_grid=GRID, c_grid=GRID,
                                             mask_area_threshold=self.run_thresholds.mask_area_threshold)
            return self._ddtf_grid

    def coupled_grid(self) -> pd.DataFrame:
        """``sweep_coupled`` over ``GRID`` (computed once)."""
        with self._lock:
            if self._coupled_grid is None:
                self._coupled_grid = sweep_coupled(self.queries, self.gt, s_grid=GRID,
                                                   mask_area_threshold=self.run_thresholds.mask_area_threshold)
            return self._coupled_grid

    @staticmethod
    def _grid_index(value: float) -> int | None:
        i = int(round(float(value) * 100))
        return i if 0 <= i < len(GRID) and np.float32(GRID[i]) == np.float32(value) else None

    def metrics_at(self, t: Thresholds) -> dict:
        """The what-if metrics of one threshold setting (a grid lookup when it lies on ``GRID``)."""
        if t.filter == "coupled":
            i = self._grid_index(t.s_t)
            if i is None:
                return what_if_coupled(self.queries, self.gt, t.s_t, self.run_thresholds.mask_area_threshold)
            return {"filter": "coupled", **self.coupled_grid().iloc[i].to_dict(), "s_t": float(t.s_t)}
        i, j = self._grid_index(t.m_t), self._grid_index(t.c_t)
        if i is None or j is None:
            return what_if(self.queries, self.gt, t.c_t, t.m_t, self.run_thresholds.mask_area_threshold)
        row = self.ddtf_grid().iloc[i * len(GRID) + j].to_dict()
        return {"filter": "ddtf", **row, "c_t": float(t.c_t), "m_t": float(t.m_t)}

    def curves_at(self, t: Thresholds) -> dict[str, pd.DataFrame]:
        """What-if curves through the current setting: 'c' (c_t varies, m_t fixed), 'm' (m_t varies),
        or 's' for the coupled filter. A fixed value off the grid uses the nearest grid line."""
        if t.filter == "coupled":
            return {"s": self.coupled_grid()}
        grid, n = self.ddtf_grid(), len(GRID)
        i = min(max(int(round(t.m_t * 100)), 0), n - 1)
        j = min(max(int(round(t.c_t * 100)), 0), n - 1)
        return {"c": grid.iloc[i * n:(i + 1) * n], "m": grid.iloc[j::n]}

    def keep_mask(self, t: Thresholds) -> np.ndarray:
        """Which rows the setting keeps (float32 comparisons, as the records' own flags), with the
        run's mask-area threshold (the sliders do not move it)."""
        big = self.queries["area"].to_numpy(np.int64) > self.run_thresholds.mask_area_threshold
        if t.filter == "coupled":
            return (self.s >= np.float32(t.s_t)) & big
        return (self.c >= np.float32(t.c_t)) & (self.m >= np.float32(t.m_t)) & big

    # ------------------------------------------------------------------ rows
    def positions(self, keys) -> np.ndarray:
        """Row positions of ``(image_id, query)`` pairs (-1 where absent)."""
        if self._keys is None:
            self._keys = pd.MultiIndex.from_arrays([self.queries["image_id"].to_numpy(np.int64),
                                                    self.queries["query"].to_numpy(np.int64)])
        keys = list(keys)
        if not keys:
            return np.zeros(0, dtype=np.int64)
        return self._keys.get_indexer(pd.MultiIndex.from_tuples([(int(i), int(q)) for i, q in keys]))

    def key(self, position: int) -> tuple[int, int]:
        row = self.queries.iloc[int(position)]
        return int(row["image_id"]), int(row["query"])

    def sizes(self) -> np.ndarray:
        """Each row's size as an index into ``error_breakdown.SIZES``."""
        if self._sizes is None:
            q = self.queries
            self._sizes = size_codes(q["area"], q["height"], q["width"])
        return self._sizes

    def curation(self) -> tuple[np.ndarray, np.ndarray]:
        """Each row's standing curation decision (None or accept/reject/relabel) and final class."""
        store = CurationStore(self.run)
        try:
            st = store.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if self._curation is None or self._curation[0] != stamp:
            base = self.queries[["image_id", "query", "pred_class"]]
            applied = apply_edits(base, store.edits(self.iteration))
            self._curation = (stamp, applied["curation"].to_numpy(object), applied["final_class"].to_numpy(np.int64))
        return self._curation[1], self._curation[2]

    def curation_counts(self) -> pd.DataFrame:
        """Standing decisions per class (the teacher's class; the new class for relabels): action, class, count."""
        decision, final = self.curation()
        has = ~pd.isna(decision)
        frame = pd.DataFrame({"action": decision[has].astype(str), "class": final[has]})
        return frame.groupby(["action", "class"]).size().reset_index(name="count")

    def select(self, sel: Selection, t: Thresholds) -> np.ndarray:
        """Positions of the rows in the filtered set, in record order."""
        q = self.queries
        ok = np.ones(len(q), dtype=bool)
        if sel.pred_class is not None and sel.pred_class != BACKGROUND:
            ok &= effective_class(q, sel.use_dicc) == int(sel.pred_class)
        if sel.known_gt:
            ok &= q["iou"].notna().to_numpy()
        if sel.kept_by:
            ok &= q[KEEP_COLUMNS[sel.kept_by]].to_numpy(bool)
        if sel.gt_class is not None:
            matched = q["iou"].to_numpy(np.float64, na_value=np.nan) > IOU_MATCH
            if sel.gt_class == BACKGROUND:
                ok &= ~matched
            else:
                ok &= matched & (q["gt_class"].to_numpy(np.int64) == int(sel.gt_class))
        if sel.error_type:
            ok &= (q["error_type"] == sel.error_type).to_numpy(bool, na_value=False)
        if sel.size:
            ok &= self.sizes() == SIZES.index(sel.size)
        if sel.dicc_from is not None and sel.dicc_to is not None:
            ok &= (q["pred_class"].to_numpy(np.int64) == int(sel.dicc_from)) & \
                  (q["corrected_class"].to_numpy(np.int64) == int(sel.dicc_to))
        status = sel.status or "all"
        if status == "kept":
            ok &= self.keep_mask(t)
        elif status == "filtered":
            ok &= ~self.keep_mask(t)
        elif status == "run_kept":
            ok &= q[KEEP_COLUMNS[self.kept_by]].to_numpy(bool)
        elif status != "all":
            decision, _ = self.curation()
            if status == "unreviewed":
                ok &= pd.isna(decision)
            elif status == "reviewed":
                ok &= ~pd.isna(decision)
            else:
                ok &= decision == {"accepted": "accept", "rejected": "reject", "relabelled": "relabel"}[status]
        return np.flatnonzero(ok)

    def order(self, positions: np.ndarray, sort_by: str = "s", descending: bool = True) -> np.ndarray:
        """``positions`` sorted by a column (stable; missing values last). The order of the whole table is
        computed once per column and direction, then filtered."""
        if sort_by not in SORTABLE:
            raise ValueError(f"cannot sort by {sort_by!r}; one of {', '.join(SORTABLE)}")
        key = (sort_by, bool(descending))
        full = self._orders.get(key)
        if full is None:
            values = self.queries[sort_by].to_numpy(np.float64, na_value=np.nan)
            values = np.where(np.isnan(values), -np.inf if descending else np.inf, values)
            full = self._orders[key] = np.argsort(-values if descending else values, kind="stable")
        chosen = np.zeros(len(self.queries), dtype=bool)
        chosen[positions] = True
        return full[chosen[full]]

    def table(self, positions: np.ndarray, limit: int | None = 200) -> pd.DataFrame:
        """Display rows (class names, rounded scores, the run's decision, the curation) of ``positions``."""
        take = positions if limit is None else positions[:limit]
        q = self.queries.iloc[take]
        decision, final = self.curation()
        names = np.asarray(self.class_names + ["?"], dtype=object)

        def named(values):
            v = np.asarray(values, dtype=np.int64)
            out = names[np.where((v >= 0) & (v < len(self.class_names)), v, len(self.class_names))]
            return np.where(v < 0, "", out)

        kept = q[KEEP_COLUMNS[self.kept_by]].to_numpy(bool)
        curation = [("" if pd.isna(d) else (f"relabel: {self.class_name(f)}" if d == "relabel" else d))
                    for d, f in zip(decision[take], final[take])]
        return pd.DataFrame({
            "image_id": q["image_id"].to_numpy(np.int64), "query": q["query"].to_numpy(np.int64),
            "class": named(q["pred_class"]), "c": _rounded(q["c"]), "m": _rounded(q["m"]), "s": _rounded(q["s"]),
            "iou": _rounded(q["iou"]),
            "error": q["error_type"].fillna("").astype(str).to_numpy(), "GT class": named(q["gt_class"]),
            "DICC class": named(q["corrected_class"]), "area": q["area"].to_numpy(np.int64),
            "kept (run)": np.where(kept, "yes", "no"), "curation": curation}, columns=TABLE_COLUMNS)

    def summary(self) -> str:
        """One paragraph about the checkpoint (Markdown)."""
        m, t = self.info, self.run_thresholds
        w = m.dicc_w
        kept = int(self.queries[KEEP_COLUMNS[self.kept_by]].sum())
        return (f"**{m.run or self.run.name}** at iteration **{self.iteration}** ({m.phase or '?'}); "
                f"{m.num_images if m.num_images is not None else len(self.images)} images, {len(self)} queries, "
                f"{kept} kept by the run ({t.describe()}); "
                f"DICC {'on, w = %.3f' % w if m.dicc_enabled and w is not None else 'off'}; "
                f"ground truth {'known' if self.has_gt else 'unknown'}.")


def _rounded(values: pd.Series, digits: int = 3) -> np.ndarray:
    """float32 scores as float64 rounded for display (0.995, not 0.9950000047683716)."""
    return np.round(values.to_numpy(np.float64, na_value=np.nan), digits)


_cache: OrderedDict[tuple[str, int], Checkpoint] = OrderedDict()
_cache_lock = threading.Lock()


def _stamp(run: Path, iteration: int) -> int:
    try:
        return os.stat(records_dir(run, iteration) / MANIFEST_FILE).st_mtime_ns
    except FileNotFoundError:
        return -1


def open_checkpoint(run: str | os.PathLike, iteration: int) -> Checkpoint:
    """The checkpoint's records, from the cache when they have not been rewritten since."""
    run = Path(run).resolve()
    key = (str(run), int(iteration))
    stamp = _stamp(run, iteration)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and hit.stamp == stamp:
            _cache.move_to_end(key)
            return hit
    ckpt = Checkpoint(run, int(iteration), stamp)
    with _cache_lock:
        _cache[key] = ckpt
        _cache.move_to_end(key)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return ckpt


# ---------------------------------------------------------------------- across checkpoints
_SUMMARY_COLUMNS = ["image_id", "query", "pred_class", "area", "height", "width", "keep_ddtf", "keep_coupled",
                    "gt_class", "iou", "error_type", "corrected_class"]
_summaries: dict[tuple[str, int], tuple[int, dict]] = {}


def _one_summary(run: Path, iteration: int) -> dict:
    rec = load_records(run, iteration, columns=_SUMMARY_COLUMNS)
    kept_by = rec.info.thresholds.kept_by
    errors = []
    for which in (None, kept_by):
        errors.append(error_breakdown(rec.queries, kept_by=which).table.assign(subset="kept" if which else "all"))
    dicc = dicc_report(rec.queries, kept_by=kept_by).summary
    dicc["enabled"] = rec.info.dicc_enabled
    return {"errors": pd.concat(errors, ignore_index=True).assign(iteration=iteration),
            "dicc": pd.DataFrame([dicc]).assign(iteration=iteration)}


def run_summaries(run: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """Error breakdowns (subset 'all' and 'kept' by the run's filter) and DICC summaries (with whether DICC
    was on, ``enabled``) per checkpoint."""
    run = Path(run).resolve()
    parts: dict[str, list[pd.DataFrame]] = {"errors": [], "dicc": []}
    for iteration in list_record_iterations(run):
        key, stamp = (str(run), iteration), _stamp(run, iteration)
        cached = _summaries.get(key)
        if cached is None or cached[0] != stamp:
            cached = _summaries[key] = (stamp, _one_summary(run, iteration))
        for name, frame in cached[1].items():
            parts[name].append(frame)
    out = {}
    for name, frames in parts.items():
        out[name] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return out
