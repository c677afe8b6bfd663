"""Curate tab: decisions on a whole set, the decisions so far, and the curated COCO export."""
from __future__ import annotations

from typing import NamedTuple

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from apps.gradio_app import runs
from apps.gradio_app.context import NO_RECORDS, AppContext, message, ordered
from pldc_core.run_dir import RunDir
from workbench.curation import CurationError, CurationStore, export_curated_coco
from workbench.figures.curation import decisions_per_class
from workbench.figures.style import empty

DECISION_COLUMNS = ["image_id", "query", "decision", "new class", "source"]


class CurateView(NamedTuple):
    figure: go.Figure
    summary: str
    decisions: pd.DataFrame
    set_line: str


class Export(NamedTuple):
    message: str
    file: str | None


class CurateTab:
    id, label = "curate", "Curate"

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    # ------------------------------------------------------------------ callbacks
    def show(self, run_name, iteration, state) -> CurateView:
        ckpt = self.ctx.checkpoint(run_name, iteration)
        if ckpt is None:
            return CurateView(empty("Curation", NO_RECORDS), "", pd.DataFrame(), "")
        counts = ckpt.curation_counts()
        totals = counts.groupby("action")["count"].sum().to_dict() if not counts.empty else {}
        edits = CurationStore(ckpt.run).edits(ckpt.iteration)
        table = pd.DataFrame({"image_id": edits["image_id"].to_numpy(), "query": edits["query"].to_numpy(),
                              "decision": edits["action"].to_numpy(),
                              "new class": [ckpt.class_name(k) if pd.notna(k) else "" for k in edits["new_class"]],
                              "source": edits["source"].to_numpy()}, columns=DECISION_COLUMNS).iloc[::-1]
        summary = (f"Iteration {ckpt.iteration}: **{totals.get('accept', 0)}** accepted, "
                   f"**{totals.get('relabel', 0)}** relabelled, **{totals.get('reject', 0)}** rejected "
                   f"(saved in `{CurationStore(ckpt.run).path.relative_to(self.ctx.runs_root)}` as they are made).")
        return CurateView(decisions_per_class(counts, ckpt.class_names), summary, table, _set_line(state))

    def apply(self, state, action: str, new_class, run_name, iteration) -> str:
        """Apply one decision to every pseudo-label of the current set."""
        if not state or state.get("keys") is None or not len(state["keys"]):
            return message("the current set is empty", error=True)
        if action == "relabel" and new_class is None:
            return message("choose the class to relabel to", error=True)
        n = CurationStore(self.ctx.run_path(state["run"])).record(
            state["iteration"], [tuple(k) for k in state["keys"].tolist()], action,
            new_class=None if new_class is None else int(new_class), source="gradio")
        return f"{action}: {n} pseudo-labels of the set ({state.get('desc', '')}) — saved"

    def export(self, run_name, iteration, file_name, include_kept) -> Export:
        """Write the curated COCO JSON inside the run folder; returns a message and the file."""
        ckpt = self.ctx.checkpoint(run_name, iteration)
        if ckpt is None:
            return Export(message("choose a run and checkpoint first", error=True), None)
        name = (file_name or "").strip() or f"curated_iter_{ckpt.iteration:07d}.json"
        run = RunDir(ckpt.run)
        try:
            out = runs.inside(run.curation, name)
        except runs.PathEscapeError as exc:
            return Export(message(f"not exported: {exc}", error=True), None)
        if out.suffix != ".json":
            return Export(message("not exported: the file name must end in .json", error=True), None)
        try:
            counts = export_curated_coco(ckpt.run, ckpt.iteration, out, include_kept=bool(include_kept))
        except (CurationError, OSError) as exc:
            return Export(message(f"not exported: {exc}", error=True), None)
        rel = out.relative_to(self.ctx.runs_root)
        text = (f"Wrote **{counts['annotations']}** annotations on {counts['images']} images to `{rel}` "
                f"({counts['accepted']} accepted, {counts['relabelled']} relabelled"
                + (", plus the unreviewed pseudo-labels DDTF kept" if include_kept else "")
                + "). Train a new run with them as extra labeled data:\n\n"
                f"```\npldc train --config {run.config} --name {ckpt.run.name}-curated "
                f"data.extra_labeled_json={out}\n```")
        return Export(text, str(out))

    def open_decision(self, run_name, iteration, layers, evt: gr.SelectData):
        """A row of the decisions table was clicked: open that pseudo-label alone."""
        instance = self.ui.instance
        if evt is None or not evt.row_value or iteration in (None, ""):
            return instance.view(None, layers, switch=False)
        return instance.open_alone(run_name, iteration, int(evt.row_value[0]), int(evt.row_value[1]), layers)

    # ------------------------------------------------------------------ layout and wiring
    def layout(self, ui) -> None:
        self.ui = ui
        with gr.Row():
            self.plot = gr.Plot(elem_id="cu-plot", show_label=False, scale=3)
            with gr.Column(scale=2):
                self.summary = gr.Markdown(elem_id="cu-summary")
                self.set_line = gr.Markdown(elem_id="cu-set")
                with gr.Row():
                    self.accept = gr.Button("Accept the set", elem_id="cu-accept")
                    self.reject = gr.Button("Reject the set", elem_id="cu-reject")
                with gr.Row():
                    self.relabel_class = gr.Dropdown(label="relabel the set as", choices=[], elem_id="cu-class")
                    self.relabel = gr.Button("Relabel the set", elem_id="cu-relabel")
                    self.clear = gr.Button("Clear the set's decisions", elem_id="cu-clear")
                self.message = gr.Markdown(elem_id="cu-message", elem_classes=["pldc-message"])
        gr.Markdown("#### Export for training")
        with gr.Row():
            self.file = gr.Textbox(label="file name (in RUN/curation/)", placeholder="curated_iter_XXXXXXX.json",
                                   elem_id="cu-file")
            self.include_kept = gr.Checkbox(label="also the unreviewed pseudo-labels DDTF kept", value=False,
                                            elem_id="cu-include-kept")
            self.export_button = gr.Button("Export COCO JSON", variant="primary", elem_id="cu-export")
        self.export_message = gr.Markdown(elem_id="cu-export-message", elem_classes=["pldc-message"])
        self.download = gr.File(label="curated JSON", interactive=False, elem_id="cu-download", height=80)
        gr.Markdown("**Decisions** (latest first; click one to open it)")
        self.decisions = gr.Dataframe(pd.DataFrame(columns=DECISION_COLUMNS), interactive=False, max_height=360,
                                      elem_id="cu-table")

    def refresh_inputs(self, ui) -> list:
        return [ui.run_dd, ui.ckpt_dd, ui.browse_state]

    @property
    def outputs(self) -> list:
        return ordered(CurateView, figure=self.plot, summary=self.summary, decisions=self.decisions,
                       set_line=self.set_line)

    def wire(self, ui) -> None:
        refresh = (self.show, self.refresh_inputs(ui), self.outputs)
        for button, action in ((self.accept, "accept"), (self.reject, "reject"), (self.clear, "clear")):
            button.click(lambda s, r, i, a=action: self.apply(s, a, None, r, i),
                         [ui.browse_state, ui.run_dd, ui.ckpt_dd], self.message).then(*refresh)
        self.relabel.click(lambda s, c, r, i: self.apply(s, "relabel", c, r, i),
                           [ui.browse_state, self.relabel_class, ui.run_dd, ui.ckpt_dd], self.message).then(*refresh)
        self.export_button.click(self.export, [ui.run_dd, ui.ckpt_dd, self.file, self.include_kept],
                                 ordered(Export, message=self.export_message, file=self.download))
        self.decisions.select(self.open_decision, [ui.run_dd, ui.ckpt_dd, ui.instance.layers], ui.instance.outputs)


def _set_line(state) -> str:
    if not state or state.get("keys") is None:
        return "No set chosen yet: filter the Pseudo-labels table, or click a confusion cell, an error bar or a DICC correction."
    return (f"Current set: **{len(state['keys']):,}** pseudo-labels: {state.get('desc', '')} "
            f"(run {state['run']}, iteration {state['iteration']})")
