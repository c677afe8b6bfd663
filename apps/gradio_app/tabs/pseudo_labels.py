"""Pseudo-labels tab: the c-vs-m scatter with threshold sliders, the live what-if, the filtered listing.

A DDTF slider step does not send the two figures to their gr.Plot: Gradio re-creates a plot it is sent
and draws it twice, and the scatter's points, which a threshold does not move, were most of a step's
time. It sends, through a hidden textbox, the new what-if and the scatter's new lines and title, and a
script (``APPLY_THRESHOLD_STEP``) updates the figures on screen in place (``Plotly.react`` / ``relayout``).
The figures gr.Plot is sent are then each made unique (``_sent``): gr.Plot ignores a figure equal to the
one it holds, which after such a step is no longer the one on screen. The listing is sent only when it
depends on the thresholds.
"""
from __future__ import annotations

import json
import time
from typing import NamedTuple

import gradio as gr
import plotly.graph_objects as go

from apps.gradio_app import browse
from apps.gradio_app.browse import Selection
from apps.gradio_app.context import (ANY, NO_RECORDS, AppContext, Listing, choice, int_choice, ordered,
                                     thresholds_of)
from pldc_core.method.filters import Thresholds
from pldc_core.records.schema import ERROR_TYPES
from workbench.explain import error_label
from workbench.figures.keep_scatter import ddtf_marks, keep_scatter, scatter_title
from workbench.figures.style import empty
from workbench.figures.thresholds import what_if_figure

STATUS_LABELS = {"all": "all queries", "kept": "kept at these thresholds", "filtered": "filtered out at these thresholds",
                 "run_kept": "kept by the run", "unreviewed": "not reviewed", "reviewed": "reviewed",
                 "accepted": "accepted", "rejected": "rejected", "relabelled": "relabelled"}
FAST = dict(show_progress="hidden", trigger_mode="always_last")
# a threshold step (``PseudoLabelsTab.move``'s JSON) applied to the figures on screen; the layout options
# are those Gradio's plot sets
APPLY_THRESHOLD_STEP = """
(text) => {
  const plot = (id) => document.querySelector('#' + id + ' [data-testid=plotly]');
  const whatIf = plot('pl-whatif'), scatter = plot('pl-scatter');
  if (!text || !window.Plotly) return [];
  const step = JSON.parse(text);
  if (whatIf && whatIf.layout) {
    const layout = step.what_if.layout;
    layout.autosize = true;
    layout.margin = Object.assign(layout.margin || {}, {autoexpand: true});
    window.Plotly.react(whatIf, step.what_if.data, layout);
  }
  if (scatter && scatter.layout) window.Plotly.relayout(scatter, step.scatter);
  return [];
}
"""


class PseudoLabelsView(NamedTuple):
    scatter: go.Figure
    what_if: go.Figure
    table: object
    info: str
    state: dict | None


class ThresholdMove(NamedTuple):
    scatter: object  # the figures, when the points move with the threshold (coupled filter), else skip
    what_if: object
    step: object     # else the JSON applied to the figures on screen (APPLY_THRESHOLD_STEP), else skip
    table: object    # the listing, when it depends on the thresholds, else skip
    info: object
    state: object


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
        """Scatter, what-if, the filtered table and the browse set for one threshold setting (checkpoint
        switches, tab openings, filter and colour changes come here; slider steps go to ``move``)."""
        ckpt = self.ctx.checkpoint(run_name, iteration)
        if ckpt is None:
            listing = self.ctx.empty_listing(NO_RECORDS)
            return PseudoLabelsView(_sent(empty("Class quality c vs mask quality m", NO_RECORDS)),
                                    _sent(empty("What-if", NO_RECORDS)), *listing)
        t = thresholds_of(filter_name, c_t, m_t, s_t)
        point = ckpt.metrics_at(t)
        scatter = keep_scatter(ckpt.queries, t, int(point["kept"]), ckpt.class_names,
                               color_by="error" if color_by == "error type" else "iou")
        listing = self.ctx.listing(ckpt, _selection(cls, err, status), t, sort_by, descending)
        return PseudoLabelsView(_sent(scatter), _sent(_what_if(ckpt, t, point)), *listing)

    def move(self, run_name, iteration, filter_name, c_t, m_t, s_t, color_by, cls, err, status, sort_by,
             descending) -> ThresholdMove:
        """A threshold slider moved: what changes with it (see the module's docstring)."""
        ckpt = self.ctx.checkpoint(run_name, iteration)
        t = thresholds_of(filter_name, c_t, m_t, s_t)
        if ckpt is None or ckpt.queries.empty or t.filter != "ddtf":
            view = self.show(run_name, iteration, filter_name, c_t, m_t, s_t, color_by, cls, err, status, sort_by,
                             descending)
            return ThresholdMove(view.scatter, view.what_if, gr.skip(), view.table, view.info, view.state)
        point = ckpt.metrics_at(t)
        step = (f'{{"sent": {time.time_ns()}, '  # each step differs, so the textbox's change always fires
                f'"scatter": {json.dumps(scatter_update(t, int(point["kept"])))}, '
                f'"what_if": {_what_if(ckpt, t, point).to_json()}}}')
        sel = _selection(cls, err, status)
        listing = (self.ctx.listing(ckpt, sel, t, sort_by, descending) if sel.status in ("kept", "filtered")
                   else (gr.skip(),) * 3)
        return ThresholdMove(gr.skip(), gr.skip(), step, *listing)

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
        self.step = gr.Textbox(visible="hidden", elem_id="pl-threshold-step")

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
        moved = ordered(ThresholdMove, scatter=self.scatter, what_if=self.what_if, step=self.step, table=self.table,
                        info=self.info, state=ui.browse_state)
        for component in (self.c_t, self.m_t, self.s_t):
            component.input(self.move, inputs, moved, **FAST)
        self.step.change(None, self.step, None, js=APPLY_THRESHOLD_STEP)
        for component in (self.filter, self.color):
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


def _sent(fig: go.Figure) -> go.Figure:
    """``fig`` marked with the time it is sent, so that gr.Plot draws it even if equal to the figure it holds."""
    return fig.update_layout(meta={"sent": time.time_ns()})


def _what_if(ckpt, t: Thresholds, point: dict) -> go.Figure:
    """The what-if at ``t`` (metrics ``point``), with the run's own thresholds marked."""
    run_t = ckpt.run_thresholds
    run_point = ckpt.metrics_at(Thresholds(t.filter, run_t.c_t, run_t.m_t, run_t.s_t))
    return what_if_figure(ckpt.curves_at(t), point, run_point, has_gt=ckpt.has_gt,
                          best=ckpt.best_point(t.filter) if not point["kept"] else None)


def scatter_update(t: Thresholds, kept: int) -> dict:
    """What a move of the DDTF thresholds changes in ``keep_scatter``'s figure, as a ``Plotly.relayout`` update
    of the figure on screen: the shaded areas, the labelled lines, the title. The points stay: redrawing
    ~1,000 SVG markers for every slider step cost more than everything else of the step."""
    return {"shapes": ddtf_marks(float(t.c_t), float(t.m_t)), "title.text": scatter_title(t, kept)}


def _selection(cls, err, status) -> Selection:
    return Selection(pred_class=int_choice(cls), error_type=choice(err), status=status or "all")
