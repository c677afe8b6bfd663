"""What every tab of the app shares: the settings, runs and checkpoints, and the listing of a set.

No gradio here: the command line (``app.py``) imports this module, and gradio takes seconds to
import. A callback's result is a ``NamedTuple`` whose fields name the components it updates;
``ordered`` lists those components in field order for the wiring.
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from apps.gradio_app import browse, runs
from apps.gradio_app.browse import Selection
from apps.gradio_app.launch import REPO_ROOT
from pldc_core.method.filters import Thresholds
from pldc_core.records.store import list_record_iterations
from workbench.confusion import BACKGROUND
from workbench.explain import no_ground_truth, nothing_kept, nothing_passes

ANY = "any"
TABLE_ROWS = 200
NO_RECORDS = "choose a run with recorded pseudo-labels"


@dataclass
class AppSettings:
    """Where the workbench reads runs and datasets, and what it opens first."""

    runs_root: Path
    data_root: Path
    configs_dir: Path = REPO_ROOT / "configs"
    initial_run: str | None = None


class Listing(NamedTuple):
    """A set of pseudo-labels: the table of its first rows, a line about it, and the browse state."""

    table: pd.DataFrame
    info: str
    state: dict | None


def ordered(view: type, **components) -> list:
    """The components of ``view``'s fields, in field order (each callback output named once)."""
    missing = set(view._fields) ^ set(components)
    if missing:
        raise TypeError(f"{view.__name__}: components do not match the fields: {sorted(missing)}")
    return [components[name] for name in view._fields]


def shown_path(path: Path | str) -> str:
    """A path as the app shows it: relative to the working folder when it lies inside it."""
    path = Path(path)
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def message(text: str, error: bool = False) -> str:
    """Markdown for a message line; errors in the error style."""
    return f"<span class='pldc-error'>{html.escape(text, quote=False)}</span>" if error else text


def thresholds_of(filter_name, c_t, m_t, s_t) -> Thresholds:
    """The thresholds of the sliders (a filter other than 'coupled' is DDTF)."""
    return Thresholds(filter="coupled" if filter_name == "coupled" else "ddtf", c_t=float(c_t), m_t=float(m_t),
                      s_t=float(s_t))


def choice(value):
    """A dropdown's value, None for 'any' or nothing."""
    return None if value in (None, "", ANY) else value


def int_choice(value):
    """``choice`` as an int."""
    value = choice(value)
    return None if value is None else int(value)


def parse_click(payload) -> dict | None:
    """The plotly click that ``demo.PAGE_JS`` wrote into a hidden textbox, or None."""
    if not payload:
        return None
    try:
        data = json.loads(payload)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    custom = data.get("customdata")
    if isinstance(custom, dict):  # a typed array serialised as {"0": .., "1": ..}
        data["customdata"] = [custom[k] for k in sorted(custom, key=int)]
    return data


class AppContext:
    """One runs folder and one data folder, and the checkpoints read from them (cached in ``browse``)."""

    def __init__(self, settings: AppSettings):
        self.settings = settings
        self.runs_root = settings.runs_root.resolve()
        self.data_root = settings.data_root.resolve()

    def run_path(self, name: str) -> Path:
        """The folder of a run named in the UI (it cannot leave the runs folder)."""
        return runs.run_dir(self.runs_root, name)

    def run_names(self) -> list[str]:
        return [r.name for r in runs.list_runs(self.runs_root)]

    def checkpoint(self, run_name, iteration) -> browse.Checkpoint | None:
        """The records of one checkpoint, or None when no run or iteration is chosen."""
        if not run_name or iteration in (None, ""):
            return None
        return browse.open_checkpoint(self.run_path(run_name), int(iteration))

    def checkpoint_choices(self, run_name) -> list[int]:
        """The recorded iterations of a run ([] for none or a name outside the runs folder)."""
        if not run_name:
            return []
        try:
            return list_record_iterations(self.run_path(run_name))
        except runs.PathEscapeError:
            return []

    @staticmethod
    def class_index(ckpt, name) -> int | None:
        """The class index of a class name shown in the UI ('background' included)."""
        if name == "background":
            return BACKGROUND
        try:
            return ckpt.class_names.index(str(name))
        except ValueError:
            return None

    @staticmethod
    def listing(ckpt, sel: Selection, t: Thresholds, sort_by="s", descending=True) -> Listing:
        """The pseudo-labels of ``sel``, sorted: the first ``TABLE_ROWS`` listed, all of them browsable."""
        positions = ckpt.order(ckpt.select(sel, t), sort_by or "s", bool(descending))
        desc = sel.describe(ckpt.class_names)
        if sel.status in ("kept", "filtered"):
            desc += f" ({t.describe()})"
        info = (f"**{len(positions):,}** of {len(ckpt):,} queries: {desc}"
                + (f"; the first {TABLE_ROWS} are listed" if len(positions) > TABLE_ROWS else "")
                + (". Click a row (or a point in the scatter) to open it." if len(positions) else
                   ". " + AppContext.why_none(ckpt, sel, t)))
        keys = ckpt.queries[["image_id", "query"]].to_numpy(np.int64)[positions]
        state = {"run": ckpt.run.name, "iteration": ckpt.iteration, "desc": desc, "keys": keys, "pos": 0}
        return Listing(ckpt.table(positions, TABLE_ROWS), info, state)

    @staticmethod
    def why_none(ckpt, sel: Selection, t: Thresholds) -> str:
        """Why a selection has no row, and what would list some."""
        if sel.status == "run_kept" or sel.kept_by:
            if ckpt.run_kept == 0:
                return nothing_kept(ckpt.run_thresholds, ckpt.iteration, ckpt.best_point(),
                                    fix="show all queries instead")
        if sel.status == "kept" and not ckpt.keep_mask(t).any():
            return nothing_passes(t, ckpt.best_point(t.filter))
        if sel.error_type and not ckpt.has_gt:
            return no_ground_truth("error types")
        return "No query matches all of these filters: set one of them back to 'any' (or 'all queries')."

    @staticmethod
    def empty_listing(info: str = "") -> Listing:
        return Listing(pd.DataFrame(columns=browse.TABLE_COLUMNS), info, None)
