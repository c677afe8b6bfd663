"""DICC tab: what the CLIP correction changed, per class and over training, and CLIP alone on GT crops."""
from __future__ import annotations

from typing import NamedTuple

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from apps.gradio_app import browse
from apps.gradio_app.browse import Selection
from apps.gradio_app.context import NO_RECORDS, TABLE_ROWS, AppContext, Listing, ordered, shown_path
from pldc_core.run_dir import RunDir
from workbench.dicc_report import clip_precision_recall_by_mode, dicc_report, read_clip_table
from workbench.explain import dicc_reason
from workbench.figures.dicc import clip_pr_by_mode, dicc_class_bars, dicc_trend
from workbench.figures.style import empty

CORRECTION_COLUMNS = ["from", "to", "count", "fixed", "broken", "neutral", "unjudged"]


class DiccView(NamedTuple):
    summary: str
    per_class: go.Figure
    trend: go.Figure
    corrections: pd.DataFrame
    clip: go.Figure


class DiccTab:
    id, label = "dicc", "DICC"

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    # ------------------------------------------------------------------ callbacks
    def show(self, run_name, iteration) -> DiccView:
        ckpt = self.ctx.checkpoint(run_name, iteration)
        if ckpt is None:
            return DiccView(NO_RECORDS, empty("DICC", NO_RECORDS), empty("DICC", NO_RECORDS), pd.DataFrame(),
                            empty("CLIP", NO_RECORDS))
        clip = clip_on_gt_figure(ckpt)
        report = dicc_report(ckpt.queries, kept_by=ckpt.kept_by)
        s = report.summary
        summaries = browse.run_summaries(ckpt.run)["dicc"]
        on_in_run = bool(summaries["enabled"].any()) if "enabled" in summaries else report.ran
        trend = dicc_trend(summaries, empty_message=dicc_reason(False, 0) if not on_in_run else
                           "DICC ran on no kept pseudo-label at any recorded checkpoint (the run's "
                           "filter kept none, or the run was in its burn-in)")
        if not report.ran:
            reason = dicc_reason(on_in_run, ckpt.run_kept, ckpt.info.phase)
            return DiccView(reason, empty("DICC changes per teacher class", reason), trend,
                            pd.DataFrame(columns=CORRECTION_COLUMNS), clip)
        acc = (f"class accuracy of the judged pseudo-labels {s['accuracy_before']:.1%} → **{s['accuracy_after']:.1%}**"
               if s["n_judged"] else "no pseudo-label lies on a GT, so none can be judged")
        if s["n_judged"] and s["clip_accuracy"] == s["clip_accuracy"]:  # not NaN
            acc += f" (CLIP alone on the teacher's masks: {s['clip_accuracy']:.1%})"

        summary = (f"DICC ran on **{s['n_ran']:,}** pseudo-labels kept by the run and changed **{s['n_changed']:,}**: "
                   f"**{s['fixed']}** fixed, **{s['broken']}** broken, {s['neutral']} wrong before and after, "
                   f"{s['unjudged']} on no GT (net {s['net']:+d}); {acc}. "
                   + ("Click a correction to list its pseudo-labels." if s["n_changed"] else
                      "It kept every teacher class, so there is no correction to list."))
        # the most frequent corrections only: every value on the page is copied on every event in the browser,
        # and 3,000 rows of a run with 80 classes made each slider step twice as slow
        tr = report.transitions
        if len(tr) > TABLE_ROWS:
            summary += f" The {TABLE_ROWS} most frequent of its {len(tr):,} corrections are listed."
            tr = tr.head(TABLE_ROWS)
        per_class = dicc_class_bars(report.per_class, ckpt.class_names,
                                    empty_message=f"DICC ran on {s['n_ran']:,} pseudo-labels and kept "
                                                  "every teacher class")
        table = pd.DataFrame({"from": [ckpt.class_name(k) for k in tr["from_class"]],
                              "to": [ckpt.class_name(k) for k in tr["to_class"]],
                              **{k: tr[k].to_numpy() for k in ("count", "fixed", "broken", "neutral", "unjudged")}})
        return DiccView(summary, per_class, trend, table, clip)

    def pick(self, run_name, iteration, evt: gr.SelectData) -> Listing:
        """A correction (teacher class → DICC class) was clicked: list its pseudo-labels."""
        ckpt = self.ctx.checkpoint(run_name, iteration)
        if ckpt is None or evt is None or not evt.row_value:
            return Listing(gr.skip(), gr.skip(), gr.skip())
        src, dst = self.ctx.class_index(ckpt, evt.row_value[0]), self.ctx.class_index(ckpt, evt.row_value[1])
        return self.ctx.listing(ckpt, Selection(dicc_from=src, dicc_to=dst, kept_by=ckpt.kept_by),
                                ckpt.run_thresholds)

    # ------------------------------------------------------------------ layout and wiring
    def layout(self, ui) -> None:
        self.summary = gr.Markdown(elem_id="dc-summary")
        with gr.Row():
            self.per_class = gr.Plot(elem_id="dc-per-class", show_label=False)
            self.trend = gr.Plot(elem_id="dc-trend", show_label=False)
        gr.Markdown("**Corrections** (teacher class → DICC class)")
        self.corrections = gr.Dataframe(pd.DataFrame(columns=CORRECTION_COLUMNS), interactive=False, max_height=300,
                                        elem_id="dc-table")
        self.note = gr.Markdown("Click a correction to list its pseudo-labels.", elem_id="dc-note")
        self.listing = gr.Dataframe(self.ctx.empty_listing().table, interactive=False, max_height=300,
                                    elem_id="dc-list")
        self.clip = gr.Plot(elem_id="dc-clip", show_label=False)

    def refresh_inputs(self, ui) -> list:
        return [ui.run_dd, ui.ckpt_dd]

    @property
    def outputs(self) -> list:
        return ordered(DiccView, summary=self.summary, per_class=self.per_class, trend=self.trend,
                       corrections=self.corrections, clip=self.clip)

    def wire(self, ui) -> None:
        self.corrections.select(self.pick, [ui.run_dd, ui.ckpt_dd],
                                ordered(Listing, table=self.listing, info=self.note, state=ui.browse_state))
        ui.instance.opens_rows_of(self.listing)


def clip_on_gt_figure(ckpt) -> go.Figure:
    """Table II (per DICC mode) from the run's ``pldc clip-crops`` output, or how to make it."""
    path = RunDir(ckpt.run).clip_table
    title = "CLIP on ground-truth crops"
    if not path.is_file():
        weights = "" if ckpt.info.dicc_enabled else " --clip-weights FILE"  # a DICC run names its own CLIP
        return empty(title, f"not measured yet: pldc clip-crops {shown_path(ckpt.run)}{weights}")
    try:
        table = read_clip_table(path)
        by_mode = clip_precision_recall_by_mode(table, len(ckpt.class_names))
    except (OSError, ValueError, KeyError) as exc:
        return empty(title, f"{path}: {exc}")
    return clip_pr_by_mode({mode: pr.per_class for mode, pr in by_mode.items()}, ckpt.class_names)
