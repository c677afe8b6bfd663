"""Instance tab: one pseudo-label over its image, its facts and class probabilities; decide on it."""
from __future__ import annotations

from typing import NamedTuple

import gradio as gr
import numpy as np
import pandas as pd

from apps.gradio_app.context import AppContext, message, ordered, parse_click
from apps.gradio_app.instance_view import Layers, class_probabilities, instance_picture
from workbench.curation import CurationError, CurationStore
from workbench.explain import ERROR_TYPE_RULES
from workbench.figures.dicc import class_probability_bars
from workbench.figures.style import empty

LAYER_CHOICES = ["pseudo mask", "GT", "uncertainty"]
NOTHING_OPEN = ("No instance open yet: click a row of a table (Pseudo-labels, Confusion, Errors, DICC, Curate) or a "
                "point of the Pseudo-labels scatter, and it opens here.")
NO_CLASSES = "no instance open yet: its class probabilities show here"


class InstanceView(NamedTuple):
    tab: object          # switches to this tab (or gr.skip())
    picture: object      # the image with the chosen layers, or None
    facts: str
    classes: object      # the class probability figure
    where: str           # "k of n in: <the set>"
    relabel: object      # the relabel dropdown (its choices and default)
    state: dict | None   # the browse state: the set and the position in it


class DecisionView(NamedTuple):
    message: str
    tab: object
    picture: object
    facts: str
    classes: object
    where: str
    relabel: object
    state: object


class InstanceTab:
    id, label = "instance", "Instance"

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    # ------------------------------------------------------------------ callbacks
    def open_from_table(self, state, layers, evt: gr.SelectData) -> InstanceView:
        """A row of a listing was clicked: open it, browsing the listing's set."""
        if not state or evt is None or not evt.row_value:
            return self.view(state, layers, switch=False)
        image_id, query = int(evt.row_value[0]), int(evt.row_value[1])
        return self.open_key(state, image_id, query, layers)

    def open_key(self, state, image_id: int, query: int, layers) -> InstanceView:
        """Open one pseudo-label; within the set of ``state`` when it belongs to it."""
        state = dict(state or {})
        keys = state.get("keys")
        hit = np.flatnonzero((keys[:, 0] == image_id) & (keys[:, 1] == query)) if keys is not None and len(keys) else []
        if len(hit):
            state["pos"] = int(hit[0])
        else:
            state.update(keys=np.array([[image_id, query]], dtype=np.int64), pos=0, desc="the clicked point")
        return self.view(state, layers)

    def open_alone(self, run_name, iteration, image_id: int, query: int, layers) -> InstanceView:
        """Open one pseudo-label of a checkpoint on its own (a set of one)."""
        state = {"run": run_name, "iteration": int(iteration), "keys": np.zeros((0, 2), np.int64), "pos": 0}
        return self.open_key(state, image_id, query, layers)

    def open_from_scatter(self, payload, run_name, iteration, state, layers) -> InstanceView:
        """A point of the c-vs-m scatter was clicked (``customdata = [image_id, query]``)."""
        click = parse_click(payload)
        if not click or not click.get("customdata"):
            return self.view(state, layers, switch=False)
        image_id, query = (int(v) for v in click["customdata"][:2])
        if not state or state.get("run") != run_name or state.get("iteration") != int(iteration):
            state = {"run": run_name, "iteration": int(iteration), "keys": np.zeros((0, 2), np.int64), "pos": 0}
        return self.open_key(state, image_id, query, layers)

    def step(self, state, delta: int, layers) -> InstanceView:
        """Previous / next instance of the browse set."""
        if not state or state.get("keys") is None or not len(state["keys"]):
            return self.view(state, layers, switch=False)
        state = dict(state)
        state["pos"] = int(state.get("pos", 0) + delta) % len(state["keys"])
        return self.view(state, layers, switch=False)

    def redraw(self, state, layers) -> InstanceView:
        return self.view(state, layers, switch=False)

    def view(self, state, layers, switch: bool = True) -> InstanceView:
        """The open instance of ``state`` drawn with ``layers``; ``switch`` shows this tab."""
        tab = gr.Tabs(selected="instance") if switch else gr.skip()
        if not state or state.get("keys") is None or not len(state["keys"]):
            return InstanceView(tab, None, "", empty("Classes", NO_CLASSES, 260), NOTHING_OPEN, gr.skip(),
                                state)
        ckpt = self.ctx.checkpoint(state["run"], state["iteration"])
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
        fig = class_probability_bars(probs, ckpt.class_names, title)
        decision, final = ckpt.curation()
        position = ckpt.positions([(image_id, query)])[0]
        current = decision[position] if position >= 0 else None
        facts = _facts(ckpt, row, current, final[position] if position >= 0 else None)
        if pic.warnings:
            facts += "\n\n" + message("; ".join(pic.warnings), error=True)
        where = (f"**{state['pos'] + 1} of {len(state['keys'])}** in: {state.get('desc', '')} "
                 f"(run {state['run']}, iteration {state['iteration']})")
        shown_class = int(final[position]) if position >= 0 and current == "relabel" else int(row["pred_class"])
        classes = gr.Dropdown(choices=[(n, i) for i, n in enumerate(ckpt.class_names)], value=shown_class)
        return InstanceView(tab, pic.picture, facts, fig, where, classes, state)

    def decide(self, state, action: str, new_class, layers) -> DecisionView:
        """Accept / reject / relabel / clear the open instance (saved at once)."""
        if not state or state.get("keys") is None or not len(state["keys"]):
            return DecisionView(message("open an instance first", error=True), *self.view(state, layers, False))
        key = tuple(int(v) for v in state["keys"][state["pos"]])
        try:
            CurationStore(self.ctx.run_path(state["run"])).record(
                state["iteration"], [key], action, new_class=None if new_class is None else int(new_class),
                source="gradio")
        except CurationError as exc:
            return DecisionView(message(str(exc), error=True), *self.view(state, layers, False))
        ckpt = self.ctx.checkpoint(state["run"], state["iteration"])
        what = {"accept": "accepted", "reject": "rejected", "clear": "cleared",
                "relabel": f"relabelled as {ckpt.class_name(new_class) if new_class is not None else '?'}"}[action]
        view = self.view(state, layers, False)._replace(state=gr.skip())
        return DecisionView(f"image {key[0]} query {key[1]}: {what} (saved)", *view)

    # ------------------------------------------------------------------ layout and wiring
    def layout(self, ui) -> None:
        self.ui = ui
        with gr.Row():
            self.prev = gr.Button("◀ previous", elem_id="in-prev", size="sm")
            self.where = gr.Markdown(NOTHING_OPEN, elem_id="in-where")
            self.next = gr.Button("next ▶", elem_id="in-next", size="sm")
        with gr.Row():
            self.image = gr.Image(label="image", type="numpy", format="png", interactive=False,
                                  elem_id="in-image", scale=3, buttons=["download", "fullscreen"])
            with gr.Column(scale=2):
                self.layers = gr.CheckboxGroup(LAYER_CHOICES, value=["pseudo mask", "GT"], label="layers",
                                               elem_id="in-layers")
                self.facts = gr.Markdown(elem_id="in-facts")
                self.classes = gr.Plot(empty("Classes", NO_CLASSES, 260), elem_id="in-classes",
                                       show_label=False)
        with gr.Row():
            self.accept = gr.Button("Accept", variant="primary", elem_id="in-accept")
            self.reject = gr.Button("Reject", variant="stop", elem_id="in-reject")
            self.relabel_class = gr.Dropdown(label="relabel as", choices=[], elem_id="in-relabel-class")
            self.relabel = gr.Button("Relabel", elem_id="in-relabel")
            self.clear = gr.Button("Clear decision", elem_id="in-clear")
        self.message = gr.Markdown(elem_id="in-message", elem_classes=["pldc-message"])

    @property
    def outputs(self) -> list:
        return ordered(InstanceView, tab=self.ui.tabs, picture=self.image, facts=self.facts, classes=self.classes,
                       where=self.where, relabel=self.relabel_class, state=self.ui.browse_state)

    def opens_rows_of(self, table) -> None:
        """A click on a row of ``table`` (a listing of the browse set) opens that pseudo-label here."""
        table.select(self.open_from_table, [self.ui.browse_state, self.layers], self.outputs)

    def wire(self, ui) -> None:
        state = ui.browse_state
        self.prev.click(lambda s, layers: self.step(s, -1, layers), [state, self.layers], self.outputs)
        self.next.click(lambda s, layers: self.step(s, 1, layers), [state, self.layers], self.outputs)
        self.layers.input(self.redraw, [state, self.layers], self.outputs, show_progress="hidden",
                          trigger_mode="always_last")
        decided = [self.message, *self.outputs]
        for button, action in ((self.accept, "accept"), (self.reject, "reject"), (self.clear, "clear")):
            button.click(lambda s, layers, a=action: self.decide(s, a, None, layers), [state, self.layers], decided)
        self.relabel.click(lambda s, c, layers: self.decide(s, "relabel", c, layers),
                           [state, self.relabel_class, self.layers], decided)


def _facts(ckpt, row, decision, final) -> str:
    iou = row["iou"]
    lines = [f"**image {int(row['image_id'])}, query {int(row['query'])}**",
             f"- class quality **c = {row['c']:.3f}**, mask quality **m = {row['m']:.3f}**, "
             f"score **s = c·m = {row['s']:.3f}**",
             f"- IoU with its best GT: **{'unknown' if pd.isna(iou) else f'{iou:.3f}'}**; error type: "
             + (f"**{row['error_type']}** ({ERROR_TYPE_RULES[row['error_type']]})"
                if row["error_type"] in ERROR_TYPE_RULES else "**unknown** (no ground truth)")
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
