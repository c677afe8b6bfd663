"""Errors tab: the six error types over training and by object size; the pseudo-labels of a bar."""
from __future__ import annotations

from typing import NamedTuple

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from apps.gradio_app import browse
from apps.gradio_app.browse import Selection
from apps.gradio_app.context import NO_RECORDS, AppContext, Listing, ordered, parse_click
from pldc_core.records.schema import ERROR_TYPES
from workbench.error_breakdown import SIZES, error_breakdown
from workbench.explain import no_ground_truth, nothing_kept
from workbench.figures.errors import error_bars, error_trend
from workbench.figures.style import empty

KEPT, ALL = "kept by the run", "all queries"
CLICK_HINT = "Click a bar to list its pseudo-labels."


class ErrorsView(NamedTuple):
    trend: go.Figure
    counts: go.Figure
    table: pd.DataFrame
    note: str
    subset: object     # the subset radio: switched to 'all queries' when the run kept nothing, else gr.skip()


class ErrorsTab:
    id, label = "errors", "Errors"

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    # ------------------------------------------------------------------ callbacks
    def show(self, run_name, iteration, subset) -> ErrorsView:
        """The error types over training and at this checkpoint; a view of the kept pseudo-labels of a
        checkpoint where the run kept none switches to all queries and says so."""
        ckpt = self.ctx.checkpoint(run_name, iteration)
        if ckpt is None:
            return ErrorsView(empty("Error types", NO_RECORDS), empty("Error types", NO_RECORDS),
                              pd.DataFrame(columns=["size", *ERROR_TYPES]), "", gr.skip())
        notes, switch = [], gr.skip()
        if subset == KEPT and ckpt.has_gt and ckpt.run_kept == 0:
            subset, switch = ALL, gr.Radio(value=ALL)
            notes.append(nothing_kept(ckpt.run_thresholds, ckpt.iteration, ckpt.best_point()))
        key = "kept" if subset == KEPT else "all"
        why = no_ground_truth("error types") if not ckpt.has_gt else \
            "none of these pseudo-labels lies on an image with ground truth"
        errors = browse.run_summaries(ckpt.run)["errors"]
        trend = error_trend(errors[errors["subset"] == key] if not errors.empty else errors, kept=key == "kept",
                            current=ckpt.iteration, empty_message=why)
        current = error_breakdown(ckpt.queries, kept_by=ckpt.kept_by if key == "kept" else None)
        counts = error_bars(current.table, "size", f"Iteration {ckpt.iteration} by object size (click a bar)",
                            value="count", empty_message=why)
        table = current.table.pivot(index="size", columns="error_type", values="count").reindex(
            index=["all", *SIZES], columns=list(ERROR_TYPES)).reset_index()
        if current.n:
            notes.append(CLICK_HINT)
        return ErrorsView(trend, counts, table, " ".join(notes), switch)

    def click(self, payload, run_name, iteration, subset) -> Listing:
        """A bar was clicked (``customdata = [size, error type]``): list its pseudo-labels."""
        click = parse_click(payload)
        ckpt = self.ctx.checkpoint(run_name, iteration)
        if not click or ckpt is None or not click.get("customdata"):
            return Listing(gr.skip(), gr.skip(), gr.skip())
        size, etype = click["customdata"][:2]
        sel = Selection(error_type=etype, size=size, kept_by=ckpt.kept_by if subset == KEPT else None)
        return self.ctx.listing(ckpt, sel, ckpt.run_thresholds)

    # ------------------------------------------------------------------ layout and wiring
    def layout(self, ui) -> None:
        self.subset = gr.Radio([ALL, KEPT], value=KEPT, label="pseudo-labels", elem_id="er-subset")
        self.trend = gr.Plot(elem_id="er-trend", show_label=False)
        with gr.Row():
            self.counts = gr.Plot(elem_id="er-counts", elem_classes=["pldc-clickable"], show_label=False, scale=3)
            self.summary = gr.Dataframe(pd.DataFrame(columns=["size", *ERROR_TYPES]), interactive=False,
                                        elem_id="er-summary", scale=2)
        self.note = gr.Markdown(CLICK_HINT, elem_id="er-note")
        self.table = gr.Dataframe(self.ctx.empty_listing().table, interactive=False, max_height=360,
                                  elem_id="er-table")
        self.click_box = gr.Textbox(visible="hidden", elem_id="er-counts-click")

    def refresh_inputs(self, ui) -> list:
        return [ui.run_dd, ui.ckpt_dd, self.subset]

    @property
    def outputs(self) -> list:
        return ordered(ErrorsView, trend=self.trend, counts=self.counts, table=self.summary, note=self.note,
                       subset=self.subset)

    def wire(self, ui) -> None:
        self.subset.input(self.show, self.refresh_inputs(ui), self.outputs, show_progress="hidden",
                          trigger_mode="always_last")
        self.click_box.change(self.click, [self.click_box, ui.run_dd, ui.ckpt_dd, self.subset],
                              ordered(Listing, table=self.table, info=self.note, state=ui.browse_state))
        ui.instance.opens_rows_of(self.table)
