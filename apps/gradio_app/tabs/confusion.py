"""Confusion tab: pseudo-label class vs GT class, its most confused pairs, the pseudo-labels of a cell."""
from __future__ import annotations

from typing import NamedTuple

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from apps.gradio_app.browse import Selection
from apps.gradio_app.context import NO_RECORDS, AppContext, Listing, message, ordered, parse_click
from workbench.confusion import BACKGROUND, confusion_matrix, most_confused
from workbench.explain import no_ground_truth, nothing_kept
from workbench.figures.confusion import confusion_heatmap
from workbench.figures.style import MODEBAR, empty

PAIR_COLUMNS = ["pseudo-label class", "GT class", "count", "share of row"]
KEPT, ALL = "kept by the run", "all queries"
PAIRS_HEADING = "**Most confused pairs**"


class ConfusionView(NamedTuple):
    figure: go.Figure
    pairs: pd.DataFrame
    pairs_note: str
    note: str
    subset: object     # the subset radio: switched to 'all queries' when the run kept nothing, else gr.skip()


class ConfusionTab:
    id, label = "confusion", "Confusion"

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    # ------------------------------------------------------------------ callbacks
    def show(self, run_name, iteration, normalized, after_dicc, subset) -> ConfusionView:
        """The matrix, its most confused pairs and a note; a view of the kept pseudo-labels of a checkpoint
        where the run kept none switches to all queries and says so."""
        ckpt = self.ctx.checkpoint(run_name, iteration)
        title = "Confusion: pseudo-label class vs GT class"
        if ckpt is None:
            return ConfusionView(empty(title, NO_RECORDS), pd.DataFrame(columns=PAIR_COLUMNS), PAIRS_HEADING,
                                 "", gr.skip())
        notes, switch = [], gr.skip()
        if subset == KEPT and ckpt.has_gt and ckpt.run_kept == 0:
            subset, switch = ALL, gr.Radio(value=ALL)
            notes.append(nothing_kept(ckpt.run_thresholds, ckpt.iteration, ckpt.best_point()))
        kept_by = ckpt.kept_by if subset == KEPT else None
        use_dicc = after_dicc == "after DICC"
        if use_dicc and not ckpt.dicc_ran:
            notes.append("DICC did not run at this checkpoint: the matrix is the teacher's classes.")
        conf = confusion_matrix(ckpt.queries, ckpt.gt, ckpt.num_classes, use_dicc=use_dicc, kept_by=kept_by)
        fig = confusion_heatmap(conf, ckpt.class_names, normalized=normalized == "row share",
                                empty_message="no query of this checkpoint lies on an image with ground truth")
        fig.update_layout(clickmode="event", modebar=MODEBAR)
        pairs = most_confused(conf, top=12, include_background=True)
        table = pd.DataFrame({"pseudo-label class": [ckpt.class_name(k) for k in pairs["pred_class"]],
                              "GT class": [ckpt.class_name(k) for k in pairs["gt_class"]],
                              "count": pairs["count"].to_numpy(), "share of row": pairs["share"].round(3).to_numpy()},
                             columns=PAIR_COLUMNS)
        if not conf.has_gt:
            pairs_note = f"{PAIRS_HEADING}: none, {no_ground_truth('confused pairs')}"
        elif table.empty:
            pairs_note = (f"{PAIRS_HEADING}: none, every one of the {conf.n_pseudo_labels:,} pseudo-labels here lies "
                          "on a GT of its own class and every GT is covered.")
        else:
            pairs_note = PAIRS_HEADING
        if conf.has_gt and conf.n_pseudo_labels:
            notes.append("Click a cell (or a pair) to list its pseudo-labels.")
        return ConfusionView(fig, table, pairs_note, " ".join(notes), switch)

    def cell(self, run_name, iteration, pred_name, gt_name, after_dicc, subset) -> Listing:
        """The pseudo-labels of one confusion cell (pseudo-label class ``pred_name``, GT class ``gt_name``)."""
        ckpt = self.ctx.checkpoint(run_name, iteration)
        if ckpt is None:
            return self.ctx.empty_listing()
        pred, gt = self.ctx.class_index(ckpt, pred_name), self.ctx.class_index(ckpt, gt_name)
        if pred is None or gt is None:
            return self.ctx.empty_listing(message(f"unknown class in {pred_name} / {gt_name}", True))
        if pred == BACKGROUND:
            missed = ckpt.gt[ckpt.gt["gt_class"] == gt] if gt != BACKGROUND else ckpt.gt.iloc[:0]
            return self.ctx.empty_listing(
                f"Row 'background': ground-truth {gt_name} instances that no pseudo-label covers "
                f"(IoU > 0.5); there is no pseudo-label to open. GT instances of class {gt_name}: {len(missed)}.")
        sel = Selection(pred_class=pred, gt_class=gt, use_dicc=after_dicc == "after DICC", known_gt=True,
                        kept_by=ckpt.kept_by if subset == KEPT else None)
        return self.ctx.listing(ckpt, sel, ckpt.run_thresholds)

    def click(self, payload, run_name, iteration, after_dicc, subset) -> Listing:
        """A cell of the heatmap was clicked."""
        click = parse_click(payload)
        if not click:
            return Listing(gr.skip(), gr.skip(), gr.skip())
        return self.cell(run_name, iteration, click.get("y"), click.get("x"), after_dicc, subset)

    def pair(self, run_name, iteration, after_dicc, subset, evt: gr.SelectData) -> Listing:
        """A row of the most-confused pairs was clicked."""
        if evt is None or not evt.row_value:
            return Listing(gr.skip(), gr.skip(), gr.skip())
        return self.cell(run_name, iteration, evt.row_value[0], evt.row_value[1], after_dicc, subset)

    # ------------------------------------------------------------------ layout and wiring
    def layout(self, ui) -> None:
        self.ui = ui
        with gr.Row():
            self.norm = gr.Radio(["row share", "counts"], value="row share", label="values", elem_id="cf-norm")
            self.dicc = gr.Radio(["before DICC", "after DICC"], value="before DICC", label="classes",
                                 elem_id="cf-dicc")
            self.subset = gr.Radio([ALL, KEPT], value=KEPT, label="pseudo-labels", elem_id="cf-subset")
        with gr.Row():
            self.plot = gr.Plot(elem_id="cf-heatmap", elem_classes=["pldc-clickable"], show_label=False, scale=3)
            with gr.Column(scale=2):
                self.pairs_note = gr.Markdown(PAIRS_HEADING, elem_id="cf-pairs-note")
                self.pairs = gr.Dataframe(pd.DataFrame(columns=PAIR_COLUMNS), interactive=False, max_height=420,
                                          elem_id="cf-pairs")
        self.note = gr.Markdown(elem_id="cf-note")
        self.table = gr.Dataframe(self.ctx.empty_listing().table, interactive=False, max_height=360,
                                  elem_id="cf-table")
        self.click_box = gr.Textbox(visible="hidden", elem_id="cf-heatmap-click")

    def refresh_inputs(self, ui) -> list:
        return [ui.run_dd, ui.ckpt_dd, self.norm, self.dicc, self.subset]

    @property
    def outputs(self) -> list:
        return ordered(ConfusionView, figure=self.plot, pairs=self.pairs, pairs_note=self.pairs_note, note=self.note,
                       subset=self.subset)

    def wire(self, ui) -> None:
        for component in (self.norm, self.dicc, self.subset):
            component.input(self.show, self.refresh_inputs(ui), self.outputs, show_progress="hidden",
                            trigger_mode="always_last")
        listing = ordered(Listing, table=self.table, info=self.note, state=ui.browse_state)
        self.click_box.change(self.click, [self.click_box, ui.run_dd, ui.ckpt_dd, self.dicc, self.subset], listing)
        self.pairs.select(self.pair, [ui.run_dd, ui.ckpt_dd, self.dicc, self.subset], listing)
        ui.instance.opens_rows_of(self.table)
