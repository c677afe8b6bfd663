"""The sidebar: the run list, the run and checkpoint every tab shows, and the timer that keeps them fresh."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import gradio as gr
import pandas as pd

from apps.gradio_app import launch, runs
from apps.gradio_app.context import ANY, AppContext, message, ordered, shown_path
from apps.gradio_app.tabs.pseudo_labels import ThresholdValues
from apps.gradio_app.tabs.train import LiveView
from pldc_core.config import ConfigError, load_config
from pldc_core.method.filters import Thresholds
from pldc_core.records.store import RecordError
from pldc_core.run_dir import EVAL_FILE, LAUNCH_FILE, METRICS_FILE, STATUS_FILE, TRAIN_LOG, RunDir

TICK_SECONDS = 2.0


class RunChoice(NamedTuple):
    """What choosing a run updates: its checkpoints, the sliders at its thresholds, both Compare sides."""

    checkpoint: object
    filter: str
    c_t: float
    m_t: float
    s_t: float
    run_a: object
    it_a: object
    run_b: object
    it_b: object


class ClassChoices(NamedTuple):
    listing: object    # the Pseudo-labels tab's class filter
    instance: object   # the Instance tab's relabel choice
    curate: object     # the Curate tab's relabel choice


class Tick(NamedTuple):
    runs: object
    progress: object
    losses: object
    counts: object
    ap: object
    per_class: object
    log: object
    stop: object
    resume: object
    checkpoint: object
    stamp: dict


class Sidebar:
    def __init__(self, ctx: AppContext, live):
        self.ctx = ctx
        self.live = live   # the Train tab's live view of a run

    # ------------------------------------------------------------------ callbacks
    def initial(self):
        """On page load: the run list, the run to show (``--run``, else the latest with records)."""
        infos = runs.list_runs(self.ctx.runs_root)
        names = [r.name for r in infos]
        chosen = self.ctx.settings.initial_run if self.ctx.settings.initial_run in names else None
        if chosen is None:
            chosen = next((r.name for r in infos if r.records), names[0] if names else None)
        return runs.runs_table(infos), gr.Dropdown(choices=names, value=chosen)

    def select_run(self, run_name) -> RunChoice:
        """A run was chosen: its checkpoints (the latest selected), the sliders at its thresholds, Compare's sides."""
        iterations = self.ctx.checkpoint_choices(run_name)
        latest = iterations[-1] if iterations else None
        t = Thresholds()
        if latest is not None:
            t = self.ctx.checkpoint(run_name, latest).run_thresholds
        elif run_name:
            try:
                t = Thresholds.of_config(load_config(RunDir(self.ctx.run_path(run_name)).config).pldc)
            except (ConfigError, runs.PathEscapeError):
                pass
        names = self.ctx.run_names()
        return RunChoice(gr.Dropdown(choices=iterations, value=latest), *ThresholdValues(t.filter, t.c_t, t.m_t, t.s_t),
                         gr.Dropdown(choices=names, value=run_name), gr.Dropdown(choices=iterations, value=latest),
                         gr.Dropdown(choices=names, value=run_name),
                         gr.Dropdown(choices=iterations, value=iterations[-2] if len(iterations) > 1 else latest))

    def pick_run_row(self, table: pd.DataFrame, evt: gr.SelectData):
        """A click in the run list selects that run."""
        name = evt.row_value[0] if evt is not None and evt.row_value else None
        return gr.Dropdown(choices=self.ctx.run_names(), value=name) if name else gr.skip()

    def checkpoint_summary(self, run_name, iteration) -> str:
        try:
            ckpt = self.ctx.checkpoint(run_name, iteration)
        except (RecordError, OSError) as exc:  # unreadable records: say so instead of failing the page
            return message(f"cannot read the records: {exc}", error=True)
        if ckpt is None:
            return "No pseudo-label records for this run yet (they are written at each checkpoint)."
        return ckpt.summary()

    def class_choices(self, run_name, iteration) -> ClassChoices:
        ckpt = self.ctx.checkpoint(run_name, iteration)
        names = ckpt.class_names if ckpt is not None else []
        pairs = [(n, i) for i, n in enumerate(names)]
        return ClassChoices(gr.Dropdown(choices=[(ANY, ANY)] + pairs, value=ANY), gr.Dropdown(choices=pairs),
                            gr.Dropdown(choices=pairs))

    def tick(self, run_name, iteration, stamp) -> Tick:
        """Every few seconds: the run list, the selected run's live view if its files changed, and its
        checkpoint choices if new records appeared (the first one is selected when none was)."""
        launch.reap()
        infos = runs.list_runs(self.ctx.runs_root)
        table = runs.runs_table(infos)
        new_stamp = {"table": table.to_json(), "run": run_name, "files": _file_stamp(self.ctx.runs_root, run_name)}
        stamp = stamp or {}
        table_out = table if new_stamp["table"] != stamp.get("table") else gr.skip()
        if run_name and (new_stamp["files"] != stamp.get("files") or run_name != stamp.get("run")):
            live = self.live(run_name)
        else:
            live = LiveView(*(gr.skip(),) * len(LiveView._fields))
        iterations = self.ctx.checkpoint_choices(run_name)
        if iterations == stamp.get("iterations"):
            ckpts = gr.skip()
        elif iteration in (None, "") and iterations:
            ckpts = gr.Dropdown(choices=iterations, value=iterations[-1])
        else:
            ckpts = gr.Dropdown(choices=iterations)
        new_stamp["iterations"] = iterations
        return Tick(table_out, *live, ckpts, new_stamp)

    # ------------------------------------------------------------------ layout and wiring
    def layout(self, ui) -> None:
        gr.Markdown("### PL-DC Workbench")
        ui.run_dd = gr.Dropdown(label="run", choices=[], elem_id="run-dd", interactive=True)
        ui.ckpt_dd = gr.Dropdown(label="checkpoint (iteration)", choices=[], elem_id="ckpt-dd", interactive=True)
        self.summary = gr.Markdown(elem_id="ckpt-summary")
        gr.Markdown("**Runs** (click one to open it)")
        ui.runs_df = gr.Dataframe(pd.DataFrame(columns=["run", "state", "progress", "best AP"]), interactive=False,
                                  max_height=360, elem_id="pldc-sidebar-runs", wrap=True,
                                  column_widths=["30%", "24%", "21%", "25%"])
        gr.Markdown(f"<small>runs: `{shown_path(self.ctx.runs_root)}`<br>data: `{shown_path(self.ctx.data_root)}`</small>")

    def wire(self, ui) -> None:
        pl, cmp = ui.pseudo_labels, ui.compare
        ui.demo.load(self.initial, None, [ui.runs_df, ui.run_dd])
        # A run chosen whose latest checkpoint has the same iteration as the one shown leaves the checkpoint
        # dropdown's value unchanged, so its change event does not fire: what follows the checkpoint follows
        # ``run_chosen`` too (demo.py refreshes the shown tab the same way).
        self.run_chosen = ui.run_dd.change(
            self.select_run, ui.run_dd,
            ordered(RunChoice, checkpoint=ui.ckpt_dd, filter=pl.filter, c_t=pl.c_t, m_t=pl.m_t, s_t=pl.s_t,
                    run_a=cmp.run_a, it_a=cmp.it_a, run_b=cmp.run_b, it_b=cmp.it_b), show_progress="hidden")
        self.run_chosen.then(self.live, ui.run_dd, ui.train.live_outputs, show_progress="hidden")
        # the summary and the class choices follow the checkpoint with the shown tab: demo.App.checkpoint_chosen
        ui.runs_df.select(self.pick_run_row, ui.runs_df, ui.run_dd)
        timer = gr.Timer(TICK_SECONDS)
        train = ui.train
        timer.tick(self.tick, [ui.run_dd, ui.ckpt_dd, ui.tick_state],
                   ordered(Tick, runs=ui.runs_df, progress=train.progress, losses=train.losses, counts=train.counts,
                           ap=train.ap, per_class=train.per_class, log=train.log, stop=train.stop_button,
                           resume=train.resume_button, checkpoint=ui.ckpt_dd, stamp=ui.tick_state),
                   show_progress="hidden")


def _file_stamp(runs_root: Path, run_name) -> list:
    if not run_name:
        return []
    try:
        run = runs.run_dir(runs_root, run_name)
    except runs.PathEscapeError:
        return []
    out = []
    for name in (STATUS_FILE, METRICS_FILE, EVAL_FILE, LAUNCH_FILE, TRAIN_LOG):
        try:
            st = (run / name).stat()
            out.append([name, st.st_size, st.st_mtime_ns])
        except FileNotFoundError:
            out.append([name, None, None])
    return out
