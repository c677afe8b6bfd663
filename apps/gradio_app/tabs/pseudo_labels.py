"""Pseudo-labels tab: the c-vs-m scatter with threshold sliders, the live what-if, the filtered listing."""
from __future__ import annotations

from typing import NamedTuple

import gradio as gr
import plotly.graph_objects as go

from apps.gradio_app import browse, explore_figures as xf
from apps.gradio_app.browse import Selection
from apps.gradio_app.context import (ANY, NO_RECORDS, AppContext, Listing, choice, int_choice, ordered,
                                     thresholds_of)
from pldc_core.method.filters import Thresholds
from pldc_core.records.schema import ERROR_TYPES
from workbench.explain import error_label

STATUS_LABELS = {"all": "all queries", "kept": "kept at these thresholds", "filtered": "filtered out at these thresholds",
                 "run_kept": "kept by the run", "unreviewed": "not reviewed", "reviewed": "reviewed",
                 "accepted": "accepted", "rejected": "rejected", "relabelled": "relabelled"}
FAST = dict(show_progress="hidden", trigger_mode="always_last")


class PseudoLabelsView(NamedTuple):
    scatter: go.Figure
    what_if: go.Figure
    table: object
    info: str
    state: dict | None


class ThresholdValues(NamedTuple):
    filter: str
    c_t: float
    m_t: float
    s_t: float


class PseudoLabelsTab:
    id, label = "pl", "Pseudo-labels"

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    # ------------------------------------------------------------------ callbacks
    def show(self, run_name, iteration, filter_name, c_t, m_t, s_t, color_by, cls, err, status, sort_by,
             descending) -> PseudoLabelsView:
        """Scatter, what-if, the filtered table and the browse set for one threshold setting (slider moves,
        checkpoint switches and filter changes all come here)."""
        ckpt = self.ctx.checkpoint(run_name, iteration)
        if ckpt is None:
            empty = self.ctx.empty_listing(NO_RECORDS)
            return PseudoLabelsView(xf.empty("Class quality c vs mask quality m", NO_RECORDS),
                                    xf.empty("What-if", NO_RECORDS), *empty)
        t = thresholds_of(filter_name, c_t, m_t, s_t)
        point = ckpt.metrics_at(t)
        run_t = ckpt.run_thresholds
        run_point = ckpt.metrics_at(Thresholds(t.filter, run_t.c_t, run_t.m_t, run_t.s_t))
        scatter = xf.threshold_scatter(ckpt.queries, t, int(point["kept"]), ckpt.class_names,
                                       color_by="error" if color_by == "error type" else "iou")
        what_if = xf.what_if_figure(ckpt.curves_at(t), point, run_point, has_gt=ckpt.has_gt,
                                    best=ckpt.best_point(t.filter) if not point["kept"] else None)
        listing = self.ctx.listing(ckpt, _selection(cls, err, status), t, sort_by, descending)
        return PseudoLabelsView(scatter, what_if, *listing)

    def browse(self, run_name, iteration, filter_name, c_t, m_t, s_t, cls, err, status, sort_by,
               descending) -> Listing:
        """The table and browse set alone (filters and sorting changed, thresholds did not)."""
        ckpt = self.ctx.checkpoint(run_name, iteration)
        if ckpt is None:
            return self.ctx.empty_listing()
        return self.ctx.listing(ckpt, _selection(cls, err, status), thresholds_of(filter_name, c_t, m_t, s_t),
                                sort_by, descending)

    def run_thresholds(self, run_name, iteration) -> ThresholdValues:
        """The sliders at the thresholds the run trains with."""
        ckpt = self.ctx.checkpoint(run_name, iteration)
        t = ckpt.run_thresholds if ckpt is not None else Thresholds()
        return ThresholdValues(t.filter, t.c_t, t.m_t, t.s_t)

    # ------------------------------------------------------------------ layout and wiring
    def layout(self, ui) -> None:
        self.ui = ui
        with gr.Row():
            self.filter = gr.Radio(["ddtf", "coupled"], value="ddtf", label="filter", elem_id="pl-filter")
            self.c_t = gr.Slider(0, 1, value=0.85, step=0.01, label="c_t (class quality)", elem_id="pl-ct")
            self.m_t = gr.Slider(0, 1, value=0.9, step=0.01, label="m_t (mask quality)", elem_id="pl-mt")
            self.s_t = gr.Slider(0, 1, value=0.765, step=0.01, label="s_t (coupled: c·m)", elem_id="pl-st")
            with gr.Column(min_width=160):
                self.color = gr.Radio(["IoU", "error type"], value="IoU", label="colour points by",
                                      elem_id="pl-color")
                self.reset = gr.Button("the run's thresholds", size="sm", elem_id="pl-reset")
        with gr.Row():
            self.scatter = gr.Plot(elem_id="pl-scatter", elem_classes=["pldc-clickable"], show_label=False, scale=5)
            with gr.Column(scale=6):
                self.what_if = gr.Plot(elem_id="pl-whatif", show_label=False)
                with gr.Row():
                    self.cls = gr.Dropdown(label="class", choices=[ANY], value=ANY, elem_id="pl-class")
                    self.err = gr.Dropdown(label="error type", value=ANY, elem_id="pl-error",
                                           choices=[ANY, *((error_label(t), t) for t in ERROR_TYPES)])
                    self.status = gr.Dropdown(label="show", value="all", elem_id="pl-status",
                                              choices=[(v, k) for k, v in STATUS_LABELS.items()])
                    self.sort = gr.Dropdown(label="sort by", choices=list(browse.SORTABLE), value="s",
                                            elem_id="pl-sort")
                    self.descending = gr.Checkbox(label="descending", value=True, elem_id="pl-desc")
        self.info = gr.Markdown(elem_id="pl-info")
        self.table = gr.Dataframe(self.ctx.empty_listing().table, interactive=False, max_height=420,
                                  elem_id="pl-table")
        self.click = gr.Textbox(visible="hidden", elem_id="pl-scatter-click")

    @property
    def thresholds(self) -> list:
        """The threshold components (the Compare tab uses them too)."""
        return ordered(ThresholdValues, filter=self.filter, c_t=self.c_t, m_t=self.m_t, s_t=self.s_t)

    def refresh_inputs(self, ui) -> list:
        return [ui.run_dd, ui.ckpt_dd, *self.thresholds, self.color, *self._browse_inputs]

    @property
    def outputs(self) -> list:
        return ordered(PseudoLabelsView, scatter=self.scatter, what_if=self.what_if, table=self.table,
                       info=self.info, state=self.ui.browse_state)

    @property
    def _browse_inputs(self) -> list:
        return [self.cls, self.err, self.status, self.sort, self.descending]

    def wire(self, ui) -> None:
        inputs = self.refresh_inputs(ui)
        for component in (self.c_t, self.m_t, self.s_t, self.filter, self.color):
            component.input(self.show, inputs, self.outputs, **FAST)
        self.reset.click(self.run_thresholds, [ui.run_dd, ui.ckpt_dd], self.thresholds).then(
            self.show, inputs, self.outputs, **FAST)
        listing = ordered(Listing, table=self.table, info=self.info, state=ui.browse_state)
        for component in self._browse_inputs:
            component.input(self.browse, [ui.run_dd, ui.ckpt_dd, *self.thresholds, *self._browse_inputs], listing,
                            **FAST)
        ui.instance.opens_rows_of(self.table)
        self.click.change(ui.instance.open_from_scatter,
                          [self.click, ui.run_dd, ui.ckpt_dd, ui.browse_state, ui.instance.layers],
                          ui.instance.outputs)


def _selection(cls, err, status) -> Selection:
    return Selection(pred_class=int_choice(cls), error_type=choice(err), status=status or "all")
