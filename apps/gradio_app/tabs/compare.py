"""Compare tab: two checkpoints (of one run or two) on the same thresholds, figures and images."""
from __future__ import annotations

from typing import NamedTuple

import gradio as gr
import numpy as np
import plotly.graph_objects as go

from apps.gradio_app.context import AppContext, ordered, thresholds_of
from apps.gradio_app.instance_view import image_picture
from workbench.confusion import confusion_matrix
from workbench.error_breakdown import error_breakdown
from workbench.explain import no_ground_truth, nothing_passes
from workbench.figures.confusion import confusion_heatmap
from workbench.figures.errors import error_bars_by_checkpoint
from workbench.figures.keep_scatter import keep_scatter
from workbench.figures.style import empty
from workbench.figures.thresholds import what_if_by_checkpoint

KEPT, ALL = "kept at these thresholds", "all queries"


# each side's scatter, half as wide as the Pseudo-labels one, draws at most this many points (two of
# keep_scatter.MAX_POINTS took 1-2 s of the tab's first open in a browser)
SCATTER_POINTS = 1000


class CompareView(NamedTuple):
    metrics: go.Figure
    scatter_a: go.Figure
    scatter_b: go.Figure
    errors: go.Figure
    confusion_a: go.Figure
    confusion_b: go.Figure
    image: object        # the dropdown of the images both recorded
    picture_a: object
    picture_b: object
    note: str
    subset: object       # the subset radio: switched to 'all queries' when a side keeps nothing, else gr.skip()


class CompareTab:
    id, label = "compare", "Compare"

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    # ------------------------------------------------------------------ callbacks
    def show(self, run_a, it_a, run_b, it_b, filter_name, c_t, m_t, s_t, image_id, subset=KEPT,
             confusions=True) -> CompareView:
        """Two checkpoints (of one run or two) on the same thresholds, figures and images. When a side keeps
        nothing at the thresholds, the error and confusion figures show all queries of both, and say so.
        The confusion matrices are made only when ``confusions`` (their accordion is open), else skipped."""
        t = thresholds_of(filter_name, c_t, m_t, s_t)
        pair = self._pair(run_a, it_a, run_b, it_b, t, subset)
        if pair is None:
            reason = "choose two checkpoints (A and B)"
            nothing = empty("Compare", reason)
            return CompareView(nothing, nothing, nothing, nothing, nothing, nothing,
                               gr.Dropdown(choices=[], value=None), None, None, reason, gr.skip())
        sides, points, kept, rows, subset, notes = pair
        labels = list(sides)
        switch = gr.Radio(value=ALL) if notes else gr.skip()
        scope = "the kept pseudo-labels" if subset == KEPT else "all queries"
        metrics_fig = what_if_by_checkpoint(points)
        scatters = [keep_scatter(c.queries, t, int(points[k]["kept"]), c.class_names,
                                 max_points=SCATTER_POINTS).update_layout(
            title=f"{k}: {int(points[k]['kept']):,} kept", height=440) for k, c in sides.items()]
        no_gt = not any(c.has_gt for c in sides.values())
        errors_fig = error_bars_by_checkpoint(
            {k: error_breakdown(c.queries[rows[k]]).table for k, c in sides.items()},
            title=f"Error types by object size, {scope}",
            empty_message=no_ground_truth("error types") if no_gt else "none of these queries lies on a GT image")
        confusion = (self._confusions(sides, rows, subset) if confusions else (gr.skip(), gr.skip()))
        a, b = sides[labels[0]], sides[labels[1]]
        common = sorted(set(a.images["image_id"].tolist()) & set(b.images["image_id"].tolist()))
        if image_id is None or int(image_id) not in common:
            image_id = common[0] if common else None
        pictures = [None, None]
        notes.append(f"Pictures: the kept pseudo-labels ({t.describe()}) of the same image; white: ground truth.")
        if image_id is not None:
            for i, c in enumerate((a, b)):
                keep = dict(zip(c.queries["query"][c.queries["image_id"] == image_id].astype(int),
                                kept[labels[i]][(c.queries["image_id"] == image_id).to_numpy()]))
                pictures[i], n = image_picture(c.path, c.manifest, c.images, c.gt, int(image_id), keep, c.class_names)
                notes.append(f"{labels[i]}: {n} kept.")
        else:
            notes = ["The two checkpoints recorded no image in common: no pictures side by side."]
        return CompareView(metrics_fig, scatters[0], scatters[1], errors_fig, *confusion,
                           gr.Dropdown(choices=common, value=image_id), pictures[0], pictures[1], " ".join(notes),
                           switch)

    def show_confusions(self, run_a, it_a, run_b, it_b, filter_name, c_t, m_t, s_t, image_id, subset=KEPT,
                        confusions=True) -> tuple:
        """The two confusion matrices alone (their accordion opened), on ``show``'s subset."""
        pair = self._pair(run_a, it_a, run_b, it_b, thresholds_of(filter_name, c_t, m_t, s_t), subset)
        if pair is None:
            nothing = empty("Confusion", "choose two checkpoints (A and B)")
            return nothing, nothing
        sides, _, _, rows, subset, _ = pair
        return self._confusions(sides, rows, subset)

    def _pair(self, run_a, it_a, run_b, it_b, t, subset):
        """Both sides' checkpoints, metrics at ``t``, kept masks and the rows their error and confusion
        figures count (all queries when a side keeps nothing), or None without two checkpoints."""
        sides = {}
        for label, (run_name, it) in (("A", (run_a, it_a)), ("B", (run_b, it_b))):
            ckpt = self.ctx.checkpoint(run_name, it)
            if ckpt is not None:
                sides[f"{label}: {run_name} @ {it}"] = ckpt
        if len(sides) < 2:
            return None
        points = {k: c.metrics_at(t) for k, c in sides.items()}
        kept = {k: c.keep_mask(t) for k, c in sides.items()}
        notes = []
        nothing = [k for k in sides if not kept[k].any()]
        if subset == KEPT and nothing:
            subset = ALL
            best = sides[nothing[0]].best_point(t.filter)
            notes.append(f"{' and '.join(nothing)}: " + nothing_passes(t, best).replace(
                ", or show all queries.", "; showing all queries instead (thresholds: the Pseudo-labels tab)."))
        rows = {k: (kept[k] if subset == KEPT else np.ones(len(c), dtype=bool)) for k, c in sides.items()}
        return sides, points, kept, rows, subset, notes

    @staticmethod
    def _confusions(sides, rows, subset) -> tuple[go.Figure, go.Figure]:
        scope = "the kept pseudo-labels" if subset == KEPT else "all queries"
        figures = []
        for k, c in sides.items():
            fig = confusion_heatmap(
                confusion_matrix(c.queries[rows[k]], c.gt, c.num_classes), c.class_names,
                empty_message=f"{k}: nothing kept at these thresholds" if subset == KEPT else None)
            figures.append(fig.update_layout(title=f"{k}: confusion of {scope}", height=460))
        return tuple(figures)

    def run_changed(self, run_name):
        """A side's run was chosen: its checkpoints, the latest selected."""
        iterations = self.ctx.checkpoint_choices(run_name)
        return gr.Dropdown(choices=iterations, value=iterations[-1] if iterations else None)

    # ------------------------------------------------------------------ layout and wiring
    def layout(self, ui) -> None:
        self.ui = ui
        with gr.Row():
            self.run_a = gr.Dropdown(label="A: run", choices=[], elem_id="cmp-run-a")
            self.it_a = gr.Dropdown(label="A: checkpoint", choices=[], elem_id="cmp-it-a")
            self.run_b = gr.Dropdown(label="B: run", choices=[], elem_id="cmp-run-b")
            self.it_b = gr.Dropdown(label="B: checkpoint", choices=[], elem_id="cmp-it-b")
        with gr.Row():
            gr.Markdown("Both sides use the thresholds of the Pseudo-labels tab.")
            self.subset = gr.Radio([KEPT, ALL], value=KEPT, label="errors and confusion of", elem_id="cmp-subset")
        self.metrics = gr.Plot(elem_id="cmp-metrics", show_label=False)
        with gr.Row():
            self.image = gr.Dropdown(label="the same image in both", choices=[], elem_id="cmp-image", scale=1)
            self.note = gr.Markdown(elem_id="cmp-note")
        with gr.Row():
            self.picture_a = gr.Image(label="A", type="numpy", format="png", interactive=False, elem_id="cmp-pic-a",
                                      height=360)
            self.picture_b = gr.Image(label="B", type="numpy", format="png", interactive=False, elem_id="cmp-pic-b",
                                      height=360)
        with gr.Row():
            self.scatter_a = gr.Plot(elem_id="cmp-scatter-a", show_label=False)
            self.scatter_b = gr.Plot(elem_id="cmp-scatter-b", show_label=False)
        self.errors = gr.Plot(elem_id="cmp-errors", show_label=False)
        # drawn when opened: six figures at once made the tab's first open slow (bench_app_browser.py)
        self.confusions_open = gr.State(False)
        with gr.Accordion("Confusion matrices of A and B (drawn when opened)", open=False,
                          elem_id="cmp-conf-box") as self.confusion_box:
            with gr.Row():
                self.confusion_a = gr.Plot(elem_id="cmp-conf-a", show_label=False)
                self.confusion_b = gr.Plot(elem_id="cmp-conf-b", show_label=False)

    def refresh_inputs(self, ui) -> list:
        return [self.run_a, self.it_a, self.run_b, self.it_b, *ui.pseudo_labels.thresholds, self.image, self.subset,
                self.confusions_open]

    @property
    def outputs(self) -> list:
        return ordered(CompareView, metrics=self.metrics, scatter_a=self.scatter_a, scatter_b=self.scatter_b,
                       errors=self.errors, confusion_a=self.confusion_a, confusion_b=self.confusion_b,
                       image=self.image, picture_a=self.picture_a, picture_b=self.picture_b, note=self.note,
                       subset=self.subset)

    def wire(self, ui) -> None:
        # A follows the sidebar's checkpoint: demo.App.checkpoint_chosen sets it
        self.run_a.input(self.run_changed, self.run_a, self.it_a, show_progress="hidden")
        self.run_b.input(self.run_changed, self.run_b, self.it_b, show_progress="hidden")
        inputs = self.refresh_inputs(ui)
        for component in (self.it_a, self.it_b, self.image, self.subset):
            component.input(self.show, inputs, self.outputs, show_progress="hidden", trigger_mode="always_last")
        self.confusion_box.expand(lambda: True, None, self.confusions_open).then(
            self.show_confusions, inputs, [self.confusion_a, self.confusion_b], show_progress="hidden")
        self.confusion_box.collapse(lambda: False, None, self.confusions_open)
        for component in (self.it_a, self.it_b):
            component.change(ui.when_shown(self.id, self.show, len(self.outputs)), [ui.current_tab, *inputs],
                             self.outputs, show_progress="hidden")
