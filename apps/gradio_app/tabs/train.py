"""Train tab: start a run from a config and a form, watch it live, stop and resume it."""
from __future__ import annotations

import html
from typing import NamedTuple

import gradio as gr
import plotly.graph_objects as go

from apps.gradio_app import launch, runs
from apps.gradio_app.context import AppContext, message, ordered
from pldc_core.config import ConfigError, load_config
from pldc_core.run_dir import EVAL_FILE, METRICS_FILE, RunDir
from pldc_core.units import format_ap
from workbench.figures.style import empty
from workbench.figures.training import count_figure, evaluation_figure, loss_figure, per_class_figure
from workbench.trends import burn_in_of, per_class_ap


class TrainForm(NamedTuple):
    """The form's controls as the browser sends them, one field per ``launch.TrainSettings`` knob."""

    dataset: str | None
    percent: float | None
    split_seed: int | None
    filter: str | None
    c_t: float | None
    m_t: float | None
    s_t: float | None
    dicc: bool
    clip_weights: str
    pmua: bool
    unsup_weight: float | None
    ema_alpha: float | None
    max_iters: int | None
    burn_in_iters: int | None
    registry_file: str = ""

    @classmethod
    def of(cls, s: launch.TrainSettings) -> "TrainForm":
        """The form showing a config's values."""
        return cls(s.dataset, s.percent, s.split_seed, s.filter, s.c_t, s.m_t, s.s_t, s.dicc, s.clip_weights or "",
                   s.pmua, s.unsup_weight, s.ema_alpha, s.max_iters, s.burn_in_iters, s.registry_file or "")

    def settings(self) -> launch.TrainSettings:
        """The settings the form asks for (empty fields: the config's value)."""
        def number(v, cast):
            return None if v is None or v == "" else cast(v)

        return launch.TrainSettings(
            dataset=self.dataset or None, percent=number(self.percent, float), split_seed=number(self.split_seed, int),
            filter=self.filter or None, c_t=number(self.c_t, float), m_t=number(self.m_t, float),
            s_t=number(self.s_t, float), dicc=bool(self.dicc), clip_weights=(self.clip_weights or "").strip() or None,
            registry_file=(self.registry_file or "").strip() or None,
            pmua=bool(self.pmua), unsup_weight=number(self.unsup_weight, float),
            ema_alpha=number(self.ema_alpha, float), max_iters=number(self.max_iters, int),
            burn_in_iters=number(self.burn_in_iters, int))


class ConfigForm(NamedTuple):
    message: str
    form: TrainForm | None   # None: the config cannot be read (the form stays as it is)


class Started(NamedTuple):
    message: str
    runs: object       # the run list, or gr.skip()
    run: object        # the run dropdown (the new run chosen), or gr.skip()


class LiveView(NamedTuple):
    progress: str
    losses: go.Figure
    counts: go.Figure
    ap: go.Figure
    per_class: go.Figure  # each class's AP at the first and last evaluation
    log: str
    stop: object       # the Stop button, enabled only while the run runs
    resume: object     # the Resume button, enabled only for a stopped, failed or died run with a checkpoint


class Datasets(NamedTuple):
    dataset: object    # the dataset dropdown with the registry's datasets
    message: str


class TrainTab:
    id, label = "train", "Train"

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    # ------------------------------------------------------------------ callbacks
    def config_choices(self) -> list[tuple[str, str]]:
        return [(p.name, str(p)) for p in launch.list_configs(self.ctx.settings.configs_dir)]

    def dataset_choices(self, registry_file: str | None = None) -> list[str]:
        """The built-in datasets and those of a registry file (a path under the data folder, as ``pldc data
        --registry`` takes; default: the data folder's datasets.yaml). DatasetError or PathEscapeError if the
        file cannot be read."""
        from pldc_core.data.registry import list_datasets

        path = runs.inside(self.ctx.data_root, registry_file) if (registry_file or "").strip() else None
        return list_datasets(self.ctx.data_root, path)

    def _initial_datasets(self) -> list[str]:
        from pldc_core.data.coco import DatasetError
        from pldc_core.data.registry import BUILTIN_DATASETS

        try:
            return self.dataset_choices()
        except DatasetError:
            return list(BUILTIN_DATASETS)

    def registry_changed(self, registry_file, dataset) -> Datasets:
        """A registry file was typed: the datasets it adds, or why it cannot be read."""
        from pldc_core.data.coco import DatasetError
        from pldc_core.data.registry import BUILTIN_DATASETS

        try:
            names = self.dataset_choices(registry_file)
        except (DatasetError, runs.PathEscapeError, OSError) as exc:
            return Datasets(gr.skip(), message(f"registry file: {exc}", error=True))
        added = [n for n in names if n not in BUILTIN_DATASETS]
        where = f"`{registry_file.strip()}`" if (registry_file or "").strip() else "the data folder's datasets.yaml"
        text = (f"Datasets from {where}: {', '.join(added)}" if added else f"{where.capitalize()} adds no dataset"
                if (registry_file or "").strip() else "")
        return Datasets(gr.Dropdown(choices=names, value=dataset if dataset in names else names[0]), text)

    def config_form(self, config_file) -> ConfigForm:
        """The form's values from a config file (or the message why it cannot be read)."""
        try:
            cfg = load_config(config_file)
        except ConfigError as exc:
            return ConfigForm(message(str(exc), error=True), None)
        return ConfigForm("", TrainForm.of(launch.TrainSettings.from_config(cfg)))

    def split_info(self, dataset) -> str:
        from pldc_core.data.coco import DatasetError
        from pldc_core.data.registry import default_split_file
        from pldc_core.data.splits import read_splits

        path = default_split_file(dataset, self.ctx.data_root)
        try:
            splits = read_splits(path)["splits"]
        except DatasetError:
            return f"No split file for '{dataset}' at `{path}` (make one with `pldc data split`)."
        parts = [f"{p}% (seeds {', '.join(sorted(seeds, key=int))})" for p, seeds in
                 sorted(splits.items(), key=lambda kv: float(kv[0]))]
        return "Splits available: " + "; ".join(parts)

    def start(self, config_file, name, form: TrainForm) -> Started:
        """Check the form and start the run; returns the message, the run list and the run choice."""
        settings = form.settings()
        if not config_file:
            return Started(message("Not started: choose a config", error=True), gr.skip(), gr.skip())
        try:
            run = launch.start_run(self.ctx.runs_root, name, config_file, settings, self.ctx.data_root)
        except (launch.LaunchError, ValueError) as exc:
            return Started(message(f"Not started: {exc}", error=True), gr.skip(), gr.skip())
        log = RunDir(run).train_log.relative_to(self.ctx.runs_root)
        return Started(f"Started run **{run.name}** (output in `{log}`). It runs on when the browser is closed.",
                       runs.runs_table(runs.list_runs(self.ctx.runs_root)),
                       gr.Dropdown(choices=self.ctx.run_names(), value=run.name))

    def stop(self, run_name) -> str:
        if not run_name:
            return message("choose a run", error=True)
        try:
            return launch.stop_run(self.ctx.run_path(run_name))
        except (launch.LaunchError, runs.PathEscapeError) as exc:
            return message(str(exc), error=True)

    def resume(self, run_name) -> str:
        if not run_name:
            return message("choose a run", error=True)
        try:
            launch.resume_run(self.ctx.run_path(run_name))
        except (launch.LaunchError, runs.PathEscapeError) as exc:
            return message(str(exc), error=True)
        return f"Resuming run **{run_name}** from its last checkpoint."

    def live(self, run_name) -> LiveView:
        """The selected run's progress line, its three live figures, the end of its log, and Stop / Resume
        enabled only when they apply."""
        if not run_name:
            nothing = empty("Training", "no run selected", 300)
            off = gr.Button(interactive=False)
            return LiveView("Select a run in the list, or start one.", nothing, nothing, nothing, nothing, "", off, off)
        run = self.ctx.run_path(run_name)
        info = runs.run_info(run)
        metrics, _ = runs.read_log(run, METRICS_FILE)
        evals, _ = runs.read_log(run, EVAL_FILE)
        burn_in = burn_in_of(run)
        ap = evaluation_figure(evals, ("AP", "AP50", "AP75"), panels=False, title="Mask AP (%)",
                               empty_message="no evaluation yet (eval.jsonl is written at each evaluation)")
        per_class = per_class_figure(per_class_ap(evals),
                                     empty_message="no per-class AP yet (each evaluation in eval.jsonl holds it)")
        return LiveView(progress_html(info), loss_figure(metrics, burn_in), count_figure(metrics, burn_in), ap,
                        per_class, runs.log_tail(run, 12),
                        gr.Button(interactive=launch.can_stop(info)),
                        gr.Button(interactive=launch.can_resume(run, info)))

    # ------------------------------------------------------------------ layout and wiring
    def layout(self, ui) -> None:
        configs = self.config_choices()
        default_config = next((v for k, v in configs if k == "cpu-quick.yaml"), configs[0][1] if configs else None)
        with gr.Row():
            with gr.Column(scale=1, min_width=420):
                gr.Markdown("#### New run")
                with gr.Row():
                    self.config = gr.Dropdown(label="config", choices=configs, value=default_config,
                                              elem_id="tr-config")
                    self.name = gr.Textbox(label="run name (a folder in the runs folder)", elem_id="tr-name",
                                           placeholder="e.g. quick-5pct")
                with gr.Row():
                    registry = gr.Textbox(label="dataset registry file (as `pldc data --registry`; under the data "
                                                "folder; empty: its datasets.yaml)", elem_id="tr-registry",
                                          placeholder="e.g. my_datasets.yaml")
                with gr.Row():
                    dataset = gr.Dropdown(label="dataset", choices=self._initial_datasets(), value="synthetic",
                                          elem_id="tr-dataset", allow_custom_value=True)
                    percent = gr.Number(label="labeled %", value=5, elem_id="tr-percent", min_width=80)
                    seed = gr.Number(label="split seed", value=0, precision=0, elem_id="tr-seed", min_width=80)
                self.splits = gr.Markdown(elem_id="tr-splits")
                with gr.Row():
                    filter_ = gr.Radio(["ddtf", "coupled"], value="ddtf", label="filter", elem_id="tr-filter",
                                       min_width=150)
                    c_t = gr.Number(label="c_t", value=0.85, elem_id="tr-ct", min_width=70)
                    m_t = gr.Number(label="m_t", value=0.9, elem_id="tr-mt", min_width=70)
                    s_t = gr.Number(label="s_t (coupled)", value=0.765, elem_id="tr-st", min_width=70)
                with gr.Row():
                    dicc = gr.Checkbox(label="DICC", value=False, elem_id="tr-dicc", min_width=70)
                    pmua = gr.Checkbox(label="PMUA", value=True, elem_id="tr-pmua", min_width=70)
                    clip = gr.Textbox(label="CLIP weights (a file under the data folder)", elem_id="tr-clip", scale=3)
                self.datasets_message = gr.Markdown(elem_id="tr-registry-message", elem_classes=["pldc-message"])
                with gr.Row():
                    unsup = gr.Number(label="λ (unsup. weight)", value=1.0, elem_id="tr-lambda", min_width=70)
                    ema = gr.Number(label="EMA α", value=0.9996, elem_id="tr-ema", min_width=70)
                    iters = gr.Number(label="iterations", value=1200, precision=0, elem_id="tr-iters", min_width=70)
                    burn_in = gr.Number(label="burn-in iterations", value=600, precision=0, elem_id="tr-burnin",
                                        min_width=70)
                self.form = ordered(TrainForm, dataset=dataset, percent=percent, split_seed=seed, filter=filter_,
                                    c_t=c_t, m_t=m_t, s_t=s_t, dicc=dicc, clip_weights=clip, registry_file=registry,
                                    pmua=pmua,
                                    unsup_weight=unsup, ema_alpha=ema, max_iters=iters, burn_in_iters=burn_in)
                self.dataset, self.registry = dataset, registry
                self.start_button = gr.Button("Start run", variant="primary", elem_id="tr-start")
                self.message = gr.Markdown(elem_id="tr-message", elem_classes=["pldc-message"])
            with gr.Column(scale=1):
                self.progress = gr.HTML(elem_id="tr-progress")
                with gr.Row():
                    self.stop_button = gr.Button("Stop (saves a checkpoint)", elem_id="tr-stop", interactive=False)
                    self.resume_button = gr.Button("Resume", elem_id="tr-resume", interactive=False)
                self.control = gr.Markdown(elem_id="tr-control", elem_classes=["pldc-message"])
                self.losses = gr.Plot(elem_id="tr-loss", show_label=False)
                with gr.Row():
                    self.counts = gr.Plot(elem_id="tr-counts", show_label=False)
                    self.ap = gr.Plot(elem_id="tr-ap", show_label=False)
                self.per_class = gr.Plot(elem_id="tr-ap-class", show_label=False)
                with gr.Accordion("end of the log (train.log, or the metrics of a command-line run)", open=False,
                                  elem_id="tr-log-accordion"):
                    self.log = gr.Textbox(lines=10, max_lines=12, show_label=False, elem_id="tr-log")

    @property
    def live_outputs(self) -> list:
        return ordered(LiveView, progress=self.progress, losses=self.losses, counts=self.counts, ap=self.ap,
                       per_class=self.per_class, log=self.log, stop=self.stop_button, resume=self.resume_button)

    def _show_config(self, config_file) -> tuple:
        text, form = self.config_form(config_file)
        return (text, *(form if form is not None else (gr.skip(),) * len(TrainForm._fields)))

    def _start(self, config_file, name, *values) -> Started:
        return self.start(config_file, name, TrainForm(*values))

    def wire(self, ui) -> None:
        form_outputs = [self.message, *self.form]
        self.config.change(self._show_config, self.config, form_outputs)
        ui.demo.load(self._show_config, self.config, form_outputs).then(self.split_info, self.dataset, self.splits)
        self.dataset.change(self.split_info, self.dataset, self.splits)
        self.registry.submit(self.registry_changed, [self.registry, self.dataset],
                             ordered(Datasets, dataset=self.dataset, message=self.datasets_message))
        self.registry.blur(self.registry_changed, [self.registry, self.dataset],
                           ordered(Datasets, dataset=self.dataset, message=self.datasets_message))
        self.start_button.click(self._start, [self.config, self.name, *self.form],
                                ordered(Started, message=self.message, runs=ui.runs_df, run=ui.run_dd))
        # after a stop or resume, the buttons follow the run's new state (the timer refreshes them too)
        self.stop_button.click(self.stop, ui.run_dd, self.control).then(self.live, ui.run_dd, self.live_outputs,
                                                                       show_progress="hidden")
        self.resume_button.click(self.resume, ui.run_dd, self.control).then(self.live, ui.run_dd, self.live_outputs,
                                                                           show_progress="hidden")


def progress_html(info: runs.RunInfo) -> str:
    """The run's state, iteration, phase, ETA and best AP in one line, with a progress bar."""
    fraction = info.fraction or 0.0
    parts = [f"<b>{html.escape(info.name)}</b>: <b>{info.state}</b>"]
    if info.max_iters:
        parts.append(f"iteration {info.iteration:,} / {info.max_iters:,} ({fraction:.0%})")
    if info.phase:
        parts.append(f"phase {html.escape(str(info.phase))}")
    if info.eta_s is not None:
        parts.append(f"ETA {runs.format_duration(info.eta_s)}")
    if info.best_ap is not None:
        parts.append(f"best mask AP {format_ap(info.best_ap)} (iteration {info.best_iter})")
    text = " · ".join(parts)
    bar = f"<progress class='pldc-progress' value='{fraction:.4f}' max='1'></progress>" if info.max_iters else ""
    error = f"<pre class='pldc-error'>{html.escape(info.error)}</pre>" if info.error and info.state in (
        "failed", "died") else ""
    return f"<div id='pldc-progress-line'>{text}</div>{bar}{error}"
