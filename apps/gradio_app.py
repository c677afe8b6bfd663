"""`pldc app`: the Gradio workbench. Layout and callbacks only; every analysis is in ``workbench/``.

Tabs: Train (start, watch, stop, resume runs), Pseudo-labels (c-vs-m scatter with threshold
sliders and live what-if), Instance (one pseudo-label over its image), Confusion, Errors, DICC,
Compare and Curate. The run list and the run/checkpoint choice stay visible in the sidebar.

``Workbench`` holds the callbacks as methods (tests call them directly); ``build_app`` lays out
the components and wires them. Clicks on plotly points reach Python through a small script that
writes the clicked point into a hidden textbox next to the plot (``CLICK_JS``).
"""
from __future__ import annotations

import argparse
import html
import ipaddress
import json
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pldc_core.config import ConfigError, load_config
from pldc_core.records.schema import ERROR_TYPES
from pldc_core.run_dir import CLIP_TABLE_FILE
from pldc_core.records.store import RecordError, list_record_iterations
from workbench import browse, explore_figures as xf, figures, launch, runs
from workbench.browse import Selection, Thresholds
from workbench.confusion import BACKGROUND, confusion_matrix, most_confused
from workbench.curation import CurationError, CurationStore, export_curated_coco
from workbench.dicc_report import clip_precision_recall, dicc_report, read_clip_table
from workbench.error_breakdown import SIZES, error_breakdown
from workbench.instance_view import Layers, class_probabilities, image_picture, instance_picture

ANY = "any"
STATUS_LABELS = {"all": "all queries", "kept": "kept at these thresholds", "filtered": "filtered out at these thresholds",
                 "run_kept": "kept by the run", "unreviewed": "not reviewed", "reviewed": "reviewed",
                 "accepted": "accepted", "rejected": "rejected", "relabelled": "relabelled"}
TABLE_ROWS = 200
TICK_SECONDS = 2.0
LAYER_CHOICES = ["pseudo mask", "GT", "uncertainty"]
CORRECTION_COLUMNS = ["from", "to", "count", "fixed", "broken", "neutral", "unjudged"]
DECISION_COLUMNS = ["image_id", "query", "decision", "new class", "source"]

# gradio is imported on first use: `pldc` imports every command's module to build its parser, and
# gradio takes seconds to import. Event-data annotations (``gr.SelectData``) resolve through this name.
gr = None


def _gradio():
    global gr
    if gr is None:
        import gradio

        gr = gradio
    return gr

CLICK_JS = """
() => {
  const attach = () => {
    document.querySelectorAll('.pldc-clickable [data-testid="plotly"]').forEach((div) => {
      if (div.__pldcClick || typeof div.on !== 'function') return;
      div.__pldcClick = true;
      div.on('plotly_click', (ev) => {
        const p = ev && ev.points && ev.points[0];
        const host = div.closest('.pldc-clickable');
        const box = host && document.querySelector('#' + host.id + '-click textarea');
        if (!p || !box) return;
        const cd = p.customdata ?? null;  // plotly gives numeric arrays as typed arrays
        box.value = JSON.stringify({x: p.x, y: p.y, customdata: ArrayBuffer.isView(cd) ? Array.from(cd) : cd,
                                    name: (p.data && p.data.name) || '', t: Date.now()});
        box.dispatchEvent(new Event('input', {bubbles: true}));
      });
    });
  };
  setInterval(attach, 400);
}
"""

CSS = """
.pldc-message p { margin: 0.2em 0; }
.pldc-error { color: #b00020; }
.pldc-progress { width: 100%; height: 16px; }
#pldc-sidebar-runs { font-size: 12px; }
"""


@dataclass
class AppSettings:
    """Where the workbench reads runs and datasets, and what it opens first."""

    runs_root: Path
    data_root: Path
    configs_dir: Path = launch.REPO_ROOT / "configs"
    initial_run: str | None = None


def _message(text: str, error: bool = False) -> str:
    return f"<span class='pldc-error'>{html.escape(text, quote=False)}</span>" if error else text


def _thresholds(filter_name, c_t, m_t, s_t) -> Thresholds:
    return Thresholds(filter="coupled" if filter_name == "coupled" else "ddtf", c_t=float(c_t), m_t=float(m_t),
                      s_t=float(s_t))


def _choice(value):
    return None if value in (None, "", ANY) else value


def _int_choice(value):
    value = _choice(value)
    return None if value is None else int(value)


class Workbench:
    """The callbacks of the app, on one runs folder and one data folder."""

    def __init__(self, settings: AppSettings):
        _gradio()
        self.settings = settings
        self.runs_root = settings.runs_root.resolve()
        self.data_root = settings.data_root.resolve()

    # ------------------------------------------------------------------ runs and checkpoints
    def run_path(self, name: str) -> Path:
        """The folder of a run named in the UI (it cannot leave the runs folder)."""
        return runs.run_dir(self.runs_root, name)

    def run_names(self) -> list[str]:
        return [r.name for r in runs.list_runs(self.runs_root)]

    def checkpoint(self, run_name, iteration) -> browse.Checkpoint | None:
        if not run_name or iteration in (None, ""):
            return None
        return browse.open_checkpoint(self.run_path(run_name), int(iteration))

    def checkpoint_choices(self, run_name) -> list[int]:
        if not run_name:
            return []
        try:
            return list_record_iterations(self.run_path(run_name))
        except runs.PathEscapeError:
            return []

    def initial(self):
        """On page load: the run list, the run to show (``--run``, else the latest with records) and its checkpoints."""
        infos = runs.list_runs(self.runs_root)
        names = [r.name for r in infos]
        chosen = self.settings.initial_run if self.settings.initial_run in names else None
        if chosen is None:
            chosen = next((r.name for r in infos if r.records), names[0] if names else None)
        return runs.runs_table(infos), gr.Dropdown(choices=names, value=chosen)

    def select_run(self, run_name):
        """A run was chosen: its checkpoints (the latest selected), the sliders at its thresholds, its live view."""
        iterations = self.checkpoint_choices(run_name)
        latest = iterations[-1] if iterations else None
        t = Thresholds()
        if latest is not None:
            t = self.checkpoint(run_name, latest).run_thresholds
        elif run_name:
            try:
                p = load_config(self.run_path(run_name) / "config.yaml").pldc
                t = Thresholds(p.filter, p.c_t, p.m_t, p.s_t)
            except (ConfigError, runs.PathEscapeError):
                pass
        names = self.run_names()
        return (gr.Dropdown(choices=iterations, value=latest), t.filter, t.c_t, t.m_t, t.s_t,
                gr.Dropdown(choices=names, value=run_name), gr.Dropdown(choices=iterations, value=latest),
                gr.Dropdown(choices=names, value=run_name),
                gr.Dropdown(choices=iterations, value=iterations[-2] if len(iterations) > 1 else latest))

    def pick_run_row(self, table: pd.DataFrame, evt: gr.SelectData):
        """A click in the run list selects that run."""
        name = evt.row_value[0] if evt is not None and evt.row_value else None
        return gr.Dropdown(choices=self.run_names(), value=name) if name else gr.skip()

    def checkpoint_summary(self, run_name, iteration) -> str:
        try:
            ckpt = self.checkpoint(run_name, iteration)
        except (RecordError, OSError) as exc:  # unreadable records: say so instead of failing the page
            return _message(f"cannot read the records: {exc}", error=True)
        if ckpt is None:
            return "No pseudo-label records for this run yet (they are written at each checkpoint)."
        return ckpt.summary()

    # ------------------------------------------------------------------ pseudo-labels tab
    def _selection(self, cls, err, status) -> Selection:
        return Selection(pred_class=_int_choice(cls), error_type=_choice(err), status=status or "all")

    def pseudo_labels(self, run_name, iteration, filter_name, c_t, m_t, s_t, color_by, cls, err, status, sort_by,
                      descending):
        """Scatter, what-if, the filtered table and the browse set for one threshold setting (slider moves,
        checkpoint switches and filter changes all come here)."""
        ckpt = self.checkpoint(run_name, iteration)
        if ckpt is None:
            reason = "choose a run with recorded pseudo-labels"
            return (xf.empty("Class quality c vs mask quality m", reason),
                    xf.empty("What-if", reason), pd.DataFrame(columns=browse.TABLE_COLUMNS), reason, None)
        t = _thresholds(filter_name, c_t, m_t, s_t)
        point = ckpt.metrics_at(t)
        run_t = ckpt.run_thresholds
        run_point = ckpt.metrics_at(Thresholds(t.filter, run_t.c_t, run_t.m_t, run_t.s_t))
        scatter = xf.threshold_scatter(ckpt.queries, t, int(point["kept"]), ckpt.class_names,
                                       color_by="error" if color_by == "error type" else "iou")
        what_if = xf.what_if_figure(ckpt.curves_at(t), point, run_point)
        table, info, state = self._browse(ckpt, self._selection(cls, err, status), t, sort_by, descending)
        return scatter, what_if, table, info, state

    def _browse(self, ckpt, sel: Selection, t: Thresholds, sort_by="s", descending=True):
        positions = ckpt.order(ckpt.select(sel, t), sort_by or "s", bool(descending))
        desc = sel.describe(ckpt.class_names)
        if sel.status in ("kept", "filtered"):
            desc += f" ({t.describe()})"
        info = (f"**{len(positions):,}** of {len(ckpt):,} queries: {desc}"
                + (f"; the first {TABLE_ROWS} are listed" if len(positions) > TABLE_ROWS else "")
                + ". Click a row (or a point in the scatter) to open it.")
        keys = ckpt.queries[["image_id", "query"]].to_numpy(np.int64)[positions]
        state = {"run": ckpt.run.name, "iteration": ckpt.iteration, "desc": desc, "keys": keys, "pos": 0}
        return ckpt.table(positions, TABLE_ROWS), info, state

    def browse_only(self, run_name, iteration, filter_name, c_t, m_t, s_t, cls, err, status, sort_by, descending):
        """The table and browse set alone (filters and sorting changed, thresholds did not)."""
        ckpt = self.checkpoint(run_name, iteration)
        if ckpt is None:
            return pd.DataFrame(columns=browse.TABLE_COLUMNS), "", None
        return self._browse(ckpt, self._selection(cls, err, status), _thresholds(filter_name, c_t, m_t, s_t),
                            sort_by, descending)

    def run_thresholds(self, run_name, iteration):
        ckpt = self.checkpoint(run_name, iteration)
        t = ckpt.run_thresholds if ckpt is not None else Thresholds()
        return t.filter, t.c_t, t.m_t, t.s_t

    # ------------------------------------------------------------------ instance view
    def open_from_table(self, state, layers, evt: gr.SelectData):
        """A row of a listing was clicked: open it, browsing the listing's set."""
        if not state or evt is None or not evt.row_value:
            return self._instance_outputs(state, layers, switch=False)
        image_id, query = int(evt.row_value[0]), int(evt.row_value[1])
        return self.open_key(state, image_id, query, layers)

    def open_key(self, state, image_id: int, query: int, layers):
        state = dict(state or {})
        keys = state.get("keys")
        hit = np.flatnonzero((keys[:, 0] == image_id) & (keys[:, 1] == query)) if keys is not None and len(keys) else []
        if len(hit):
            state["pos"] = int(hit[0])
        else:
            state.update(keys=np.array([[image_id, query]], dtype=np.int64), pos=0, desc="the clicked point")
        return self._instance_outputs(state, layers)

    def open_from_scatter(self, payload, run_name, iteration, state, layers):
        """A point of the c-vs-m scatter was clicked (``customdata = [image_id, query]``)."""
        click = _click(payload)
        if not click or not click.get("customdata"):
            return self._instance_outputs(state, layers, switch=False)
        image_id, query = (int(v) for v in click["customdata"][:2])
        if not state or state.get("run") != run_name or state.get("iteration") != int(iteration):
            state = {"run": run_name, "iteration": int(iteration), "keys": np.zeros((0, 2), np.int64), "pos": 0}
        return self.open_key(state, image_id, query, layers)

    def step(self, state, delta: int, layers):
        """Previous / next instance of the browse set."""
        if not state or state.get("keys") is None or not len(state["keys"]):
            return self._instance_outputs(state, layers, switch=False)
        state = dict(state)
        state["pos"] = int(state.get("pos", 0) + delta) % len(state["keys"])
        return self._instance_outputs(state, layers, switch=False)

    def redraw(self, state, layers):
        return self._instance_outputs(state, layers, switch=False)

    def _instance_outputs(self, state, layers, switch: bool = True):
        """Tab switch, picture, facts, class figure, position line, relabel default, state."""
        tab = gr.Tabs(selected="instance") if switch else gr.skip()
        if not state or state.get("keys") is None or not len(state["keys"]):
            return (tab, None, "Open an instance: click a row of a listing or a point of the scatter.",
                    xf.empty("Classes", "no instance open", 260), "", gr.skip(), state)
        ckpt = self.checkpoint(state["run"], state["iteration"])
        image_id, query = (int(v) for v in state["keys"][state["pos"]])
        layers = set(layers or [])
        pic = instance_picture(ckpt.path, ckpt.manifest, ckpt.images, ckpt.gt, image_id, query,
                               Layers(pseudo="pseudo mask" in layers, gt="GT" in layers,
                                      uncertainty="uncertainty" in layers), ckpt.class_names)
        row = pic.row
        probs = class_probabilities(row, ckpt.num_classes)
        w = row["dicc_w"]
        corrected = int(row["corrected_class"])
        title = f"teacher: {ckpt.class_name(row['pred_class'])}"
        if corrected >= 0:
            title += f" → DICC: {ckpt.class_name(corrected)} (w = {w:.3f})"
        fig = xf.class_probability_figure(probs, ckpt.class_names, title)
        decision, final = ckpt.curation()
        position = ckpt.positions([(image_id, query)])[0]
        current = decision[position] if position >= 0 else None
        facts = self._facts(ckpt, row, current, final[position] if position >= 0 else None)
        if pic.warnings:
            facts += "\n\n" + _message("; ".join(pic.warnings), error=True)
        where = (f"**{state['pos'] + 1} of {len(state['keys'])}** in: {state.get('desc', '')} "
                 f"(run {state['run']}, iteration {state['iteration']})")
        shown_class = int(final[position]) if position >= 0 and current == "relabel" else int(row["pred_class"])
        classes = gr.Dropdown(choices=[(n, i) for i, n in enumerate(ckpt.class_names)], value=shown_class)
        return tab, pic.picture, facts, fig, where, classes, state

    def _facts(self, ckpt, row, decision, final) -> str:
        iou = row["iou"]
        lines = [f"**image {int(row['image_id'])}, query {int(row['query'])}**",
                 f"- class quality **c = {row['c']:.3f}**, mask quality **m = {row['m']:.3f}**, "
                 f"score **s = c·m = {row['s']:.3f}**",
                 f"- IoU with its best GT: **{'unknown' if pd.isna(iou) else f'{iou:.3f}'}**; error type: "
                 f"**{row['error_type'] if isinstance(row['error_type'], str) else 'unknown'}**"
                 + (f" (GT class {ckpt.class_name(row['gt_class'])})" if int(row["gt_class"]) >= 0 else ""),
                 f"- kept by the run: DDTF **{'yes' if row['keep_ddtf'] else 'no'}**, coupled "
                 f"**{'yes' if row['keep_coupled'] else 'no'}** (the run trains with "
                 f"{'DDTF' if ckpt.kept_by == 'ddtf' else 'the coupled filter'}: {ckpt.run_thresholds.describe()})",
                 f"- mask area {int(row['area'])} px"]
        if int(row["corrected_class"]) >= 0:
            lines.append(f"- DICC: {ckpt.class_name(row['pred_class'])} → **{ckpt.class_name(row['corrected_class'])}** "
                         f"with w = {row['dicc_w']:.3f} (bars: the fused probabilities from the recorded top-5 lists)")
        else:
            lines.append("- DICC did not run on this query")
        if decision is None or pd.isna(decision):
            lines.append("- curation: not reviewed")
        else:
            lines.append(f"- curation: **{decision}**" + (f" as {ckpt.class_name(final)}" if decision == "relabel" else ""))
        return "\n".join(lines)

    def curate_current(self, state, action: str, new_class, layers):
        """Accept / reject / relabel / clear the open instance (saved at once)."""
        if not state or state.get("keys") is None or not len(state["keys"]):
            return (_message("open an instance first", error=True),) + self._instance_outputs(state, layers, False)
        key = tuple(int(v) for v in state["keys"][state["pos"]])
        try:
            CurationStore(self.run_path(state["run"])).record(
                state["iteration"], [key], action, new_class=None if new_class is None else int(new_class),
                source="gradio")
        except CurationError as exc:
            return (_message(str(exc), error=True),) + self._instance_outputs(state, layers, False)
        ckpt = self.checkpoint(state["run"], state["iteration"])
        what = {"accept": "accepted", "reject": "rejected", "clear": "cleared",
                "relabel": f"relabelled as {ckpt.class_name(new_class) if new_class is not None else '?'}"}[action]
        out = self._instance_outputs(state, layers, False)
        return (f"image {key[0]} query {key[1]}: {what} (saved)",) + out[:-1] + (gr.skip(),)

    # ------------------------------------------------------------------ confusion tab
    def confusion(self, run_name, iteration, normalized, after_dicc, subset):
        ckpt = self.checkpoint(run_name, iteration)
        title = "Confusion: pseudo-label class vs GT class"
        if ckpt is None:
            return xf.empty(title, "choose a run with recorded pseudo-labels"), pd.DataFrame(), ""
        kept_by = ckpt.kept_by if subset == "kept by the run" else None
        use_dicc = after_dicc == "after DICC"
        if use_dicc and not ckpt.dicc_ran:
            note = "DICC did not run at this checkpoint: the matrix is the teacher's classes."
        else:
            note = ""
        conf = confusion_matrix(ckpt.queries, ckpt.gt, ckpt.num_classes, use_dicc=use_dicc, kept_by=kept_by)
        fig = figures.confusion_heatmap(conf, ckpt.class_names, normalized=normalized == "row share")
        fig.update_layout(clickmode="event")
        pairs = most_confused(conf, top=12, include_background=True)
        table = pd.DataFrame({"pseudo-label class": [ckpt.class_name(k) for k in pairs["pred_class"]],
                              "GT class": [ckpt.class_name(k) for k in pairs["gt_class"]],
                              "count": pairs["count"].to_numpy(), "share of row": pairs["share"].round(3).to_numpy()})
        note = (note + " Click a cell (or a pair) to list its pseudo-labels.").strip()
        return fig, table, note

    def _class_index(self, ckpt, name) -> int | None:
        if name == "background":
            return BACKGROUND
        try:
            return ckpt.class_names.index(str(name))
        except ValueError:
            return None

    def confusion_cell(self, run_name, iteration, pred_name, gt_name, after_dicc, subset):
        """The pseudo-labels of one confusion cell (pseudo-label class ``pred_name``, GT class ``gt_name``)."""
        ckpt = self.checkpoint(run_name, iteration)
        if ckpt is None:
            return pd.DataFrame(columns=browse.TABLE_COLUMNS), "", None
        pred, gt = self._class_index(ckpt, pred_name), self._class_index(ckpt, gt_name)
        if pred is None or gt is None:
            return pd.DataFrame(columns=browse.TABLE_COLUMNS), _message(f"unknown class in {pred_name} / {gt_name}", True), None
        if pred == BACKGROUND:
            missed = ckpt.gt[ckpt.gt["gt_class"] == gt] if gt != BACKGROUND else ckpt.gt.iloc[:0]
            return (pd.DataFrame(columns=browse.TABLE_COLUMNS),
                    f"Row 'background': ground-truth {gt_name} instances that no pseudo-label covers "
                    f"(IoU > 0.5); there is no pseudo-label to open. GT instances of class {gt_name}: {len(missed)}.",
                    None)
        sel = Selection(pred_class=pred, gt_class=gt, use_dicc=after_dicc == "after DICC", known_gt=True,
                        kept_by=ckpt.kept_by if subset == "kept by the run" else None)
        return self._browse(ckpt, sel, ckpt.run_thresholds)

    def confusion_click(self, payload, run_name, iteration, after_dicc, subset):
        click = _click(payload)
        if not click:
            return gr.skip(), gr.skip(), gr.skip()
        return self.confusion_cell(run_name, iteration, click.get("y"), click.get("x"), after_dicc, subset)

    def confusion_pair(self, run_name, iteration, after_dicc, subset, evt: gr.SelectData):
        if evt is None or not evt.row_value:
            return gr.skip(), gr.skip(), gr.skip()
        return self.confusion_cell(run_name, iteration, evt.row_value[0], evt.row_value[1], after_dicc, subset)

    # ------------------------------------------------------------------ errors tab
    def errors(self, run_name, iteration, subset):
        ckpt = self.checkpoint(run_name, iteration)
        if ckpt is None:
            reason = "choose a run with recorded pseudo-labels"
            return xf.empty("Error types", reason), xf.empty("Error types", reason), pd.DataFrame()
        key = "kept" if subset == "kept by the run" else "all"
        summaries = browse.run_summaries(ckpt.run)
        trend = xf.error_trend_figure(summaries["errors"], key, current=ckpt.iteration)
        current = error_breakdown(ckpt.queries, kept_by=ckpt.kept_by if key == "kept" else None)
        counts = xf.error_counts_figure(current.table, f"Iteration {ckpt.iteration} by object size (click a bar)")
        table = current.table.pivot(index="size", columns="error_type", values="count").reindex(
            index=["all", *SIZES], columns=list(ERROR_TYPES)).reset_index()
        return trend, counts, table

    def errors_click(self, payload, run_name, iteration, subset):
        click = _click(payload)
        ckpt = self.checkpoint(run_name, iteration)
        if not click or ckpt is None or not click.get("customdata"):
            return gr.skip(), gr.skip(), gr.skip()
        size, etype = click["customdata"][:2]
        sel = Selection(error_type=etype, size=size, kept_by=ckpt.kept_by if subset == "kept by the run" else None)
        return self._browse(ckpt, sel, ckpt.run_thresholds)

    # ------------------------------------------------------------------ DICC tab
    def dicc(self, run_name, iteration):
        ckpt = self.checkpoint(run_name, iteration)
        if ckpt is None:
            reason = "choose a run with recorded pseudo-labels"
            return reason, xf.empty("DICC", reason), xf.empty("DICC", reason), pd.DataFrame(), xf.empty("CLIP", reason)
        clip = self._clip_on_gt_figure(ckpt)
        report = dicc_report(ckpt.queries, kept_by=ckpt.kept_by)
        s = report.summary
        trend = xf.dicc_trend_figure(browse.run_summaries(ckpt.run)["dicc"])
        if not report.ran:
            return ("DICC did not run at this checkpoint (DICC off in the config, or still in burn-in).",
                    xf.empty("DICC changes per teacher class", "DICC did not run"), trend,
                    pd.DataFrame(columns=CORRECTION_COLUMNS), clip)
        acc = (f"class accuracy of the judged pseudo-labels {s['accuracy_before']:.1%} → **{s['accuracy_after']:.1%}**"
               if s["n_judged"] else "no pseudo-label lies on a GT, so none can be judged")
        summary = (f"DICC ran on **{s['n_ran']:,}** pseudo-labels kept by the run and changed **{s['n_changed']:,}**: "
                   f"**{s['fixed']}** fixed, **{s['broken']}** broken, {s['neutral']} wrong before and after, "
                   f"{s['unjudged']} on no GT (net {s['net']:+d}); {acc}. Click a correction to list its pseudo-labels.")
        per_class = figures.dicc_class_bars(report.per_class, ckpt.class_names)
        tr = report.transitions
        table = pd.DataFrame({"from": [ckpt.class_name(k) for k in tr["from_class"]],
                              "to": [ckpt.class_name(k) for k in tr["to_class"]],
                              **{k: tr[k].to_numpy() for k in ("count", "fixed", "broken", "neutral", "unjudged")}})
        return summary, per_class, trend, table, clip

    @staticmethod
    def _clip_on_gt_figure(ckpt):
        """Table II from the run's ``pldc clip-crops`` output, or how to make it."""
        path = ckpt.run / CLIP_TABLE_FILE
        title = "CLIP on ground-truth crops"
        if not path.is_file():
            return xf.empty(title, f"not measured: pldc clip-crops {ckpt.run} --clip-weights FILE")
        try:
            table = read_clip_table(path)
            pr = clip_precision_recall(table, len(ckpt.class_names))
        except (OSError, ValueError, KeyError) as exc:
            return xf.empty(title, f"{path}: {exc}")
        return figures.clip_pr_bars(pr.per_class, ckpt.class_names)

    def dicc_pick(self, run_name, iteration, evt: gr.SelectData):
        ckpt = self.checkpoint(run_name, iteration)
        if ckpt is None or evt is None or not evt.row_value:
            return gr.skip(), gr.skip(), gr.skip()
        src, dst = self._class_index(ckpt, evt.row_value[0]), self._class_index(ckpt, evt.row_value[1])
        return self._browse(ckpt, Selection(dicc_from=src, dicc_to=dst, kept_by=ckpt.kept_by), ckpt.run_thresholds)

    # ------------------------------------------------------------------ compare tab
    def compare(self, run_a, it_a, run_b, it_b, filter_name, c_t, m_t, s_t, image_id):
        """Two checkpoints (of one run or two) on the same thresholds, figures and images."""
        t = _thresholds(filter_name, c_t, m_t, s_t)
        sides = {}
        for label, (run_name, it) in (("A", (run_a, it_a)), ("B", (run_b, it_b))):
            ckpt = self.checkpoint(run_name, it)
            if ckpt is not None:
                sides[f"{label}: {run_name} @ {it}"] = ckpt
        if len(sides) < 2:
            reason = "choose two checkpoints (A and B)"
            empty = xf.empty("Compare", reason)
            return (empty, empty, empty, empty, empty, empty, gr.Dropdown(choices=[], value=None), None, None, reason)
        labels = list(sides)
        points = {k: c.metrics_at(t) for k, c in sides.items()}
        metrics_fig = xf.compare_metrics_figure(points)
        scatters = [xf.threshold_scatter(c.queries, t, int(points[k]["kept"]), c.class_names).update_layout(
            title=f"{k}: {int(points[k]['kept']):,} kept", height=440) for k, c in sides.items()]
        errors_fig = xf.compare_errors_figure({k: error_breakdown(c.queries[c.keep_mask(t)]).table
                                               for k, c in sides.items()})
        confusions = []
        for k, c in sides.items():
            fig = figures.confusion_heatmap(confusion_matrix(c.queries[c.keep_mask(t)], c.gt, c.num_classes),
                                            c.class_names)
            confusions.append(fig.update_layout(title=f"{k}: confusion of the kept pseudo-labels", height=460))
        a, b = sides[labels[0]], sides[labels[1]]
        common = sorted(set(a.images["image_id"].tolist()) & set(b.images["image_id"].tolist()))
        if image_id is None or int(image_id) not in common:
            image_id = common[0] if common else None
        pictures = [None, None]
        note = f"Kept pseudo-labels ({t.describe()}) of the same image; white: ground truth."
        if image_id is not None:
            for i, c in enumerate((a, b)):
                keep = dict(zip(c.queries["query"][c.queries["image_id"] == image_id].astype(int),
                                c.keep_mask(t)[(c.queries["image_id"] == image_id).to_numpy()]))
                pictures[i], n = image_picture(c.path, c.manifest, c.images, c.gt, int(image_id), keep, c.class_names)
                note += f" {labels[i]}: {n} kept."
        else:
            note = "the two checkpoints recorded no image in common"
        return (metrics_fig, scatters[0], scatters[1], errors_fig, confusions[0], confusions[1],
                gr.Dropdown(choices=common, value=image_id), pictures[0], pictures[1], note)

    def open_decision(self, run_name, iteration, layers, evt: gr.SelectData):
        """A row of the decisions table was clicked: open that pseudo-label alone."""
        if evt is None or not evt.row_value or iteration in (None, ""):
            return self._instance_outputs(None, layers, switch=False)
        state = {"run": run_name, "iteration": int(iteration), "keys": np.zeros((0, 2), np.int64), "pos": 0}
        return self.open_key(state, int(evt.row_value[0]), int(evt.row_value[1]), layers)

    def compare_run_changed(self, run_name):
        iterations = self.checkpoint_choices(run_name)
        return gr.Dropdown(choices=iterations, value=iterations[-1] if iterations else None)

    # ------------------------------------------------------------------ curate tab
    def curate_view(self, run_name, iteration, state):
        ckpt = self.checkpoint(run_name, iteration)
        if ckpt is None:
            return xf.empty("Curation", "choose a run with recorded pseudo-labels"), "", pd.DataFrame(), ""
        counts = ckpt.curation_counts()
        totals = counts.groupby("action")["count"].sum().to_dict() if not counts.empty else {}
        edits = CurationStore(ckpt.run).edits(ckpt.iteration)
        table = pd.DataFrame({"image_id": edits["image_id"].to_numpy(), "query": edits["query"].to_numpy(),
                              "decision": edits["action"].to_numpy(),
                              "new class": [ckpt.class_name(k) if pd.notna(k) else "" for k in edits["new_class"]],
                              "source": edits["source"].to_numpy()}, columns=DECISION_COLUMNS).iloc[::-1]
        summary = (f"Iteration {ckpt.iteration}: **{totals.get('accept', 0)}** accepted, "
                   f"**{totals.get('relabel', 0)}** relabelled, **{totals.get('reject', 0)}** rejected "
                   f"(saved in `{CurationStore(ckpt.run).path.relative_to(self.runs_root)}` as they are made).")
        return xf.curation_figure(counts, ckpt.class_names), summary, table, self._set_line(state)

    def _set_line(self, state) -> str:
        if not state or state.get("keys") is None:
            return "No set chosen yet: filter the Pseudo-labels table, or click a confusion cell, an error bar or a DICC correction."
        return (f"Current set: **{len(state['keys']):,}** pseudo-labels: {state.get('desc', '')} "
                f"(run {state['run']}, iteration {state['iteration']})")

    def curate_set(self, state, action: str, new_class, run_name, iteration):
        """Apply one decision to every pseudo-label of the current set."""
        if not state or state.get("keys") is None or not len(state["keys"]):
            return _message("the current set is empty", error=True)
        if action == "relabel" and new_class is None:
            return _message("choose the class to relabel to", error=True)
        n = CurationStore(self.run_path(state["run"])).record(
            state["iteration"], [tuple(k) for k in state["keys"].tolist()], action,
            new_class=None if new_class is None else int(new_class), source="gradio")
        return f"{action}: {n} pseudo-labels of the set ({state.get('desc', '')}) — saved"

    def export(self, run_name, iteration, file_name, include_kept):
        """Write the curated COCO JSON inside the run folder; returns a message and the file."""
        ckpt = self.checkpoint(run_name, iteration)
        if ckpt is None:
            return _message("choose a run and checkpoint first", error=True), None
        name = (file_name or "").strip() or f"curated_iter_{ckpt.iteration:07d}.json"
        try:
            out = runs.inside(ckpt.run / "curation", name)
        except runs.PathEscapeError as exc:
            return _message(f"not exported: {exc}", error=True), None
        if out.suffix != ".json":
            return _message("not exported: the file name must end in .json", error=True), None
        try:
            counts = export_curated_coco(ckpt.run, ckpt.iteration, out, include_kept=bool(include_kept))
        except (CurationError, OSError) as exc:
            return _message(f"not exported: {exc}", error=True), None
        rel = out.relative_to(self.runs_root)
        message = (f"Wrote **{counts['annotations']}** annotations on {counts['images']} images to `{rel}` "
                   f"({counts['accepted']} accepted, {counts['relabelled']} relabelled"
                   + (", plus the unreviewed pseudo-labels DDTF kept" if include_kept else "")
                   + "). Train a new run with them as extra labeled data:\n\n"
                   f"```\npldc train --config {ckpt.run / 'config.yaml'} --name {ckpt.run.name}-curated "
                   f"data.extra_labeled_json={out}\n```")
        return message, str(out)

    # ------------------------------------------------------------------ train tab
    def config_choices(self) -> list[tuple[str, str]]:
        return [(p.name, str(p)) for p in launch.list_configs(self.settings.configs_dir)]

    def dataset_choices(self) -> list[str]:
        from pldc_core.data.coco import DatasetError
        from pldc_core.data.registry import list_datasets

        try:
            return list_datasets(self.data_root)
        except DatasetError:
            return ["synthetic"]

    def config_form(self, config_file):
        """The form's values from a config file (or the message why it cannot be read)."""
        try:
            cfg = load_config(config_file)
        except ConfigError as exc:
            return (_message(str(exc), error=True),) + (gr.skip(),) * 14
        s = launch.TrainSettings.from_config(cfg)
        return ("", s.dataset, s.percent, s.split_seed, s.filter, s.c_t, s.m_t, s.s_t, s.dicc, s.clip_weights or "",
                s.pmua, s.unsup_weight, s.ema_alpha, s.max_iters, s.burn_in_iters)

    def split_info(self, dataset) -> str:
        from pldc_core.data.coco import DatasetError
        from pldc_core.data.splits import read_splits

        path = self.data_root / "splits" / f"{dataset}.json"
        try:
            splits = read_splits(path)["splits"]
        except DatasetError:
            return f"No split file for '{dataset}' at `{path}` (make one with `pldc data split`)."
        parts = [f"{p}% (seeds {', '.join(sorted(seeds, key=int))})" for p, seeds in
                 sorted(splits.items(), key=lambda kv: float(kv[0]))]
        return "Splits available: " + "; ".join(parts)

    def start(self, config_file, name, dataset, percent, seed, filter_name, c_t, m_t, s_t, dicc, clip_weights, pmua,
              unsup_weight, ema_alpha, max_iters, burn_in):
        """Check the form and start the run; returns the message, the run list and the run choice."""
        def number(v, cast):
            return None if v is None or v == "" else cast(v)

        settings = launch.TrainSettings(
            dataset=dataset or None, percent=number(percent, float), split_seed=number(seed, int),
            filter=filter_name or None, c_t=number(c_t, float), m_t=number(m_t, float), s_t=number(s_t, float),
            dicc=bool(dicc), clip_weights=(clip_weights or "").strip() or None, pmua=bool(pmua),
            unsup_weight=number(unsup_weight, float), ema_alpha=number(ema_alpha, float),
            max_iters=number(max_iters, int), burn_in_iters=number(burn_in, int))
        if not config_file:
            return _message("Not started: choose a config", error=True), gr.skip(), gr.skip()
        try:
            run = launch.start_run(self.runs_root, name, config_file, settings, self.data_root)
        except (launch.LaunchError, ValueError) as exc:
            return _message(f"Not started: {exc}", error=True), gr.skip(), gr.skip()
        return (f"Started run **{run.name}** (output in `{(run / runs.TRAIN_LOG).relative_to(self.runs_root)}`). "
                "It runs on when the browser is closed.",
                runs.runs_table(runs.list_runs(self.runs_root)), gr.Dropdown(choices=self.run_names(), value=run.name))

    def stop(self, run_name) -> str:
        if not run_name:
            return _message("choose a run", error=True)
        try:
            return launch.stop_run(self.run_path(run_name))
        except (launch.LaunchError, runs.PathEscapeError) as exc:
            return _message(str(exc), error=True)

    def resume(self, run_name) -> str:
        if not run_name:
            return _message("choose a run", error=True)
        try:
            launch.resume_run(self.run_path(run_name))
        except (launch.LaunchError, runs.PathEscapeError) as exc:
            return _message(str(exc), error=True)
        return f"Resuming run **{run_name}** from its last checkpoint."

    def live(self, run_name):
        """The selected run's progress line, its three live figures and the end of its log."""
        if not run_name:
            empty = xf.empty("Training", "no run selected", 300)
            return "Select a run in the list, or start one.", empty, empty, empty, ""
        run = self.run_path(run_name)
        info = runs.run_info(run)
        metrics, _ = runs.read_log(run, runs.METRICS_FILE)
        evals, _ = runs.read_log(run, runs.EVAL_FILE)
        burn_in = None
        try:
            burn_in = load_config(run / "config.yaml").train.burn_in_iters
        except ConfigError:
            pass
        losses, counts, ap = xf.training_figures(metrics, evals, burn_in)
        log_tail = "\n".join(runs.tail_lines(run / runs.TRAIN_LOG, 12))
        return _progress_html(info), losses, counts, ap, log_tail

    def tick(self, run_name, iteration, stamp):
        """Every few seconds: the run list, the selected run's live view if its files changed, and its
        checkpoint choices if new records appeared (the first one is selected when none was)."""
        launch.reap()
        infos = runs.list_runs(self.runs_root)
        table = runs.runs_table(infos)
        new_stamp = {"table": table.to_json(), "run": run_name, "files": _file_stamp(self.runs_root, run_name)}
        stamp = stamp or {}
        table_out = table if new_stamp["table"] != stamp.get("table") else gr.skip()
        if run_name and (new_stamp["files"] != stamp.get("files") or run_name != stamp.get("run")):
            live = self.live(run_name)
        else:
            live = (gr.skip(),) * 5
        iterations = self.checkpoint_choices(run_name)
        if iterations == stamp.get("iterations"):
            ckpts = gr.skip()
        elif iteration in (None, "") and iterations:
            ckpts = gr.Dropdown(choices=iterations, value=iterations[-1])
        else:
            ckpts = gr.Dropdown(choices=iterations)
        new_stamp["iterations"] = iterations
        return (table_out,) + tuple(live) + (ckpts, new_stamp)


def _file_stamp(runs_root: Path, run_name) -> list:
    if not run_name:
        return []
    try:
        run = runs.run_dir(runs_root, run_name)
    except runs.PathEscapeError:
        return []
    out = []
    for name in (runs.STATUS_FILE, runs.METRICS_FILE, runs.EVAL_FILE, runs.LAUNCH_FILE, runs.TRAIN_LOG):
        try:
            st = (run / name).stat()
            out.append([name, st.st_size, st.st_mtime_ns])
        except FileNotFoundError:
            out.append([name, None, None])
    return out


def _progress_html(info: runs.RunInfo) -> str:
    fraction = info.fraction or 0.0
    parts = [f"<b>{html.escape(info.name)}</b>: <b>{info.state}</b>"]
    if info.max_iters:
        parts.append(f"iteration {info.iteration:,} / {info.max_iters:,} ({fraction:.0%})")
    if info.phase:
        parts.append(f"phase {html.escape(str(info.phase))}")
    if info.eta_s is not None:
        parts.append(f"ETA {runs.format_duration(info.eta_s)}")
    if info.best_ap is not None:
        parts.append(f"best mask AP {info.best_ap:.2f} (iteration {info.best_iter})")
    text = " · ".join(parts)
    bar = f"<progress class='pldc-progress' value='{fraction:.4f}' max='1'></progress>" if info.max_iters else ""
    error = f"<pre class='pldc-error'>{html.escape(info.error)}</pre>" if info.error and info.state in (
        "failed", "died") else ""
    return f"<div id='pldc-progress-line'>{text}</div>{bar}{error}"


def _click(payload) -> dict | None:
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


# ---------------------------------------------------------------------- layout
def build_app(settings: AppSettings):
    """The Gradio Blocks of the workbench (not launched)."""
    wb = Workbench(settings)
    LISTING = pd.DataFrame(columns=browse.TABLE_COLUMNS)
    initial_tab = "pl" if settings.initial_run else "train"
    configs = wb.config_choices()
    default_config = next((v for k, v in configs if k == "cpu-quick.yaml"), configs[0][1] if configs else None)

    with gr.Blocks(title="PL-DC Workbench", fill_width=True) as demo:
        browse_state = gr.State(None)
        tick_state = gr.State(None)
        current_tab = gr.State(initial_tab)

        with gr.Sidebar(open=True, width=360):
            gr.Markdown("### PL-DC Workbench")
            run_dd = gr.Dropdown(label="run", choices=[], elem_id="run-dd", interactive=True)
            ckpt_dd = gr.Dropdown(label="checkpoint (iteration)", choices=[], elem_id="ckpt-dd", interactive=True)
            ckpt_md = gr.Markdown(elem_id="ckpt-summary")
            gr.Markdown("**Runs** (click one to open it)")
            runs_df = gr.Dataframe(pd.DataFrame(columns=["run", "state", "progress", "best AP"]), interactive=False,
                                   max_height=360, elem_id="pldc-sidebar-runs", wrap=True,
                                   column_widths=["34%", "24%", "24%", "18%"])
            gr.Markdown(f"<small>runs: `{wb.runs_root}`<br>data: `{wb.data_root}`</small>")

        with gr.Tabs(selected=initial_tab, elem_id="main-tabs") as tabs:
            # ---------------------------------------------------------------- Train
            with gr.Tab("Train", id="train") as tab_train:
                with gr.Row():
                    with gr.Column(scale=1, min_width=420):
                        gr.Markdown("#### New run")
                        with gr.Row():
                            cfg_dd = gr.Dropdown(label="config", choices=configs, value=default_config,
                                                 elem_id="tr-config")
                            name_tb = gr.Textbox(label="run name (a folder in the runs folder)", elem_id="tr-name",
                                                 placeholder="e.g. quick-5pct")
                        with gr.Row():
                            dataset_dd = gr.Dropdown(label="dataset", choices=wb.dataset_choices(), value="synthetic",
                                                     elem_id="tr-dataset", allow_custom_value=True)
                            percent_nb = gr.Number(label="labeled %", value=5, elem_id="tr-percent", min_width=80)
                            seed_nb = gr.Number(label="split seed", value=0, precision=0, elem_id="tr-seed", min_width=80)
                        split_md = gr.Markdown(elem_id="tr-splits")
                        with gr.Row():
                            filter_rd = gr.Radio(["ddtf", "coupled"], value="ddtf", label="filter", elem_id="tr-filter",
                                                 min_width=150)
                            ct_nb = gr.Number(label="c_t", value=0.85, elem_id="tr-ct", min_width=70)
                            mt_nb = gr.Number(label="m_t", value=0.9, elem_id="tr-mt", min_width=70)
                            st_nb = gr.Number(label="s_t (coupled)", value=0.765, elem_id="tr-st", min_width=70)
                        with gr.Row():
                            dicc_cb = gr.Checkbox(label="DICC", value=False, elem_id="tr-dicc", min_width=70)
                            pmua_cb = gr.Checkbox(label="PMUA", value=True, elem_id="tr-pmua", min_width=70)
                            clip_tb = gr.Textbox(label="CLIP weights (a file under the data folder)", elem_id="tr-clip",
                                                 scale=3)
                        with gr.Row():
                            lambda_nb = gr.Number(label="λ (unsup. weight)", value=1.0, elem_id="tr-lambda", min_width=70)
                            ema_nb = gr.Number(label="EMA α", value=0.9996, elem_id="tr-ema", min_width=70)
                            iters_nb = gr.Number(label="iterations", value=1200, precision=0, elem_id="tr-iters",
                                                 min_width=70)
                            burn_nb = gr.Number(label="burn-in iterations", value=600, precision=0, elem_id="tr-burnin",
                                                min_width=70)
                        start_btn = gr.Button("Start run", variant="primary", elem_id="tr-start")
                        start_md = gr.Markdown(elem_id="tr-message", elem_classes=["pldc-message"])
                    with gr.Column(scale=1):
                        progress_html = gr.HTML(elem_id="tr-progress")
                        with gr.Row():
                            stop_btn = gr.Button("Stop (saves a checkpoint)", elem_id="tr-stop")
                            resume_btn = gr.Button("Resume", elem_id="tr-resume")
                        control_md = gr.Markdown(elem_id="tr-control", elem_classes=["pldc-message"])
                        loss_plot = gr.Plot(elem_id="tr-loss", show_label=False)
                        with gr.Row():
                            counts_plot = gr.Plot(elem_id="tr-counts", show_label=False)
                            ap_plot = gr.Plot(elem_id="tr-ap", show_label=False)
                        with gr.Accordion("end of train.log", open=False):
                            log_tb = gr.Textbox(lines=10, max_lines=12, show_label=False, elem_id="tr-log")

            # ---------------------------------------------------------------- Pseudo-labels
            with gr.Tab("Pseudo-labels", id="pl") as tab_pl:
                with gr.Row():
                    pl_filter = gr.Radio(["ddtf", "coupled"], value="ddtf", label="filter", elem_id="pl-filter")
                    pl_ct = gr.Slider(0, 1, value=0.85, step=0.01, label="c_t (class quality)", elem_id="pl-ct")
                    pl_mt = gr.Slider(0, 1, value=0.9, step=0.01, label="m_t (mask quality)", elem_id="pl-mt")
                    pl_st = gr.Slider(0, 1, value=0.765, step=0.01, label="s_t (coupled: c·m)", elem_id="pl-st")
                    with gr.Column(min_width=160):
                        pl_color = gr.Radio(["IoU", "error type"], value="IoU", label="colour points by",
                                            elem_id="pl-color")
                        pl_reset = gr.Button("the run's thresholds", size="sm", elem_id="pl-reset")
                with gr.Row():
                    pl_scatter = gr.Plot(elem_id="pl-scatter", elem_classes=["pldc-clickable"], show_label=False,
                                         scale=5)
                    with gr.Column(scale=6):
                        pl_whatif = gr.Plot(elem_id="pl-whatif", show_label=False)
                        with gr.Row():
                            class_choices = gr.Dropdown(label="class", choices=[ANY], value=ANY, elem_id="pl-class")
                            err_choices = gr.Dropdown(label="error type", choices=[ANY, *ERROR_TYPES], value=ANY,
                                                      elem_id="pl-error")
                            status_dd = gr.Dropdown(label="show", value="all", elem_id="pl-status",
                                                    choices=[(v, k) for k, v in STATUS_LABELS.items()])
                            sort_dd = gr.Dropdown(label="sort by", choices=list(browse.SORTABLE), value="s",
                                                  elem_id="pl-sort")
                            desc_cb = gr.Checkbox(label="descending", value=True, elem_id="pl-desc")
                pl_info = gr.Markdown(elem_id="pl-info")
                pl_table = gr.Dataframe(LISTING, interactive=False, max_height=420, elem_id="pl-table")
                pl_click = gr.Textbox(visible="hidden", elem_id="pl-scatter-click")

            # ---------------------------------------------------------------- Instance
            with gr.Tab("Instance", id="instance") as tab_inst:
                with gr.Row():
                    prev_btn = gr.Button("◀ previous", elem_id="in-prev", size="sm")
                    in_where = gr.Markdown(elem_id="in-where")
                    next_btn = gr.Button("next ▶", elem_id="in-next", size="sm")
                with gr.Row():
                    in_image = gr.Image(label="image", type="numpy", format="png", interactive=False,
                                        elem_id="in-image", scale=3, buttons=["download", "fullscreen"])
                    with gr.Column(scale=2):
                        in_layers = gr.CheckboxGroup(LAYER_CHOICES, value=["pseudo mask", "GT"], label="layers",
                                                     elem_id="in-layers")
                        in_facts = gr.Markdown(elem_id="in-facts")
                        in_classes = gr.Plot(elem_id="in-classes", show_label=False)
                with gr.Row():
                    accept_btn = gr.Button("Accept", variant="primary", elem_id="in-accept")
                    reject_btn = gr.Button("Reject", variant="stop", elem_id="in-reject")
                    relabel_dd = gr.Dropdown(label="relabel as", choices=[], elem_id="in-relabel-class")
                    relabel_btn = gr.Button("Relabel", elem_id="in-relabel")
                    clear_btn = gr.Button("Clear decision", elem_id="in-clear")
                in_msg = gr.Markdown(elem_id="in-message", elem_classes=["pldc-message"])

            # ---------------------------------------------------------------- Confusion
            with gr.Tab("Confusion", id="confusion") as tab_conf:
                with gr.Row():
                    cf_norm = gr.Radio(["row share", "counts"], value="row share", label="values", elem_id="cf-norm")
                    cf_dicc = gr.Radio(["before DICC", "after DICC"], value="before DICC", label="classes",
                                       elem_id="cf-dicc")
                    cf_subset = gr.Radio(["all queries", "kept by the run"], value="kept by the run", label="pseudo-labels",
                                         elem_id="cf-subset")
                with gr.Row():
                    cf_plot = gr.Plot(elem_id="cf-heatmap", elem_classes=["pldc-clickable"], show_label=False, scale=3)
                    with gr.Column(scale=2):
                        gr.Markdown("**Most confused pairs**")
                        cf_pairs = gr.Dataframe(pd.DataFrame(columns=["pseudo-label class", "GT class", "count", "share of row"]),
                                                interactive=False, max_height=420, elem_id="cf-pairs")
                cf_note = gr.Markdown(elem_id="cf-note")
                cf_table = gr.Dataframe(LISTING, interactive=False, max_height=360, elem_id="cf-table")
                cf_click = gr.Textbox(visible="hidden", elem_id="cf-heatmap-click")

            # ---------------------------------------------------------------- Errors
            with gr.Tab("Errors", id="errors") as tab_err:
                er_subset = gr.Radio(["all queries", "kept by the run"], value="kept by the run", label="pseudo-labels",
                                     elem_id="er-subset")
                er_trend = gr.Plot(elem_id="er-trend", show_label=False)
                with gr.Row():
                    er_counts = gr.Plot(elem_id="er-counts", elem_classes=["pldc-clickable"], show_label=False, scale=3)
                    er_tbl = gr.Dataframe(pd.DataFrame(columns=["size", *ERROR_TYPES]), interactive=False, elem_id="er-summary",
                                          scale=2)
                er_note = gr.Markdown(elem_id="er-note")
                er_table = gr.Dataframe(LISTING, interactive=False, max_height=360, elem_id="er-table")
                er_click = gr.Textbox(visible="hidden", elem_id="er-counts-click")

            # ---------------------------------------------------------------- DICC
            with gr.Tab("DICC", id="dicc") as tab_dicc:
                dc_summary = gr.Markdown(elem_id="dc-summary")
                with gr.Row():
                    dc_per_class = gr.Plot(elem_id="dc-per-class", show_label=False)
                    dc_trend = gr.Plot(elem_id="dc-trend", show_label=False)
                gr.Markdown("**Corrections** (teacher class → DICC class)")
                dc_table = gr.Dataframe(pd.DataFrame(columns=CORRECTION_COLUMNS), interactive=False, max_height=300,
                                        elem_id="dc-table")
                dc_note = gr.Markdown(elem_id="dc-note")
                dc_list = gr.Dataframe(LISTING, interactive=False, max_height=300, elem_id="dc-list")
                dc_clip = gr.Plot(elem_id="dc-clip", show_label=False)

            # ---------------------------------------------------------------- Compare
            with gr.Tab("Compare", id="compare") as tab_cmp:
                with gr.Row():
                    cmp_run_a = gr.Dropdown(label="A: run", choices=[], elem_id="cmp-run-a")
                    cmp_it_a = gr.Dropdown(label="A: checkpoint", choices=[], elem_id="cmp-it-a")
                    cmp_run_b = gr.Dropdown(label="B: run", choices=[], elem_id="cmp-run-b")
                    cmp_it_b = gr.Dropdown(label="B: checkpoint", choices=[], elem_id="cmp-it-b")
                gr.Markdown("Both sides use the thresholds of the Pseudo-labels tab.")
                cmp_metrics = gr.Plot(elem_id="cmp-metrics", show_label=False)
                with gr.Row():
                    cmp_image = gr.Dropdown(label="the same image in both", choices=[], elem_id="cmp-image", scale=1)
                    cmp_note = gr.Markdown(elem_id="cmp-note")
                with gr.Row():
                    cmp_pic_a = gr.Image(label="A", type="numpy", format="png", interactive=False, elem_id="cmp-pic-a",
                                         height=360)
                    cmp_pic_b = gr.Image(label="B", type="numpy", format="png", interactive=False, elem_id="cmp-pic-b",
                                         height=360)
                with gr.Row():
                    cmp_scatter_a = gr.Plot(elem_id="cmp-scatter-a", show_label=False)
                    cmp_scatter_b = gr.Plot(elem_id="cmp-scatter-b", show_label=False)
                cmp_errors = gr.Plot(elem_id="cmp-errors", show_label=False)
                with gr.Row():
                    cmp_conf_a = gr.Plot(elem_id="cmp-conf-a", show_label=False)
                    cmp_conf_b = gr.Plot(elem_id="cmp-conf-b", show_label=False)

            # ---------------------------------------------------------------- Curate
            with gr.Tab("Curate", id="curate") as tab_cur:
                with gr.Row():
                    cu_plot = gr.Plot(elem_id="cu-plot", show_label=False, scale=3)
                    with gr.Column(scale=2):
                        cu_summary = gr.Markdown(elem_id="cu-summary")
                        cu_set = gr.Markdown(elem_id="cu-set")
                        with gr.Row():
                            cu_accept = gr.Button("Accept the set", elem_id="cu-accept")
                            cu_reject = gr.Button("Reject the set", elem_id="cu-reject")
                        with gr.Row():
                            cu_class = gr.Dropdown(label="relabel the set as", choices=[], elem_id="cu-class")
                            cu_relabel = gr.Button("Relabel the set", elem_id="cu-relabel")
                            cu_clear = gr.Button("Clear the set's decisions", elem_id="cu-clear")
                        cu_msg = gr.Markdown(elem_id="cu-message", elem_classes=["pldc-message"])
                gr.Markdown("#### Export for training")
                with gr.Row():
                    cu_file = gr.Textbox(label="file name (in RUN/curation/)", placeholder="curated_iter_XXXXXXX.json",
                                         elem_id="cu-file")
                    cu_kept = gr.Checkbox(label="also the unreviewed pseudo-labels DDTF kept", value=False,
                                          elem_id="cu-include-kept")
                    cu_export = gr.Button("Export COCO JSON", variant="primary", elem_id="cu-export")
                cu_export_md = gr.Markdown(elem_id="cu-export-message", elem_classes=["pldc-message"])
                cu_download = gr.File(label="curated JSON", interactive=False, elem_id="cu-download", height=80)
                gr.Markdown("**Decisions** (latest first; click one to open it)")
                cu_table = gr.Dataframe(pd.DataFrame(columns=DECISION_COLUMNS), interactive=False, max_height=360,
                                        elem_id="cu-table")

        timer = gr.Timer(TICK_SECONDS)

        # -------------------------------------------------------------------- wiring
        fast = dict(show_progress="hidden", trigger_mode="always_last")
        th_inputs = [pl_filter, pl_ct, pl_mt, pl_st]
        browse_inputs = [class_choices, err_choices, status_dd, sort_dd, desc_cb]
        pl_inputs = [run_dd, ckpt_dd, *th_inputs, pl_color, *browse_inputs]
        pl_outputs = [pl_scatter, pl_whatif, pl_table, pl_info, browse_state]
        inst_outputs = [tabs, in_image, in_facts, in_classes, in_where, relabel_dd, browse_state]
        live_outputs = [progress_html, loss_plot, counts_plot, ap_plot, log_tb]

        def when_current(tab, fn):
            def wrapped(current, *args):
                if current != tab:
                    n = len(outputs_of[tab])
                    return (gr.skip(),) * n if n > 1 else gr.skip()
                return fn(*args)
            return wrapped

        outputs_of = {
            "pl": pl_outputs,
            "confusion": [cf_plot, cf_pairs, cf_note],
            "errors": [er_trend, er_counts, er_tbl],
            "dicc": [dc_summary, dc_per_class, dc_trend, dc_table, dc_clip],
            "curate": [cu_plot, cu_summary, cu_table, cu_set],
            "compare": [cmp_metrics, cmp_scatter_a, cmp_scatter_b, cmp_errors, cmp_conf_a, cmp_conf_b, cmp_image,
                        cmp_pic_a, cmp_pic_b, cmp_note],
        }
        inputs_of = {
            "confusion": [run_dd, ckpt_dd, cf_norm, cf_dicc, cf_subset],
            "errors": [run_dd, ckpt_dd, er_subset],
            "dicc": [run_dd, ckpt_dd],
            "curate": [run_dd, ckpt_dd, browse_state],
            "compare": [cmp_run_a, cmp_it_a, cmp_run_b, cmp_it_b, *th_inputs, cmp_image],
        }
        fns = {"confusion": wb.confusion, "errors": wb.errors, "dicc": wb.dicc, "curate": wb.curate_view,
               "compare": wb.compare}

        def class_dropdowns(run_name, iteration):
            ckpt = wb.checkpoint(run_name, iteration)
            names = ckpt.class_names if ckpt is not None else []
            pairs = [(n, i) for i, n in enumerate(names)]
            return (gr.Dropdown(choices=[(ANY, ANY)] + pairs, value=ANY), gr.Dropdown(choices=pairs),
                    gr.Dropdown(choices=pairs))

        demo.load(wb.initial, None, [runs_df, run_dd])
        run_dd.change(wb.select_run, run_dd, [ckpt_dd, pl_filter, pl_ct, pl_mt, pl_st, cmp_run_a, cmp_it_a, cmp_run_b,
                                              cmp_it_b], show_progress="hidden").then(
            wb.live, run_dd, live_outputs, show_progress="hidden")
        ckpt_dd.change(wb.checkpoint_summary, [run_dd, ckpt_dd], ckpt_md, show_progress="hidden")
        ckpt_dd.change(when_current("pl", wb.pseudo_labels), [current_tab, *pl_inputs], pl_outputs, **fast)
        ckpt_dd.change(class_dropdowns, [run_dd, ckpt_dd], [class_choices, relabel_dd, cu_class], show_progress="hidden")
        ckpt_dd.input(lambda i: gr.Dropdown(value=i), ckpt_dd, cmp_it_a, show_progress="hidden")
        cmp_run_a.input(wb.compare_run_changed, cmp_run_a, cmp_it_a, show_progress="hidden")
        cmp_run_b.input(wb.compare_run_changed, cmp_run_b, cmp_it_b, show_progress="hidden")
        for name in ("confusion", "errors", "dicc", "curate"):
            ckpt_dd.change(when_current(name, fns[name]), [current_tab, *inputs_of[name]], outputs_of[name],
                           show_progress="hidden")
        runs_df.select(wb.pick_run_row, runs_df, run_dd)

        # sliders and filters of the Pseudo-labels tab
        for component in (pl_ct, pl_mt, pl_st):
            component.input(wb.pseudo_labels, pl_inputs, pl_outputs, **fast)
        for component in (pl_filter, pl_color):
            component.input(wb.pseudo_labels, pl_inputs, pl_outputs, **fast)
        pl_reset.click(wb.run_thresholds, [run_dd, ckpt_dd], th_inputs).then(wb.pseudo_labels, pl_inputs, pl_outputs,
                                                                            **fast)
        for component in browse_inputs:
            component.input(wb.browse_only, [run_dd, ckpt_dd, *th_inputs, *browse_inputs], [pl_table, pl_info, browse_state],
                            **fast)
        pl_table.select(wb.open_from_table, [browse_state, in_layers], inst_outputs)
        pl_click.change(wb.open_from_scatter, [pl_click, run_dd, ckpt_dd, browse_state, in_layers], inst_outputs)

        # instance view
        prev_btn.click(lambda s, l: wb.step(s, -1, l), [browse_state, in_layers], inst_outputs)
        next_btn.click(lambda s, l: wb.step(s, 1, l), [browse_state, in_layers], inst_outputs)
        in_layers.input(wb.redraw, [browse_state, in_layers], inst_outputs, **fast)
        for button, action in ((accept_btn, "accept"), (reject_btn, "reject"), (clear_btn, "clear")):
            button.click(lambda s, l, a=action: wb.curate_current(s, a, None, l), [browse_state, in_layers],
                         [in_msg, *inst_outputs])
        relabel_btn.click(lambda s, c, l: wb.curate_current(s, "relabel", c, l), [browse_state, relabel_dd, in_layers],
                          [in_msg, *inst_outputs])

        # confusion / errors / DICC listings
        for component in (cf_norm, cf_dicc, cf_subset):
            component.input(wb.confusion, inputs_of["confusion"], outputs_of["confusion"], **fast)
        cf_click.change(wb.confusion_click, [cf_click, run_dd, ckpt_dd, cf_dicc, cf_subset],
                        [cf_table, cf_note, browse_state])
        cf_pairs.select(wb.confusion_pair, [run_dd, ckpt_dd, cf_dicc, cf_subset], [cf_table, cf_note, browse_state])
        cf_table.select(wb.open_from_table, [browse_state, in_layers], inst_outputs)
        er_subset.input(wb.errors, inputs_of["errors"], outputs_of["errors"], **fast)
        er_click.change(wb.errors_click, [er_click, run_dd, ckpt_dd, er_subset], [er_table, er_note, browse_state])
        er_table.select(wb.open_from_table, [browse_state, in_layers], inst_outputs)
        dc_table.select(wb.dicc_pick, [run_dd, ckpt_dd], [dc_list, dc_note, browse_state])
        dc_list.select(wb.open_from_table, [browse_state, in_layers], inst_outputs)

        # compare
        for component in (cmp_it_a, cmp_it_b, cmp_image):
            component.input(wb.compare, inputs_of["compare"], outputs_of["compare"], **fast)
        cmp_it_a.change(when_current("compare", wb.compare), [current_tab, *inputs_of["compare"]],
                        outputs_of["compare"], show_progress="hidden")
        cmp_it_b.change(when_current("compare", wb.compare), [current_tab, *inputs_of["compare"]],
                        outputs_of["compare"], show_progress="hidden")

        # curate
        for button, action in ((cu_accept, "accept"), (cu_reject, "reject"), (cu_clear, "clear")):
            button.click(lambda s, r, i, a=action: wb.curate_set(s, a, None, r, i), [browse_state, run_dd, ckpt_dd],
                         cu_msg).then(wb.curate_view, inputs_of["curate"], outputs_of["curate"])
        cu_relabel.click(lambda s, c, r, i: wb.curate_set(s, "relabel", c, r, i), [browse_state, cu_class, run_dd, ckpt_dd],
                         cu_msg).then(wb.curate_view, inputs_of["curate"], outputs_of["curate"])
        cu_export.click(wb.export, [run_dd, ckpt_dd, cu_file, cu_kept], [cu_export_md, cu_download])
        cu_table.select(wb.open_decision, [run_dd, ckpt_dd, in_layers], inst_outputs)

        # tabs: remember which is shown; refresh it when shown
        tab_train.select(lambda: "train", None, current_tab)
        tab_pl.select(lambda: "pl", None, current_tab).then(wb.pseudo_labels, pl_inputs, pl_outputs, **fast)
        tab_inst.select(lambda: "instance", None, current_tab)
        for tab, name in ((tab_conf, "confusion"), (tab_err, "errors"), (tab_dicc, "dicc"), (tab_cur, "curate"),
                          (tab_cmp, "compare")):
            tab.select(lambda n=name: n, None, current_tab).then(fns[name], inputs_of[name], outputs_of[name],
                                                                  show_progress="hidden")

        # train
        cfg_dd.change(wb.config_form, cfg_dd, [start_md, dataset_dd, percent_nb, seed_nb, filter_rd, ct_nb, mt_nb, st_nb,
                                               dicc_cb, clip_tb, pmua_cb, lambda_nb, ema_nb, iters_nb, burn_nb])
        demo.load(wb.config_form, cfg_dd, [start_md, dataset_dd, percent_nb, seed_nb, filter_rd, ct_nb, mt_nb, st_nb,
                                           dicc_cb, clip_tb, pmua_cb, lambda_nb, ema_nb, iters_nb, burn_nb]).then(
            wb.split_info, dataset_dd, split_md)
        dataset_dd.change(wb.split_info, dataset_dd, split_md)
        start_btn.click(wb.start, [cfg_dd, name_tb, dataset_dd, percent_nb, seed_nb, filter_rd, ct_nb, mt_nb, st_nb,
                                   dicc_cb, clip_tb, pmua_cb, lambda_nb, ema_nb, iters_nb, burn_nb],
                        [start_md, runs_df, run_dd])
        stop_btn.click(wb.stop, run_dd, control_md)
        resume_btn.click(wb.resume, run_dd, control_md)
        timer.tick(wb.tick, [run_dd, ckpt_dd, tick_state], [runs_df, *live_outputs, ckpt_dd, tick_state], show_progress="hidden")
    return demo


# ---------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs-dir", default="runs", help="folder of the runs (default: runs)")
    parser.add_argument("--data-root", default="data", help="folder of the datasets (default: data)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    parser.add_argument("--auth", metavar="USER:PASSWORD",
                        help="require this login; needed (and only allowed) when --host is not a loopback address")
    parser.add_argument("--run", metavar="NAME", help="open this run (a folder in --runs-dir)")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
        except (socket.gaierror, ValueError):
            return False


def check_args(args: argparse.Namespace) -> tuple[AppSettings, tuple[str, str] | None]:
    """The settings and the login from the command line; ValueError with a clear message if inconsistent."""
    auth = None
    if args.auth is not None:
        user, sep, password = args.auth.partition(":")
        if not sep or not user or not password:
            raise ValueError("--auth must be USER:PASSWORD, both non-empty")
        auth = (user, password)
    loopback = is_loopback(args.host)
    if not loopback and auth is None:
        raise ValueError(f"--host {args.host} makes the workbench reachable from other machines: "
                         "give --auth USER:PASSWORD")
    if loopback and auth is not None:
        raise ValueError(f"--auth is only for a workbench reachable from other machines; --host {args.host} is "
                         "this machine only (drop --auth, or bind another address)")
    runs_root, data_root = Path(args.runs_dir).resolve(), Path(args.data_root).resolve()
    if args.run is not None:
        try:
            path = runs.run_dir(runs_root, args.run)
        except runs.PathEscapeError as exc:
            raise ValueError(f"--run: {exc}") from None
        if not path.is_dir():
            raise ValueError(f"--run: no run '{args.run}' in {runs_root}")
    return AppSettings(runs_root=runs_root, data_root=data_root, initial_run=args.run), auth


def launch_app(settings: AppSettings, host: str = "127.0.0.1", port: int = 7860, auth=None,
               prevent_thread_lock: bool = False):
    """Build and serve the workbench; it serves files from the runs and data folders only."""
    _gradio()
    settings.runs_root.mkdir(parents=True, exist_ok=True)
    demo = build_app(settings)
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])
    demo.launch(server_name=host, server_port=port, auth=auth, allowed_paths=[str(settings.runs_root),
                                                                             str(settings.data_root)],
                prevent_thread_lock=prevent_thread_lock, share=False, ssr_mode=False, mcp_server=False,
                show_error=True, quiet=True, footer_links=[], theme=theme, css=CSS, js=CLICK_JS)
    return demo


def run(args: argparse.Namespace) -> int:
    try:
        settings, auth = check_args(args)
    except ValueError as exc:
        print(f"pldc app: {exc}", file=sys.stderr)
        return 2
    url = f"http://{args.host}:{args.port}/"
    print(f"PL-DC Workbench on {url} (runs: {settings.runs_root}, data: {settings.data_root}); Ctrl+C stops it")
    try:
        launch_app(settings, args.host, args.port, auth)
    except OSError as exc:
        print(f"pldc app: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0
